import { describe, expect, it } from 'vitest';
import { addressKey, createAddressLimiter } from './mqtt-front-rate.ts';

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe('createAddressLimiter', () => {
  it('lets a burst through, then one attempt per 1/rate seconds', () => {
    const time = clock();
    const limiter = createAddressLimiter({ ratePerS: 10, burst: 3, now: time.now });
    expect([1, 2, 3, 4].map(() => limiter.take('10.0.0.1'))).toEqual([true, true, true, false]);
    time.advance(99);
    expect(limiter.take('10.0.0.1')).toBe(false);
    time.advance(1);
    expect(limiter.take('10.0.0.1')).toBe(true);
    expect(limiter.take('10.0.0.1')).toBe(false);
  });

  it('limits each address on its own', () => {
    const time = clock();
    const limiter = createAddressLimiter({ ratePerS: 1, burst: 2, now: time.now });
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([true, true, false]);
    expect([limiter.take('b'), limiter.take('b')]).toEqual([true, true]);
  });

  it('does not count attempts that logged in: a fleet behind one address reconnects freely', () => {
    const time = clock();
    const limiter = createAddressLimiter({ ratePerS: 1, burst: 5, now: time.now });
    for (let i = 0; i < 1_000; i++) {
      expect(limiter.take('nat')).toBe(true);
      limiter.giveBack('nat');
    }
    expect(limiter.take('nat')).toBe(true);
  });

  it('never refills above the burst, whether by time or by a give-back', () => {
    const time = clock();
    const limiter = createAddressLimiter({ ratePerS: 100, burst: 2, now: time.now });
    limiter.take('a');
    time.advance(60_000);
    limiter.giveBack('a');
    limiter.giveBack('a');
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([true, true, false]);
  });

  it('keeps at most maxAddresses entries, dropping full buckets first, then the least recently used', () => {
    const time = clock();
    const limiter = createAddressLimiter({ ratePerS: 1, burst: 2, maxAddresses: 3, now: time.now });
    limiter.take('a');
    limiter.take('a');
    limiter.take('b');
    limiter.take('b');
    limiter.take('c');
    limiter.take('c');
    for (let i = 0; i < 100; i++) limiter.take(`spoofed-${i}`);
    expect(limiter.size).toBeLessThanOrEqual(3);
  });
});

describe('addressKey', () => {
  it('keeps IPv4 (also mapped) and groups IPv6 by its /64', () => {
    expect(addressKey('192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:0db8:0001:0002::')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  });
});
