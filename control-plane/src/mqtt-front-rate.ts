/*
 * Connection attempts per source address, as token buckets: `burst` tokens, refilled at `ratePerS`.
 * An attempt takes a token when its socket is accepted; an attempt that logs in gives it back. So
 * what is limited is attempts that fail or hang (bad credentials, no CONNECT, garbage), while a
 * fleet behind one NAT address (or a simulator with thousands of devices) that logs in fine is not
 * throttled, and a reconnect wave is only limited by how many are in flight at once.
 *
 * The map is bounded: an address whose bucket is full again holds no entry worth keeping, and past
 * `maxAddresses` the least recently used entry goes (so many addresses cannot grow memory).
 */

export type AddressLimiterOptions = {
  readonly ratePerS: number;
  readonly burst: number;
  readonly maxAddresses?: number;
  readonly now: () => number;
};

export type AddressLimiter = {
  /** Takes a token for an attempt from `address`; false when its bucket is empty (refuse it). */
  take(address: string): boolean;
  /** Gives an attempt's token back (it logged in). */
  giveBack(address: string): void;
  /** Addresses tracked now. */
  readonly size: number;
};

type Bucket = { tokens: number; at: number };

export const DEFAULT_MAX_ADDRESSES = 16_384;

export function createAddressLimiter(options: AddressLimiterOptions): AddressLimiter {
  const { ratePerS, burst, now } = options;
  const maxAddresses = options.maxAddresses ?? DEFAULT_MAX_ADDRESSES;
  const buckets = new Map<string, Bucket>();

  const refill = (bucket: Bucket, at: number) => {
    bucket.tokens = Math.min(burst, bucket.tokens + ((at - bucket.at) / 1000) * ratePerS);
    bucket.at = at;
  };

  const prune = (at: number) => {
    for (const [address, bucket] of buckets) {
      refill(bucket, at);
      if (bucket.tokens >= burst) buckets.delete(address);
    }
    while (buckets.size >= maxAddresses) {
      const oldest = buckets.keys().next();
      if (oldest.done) break;
      buckets.delete(oldest.value);
    }
  };

  return {
    take(address) {
      const at = now();
      let bucket = buckets.get(address);
      if (bucket) {
        buckets.delete(address); // re-inserted below: the map stays in least-recently-used order
        refill(bucket, at);
      } else {
        if (buckets.size >= maxAddresses) prune(at);
        bucket = { tokens: burst, at };
      }
      buckets.set(address, bucket);
      if (bucket.tokens < 1) return false;
      bucket.tokens -= 1;
      return true;
    },
    giveBack(address) {
      const bucket = buckets.get(address);
      if (!bucket) return;
      refill(bucket, now());
      bucket.tokens = Math.min(burst, bucket.tokens + 1);
    },
    get size() {
      return buckets.size;
    },
  };
}

/**
 * The key an address is limited under: IPv4 (also IPv4-mapped IPv6) as is, IPv6 by its /64, the
 * block one subscriber usually holds (rotating through it must not escape the limit).
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(':')) return address;
  const zoneless = address.split('%')[0]!.toLowerCase();
  const [head = '', tail] = zoneless.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((group) => Number.parseInt(group || '0', 16).toString(16))
    .join(':')}::/64`;
}
