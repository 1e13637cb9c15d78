import type { LatencySummary } from '@edgeloop/protocol';

/*
 * Fixed-memory latency quantiles: a log-bucket histogram (buckets grow by 4 %, from 1 us to
 * ~17 min), so recording is one log and one increment and a quantile is within ~2 % of the
 * exact value. Exact count and max are kept beside the buckets.
 */

const MIN_MS = 0.001;
const GROWTH = 1.04;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = Math.ceil(Math.log(1e6 / MIN_MS) / LOG_GROWTH) + 2;

export interface LatencyHistogram {
  record(ms: number): void;
  readonly count: number;
  /** Quantile q in [0, 1]; 0 when empty. */
  quantile(q: number): number;
  summary(): LatencySummary;
  /** Sum of all recorded values (ms), for means. */
  readonly sum: number;
  reset(): void;
}

function bucketOf(ms: number): number {
  if (!(ms > MIN_MS)) return 0;
  const index = 1 + Math.floor(Math.log(ms / MIN_MS) / LOG_GROWTH);
  return index < BUCKETS ? index : BUCKETS - 1;
}

/** Geometric middle of a bucket. */
function bucketValue(bucket: number): number {
  if (bucket === 0) return MIN_MS;
  return MIN_MS * GROWTH ** (bucket - 0.5);
}

const round3 = (v: number): number => Math.round(v * 1000) / 1000;

export function createLatencyHistogram(): LatencyHistogram {
  const counts = new Uint32Array(BUCKETS);
  let count = 0;
  let sum = 0;
  let min = Number.POSITIVE_INFINITY;
  let max = 0;

  const quantile = (q: number): number => {
    if (count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * count));
    let seen = 0;
    for (let b = 0; b < BUCKETS; b++) {
      seen += counts[b] as number;
      if (seen >= rank) return Math.min(max, Math.max(min, bucketValue(b)));
    }
    return max;
  };

  return {
    record(ms) {
      const v = ms > 0 && Number.isFinite(ms) ? ms : 0;
      counts[bucketOf(v)] = (counts[bucketOf(v)] as number) + 1;
      count++;
      sum += v;
      if (v < min) min = v;
      if (v > max) max = v;
    },
    get count() {
      return count;
    },
    get sum() {
      return sum;
    },
    quantile,
    summary: () => ({
      count,
      p50: round3(quantile(0.5)),
      p95: round3(quantile(0.95)),
      p99: round3(quantile(0.99)),
      max: round3(max),
    }),
    reset() {
      counts.fill(0);
      count = 0;
      sum = 0;
      min = Number.POSITIVE_INFINITY;
      max = 0;
    },
  };
}
