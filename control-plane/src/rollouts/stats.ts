/*
 * The small statistics the gates need. Pure and deterministic (no resampling, no randomness), so
 * plan() stays a pure function of its input.
 *
 *   medianInterval  distribution-free 95% interval of a median from order statistics
 *   meanInterval    Welch t interval of mean(a) - mean(b), or of mean(a) alone
 *   ratioInterval   the same on log values: canary over control as a ratio of geometric means
 */

export const CONFIDENCE = 0.95;

/** Two-sided 95% Student t quantiles (0.975) for 1..30 degrees of freedom. */
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11,
  2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/** The 0.975 quantile of Student's t with `df` (possibly fractional, Welch) degrees of freedom. */
export function tQuantile975(df: number): number {
  if (!(df >= 1)) return T975[0] as number;
  if (df <= 30) {
    const low = Math.floor(df);
    const high = Math.min(30, low + 1);
    const a = T975[low - 1] as number;
    const b = T975[high - 1] as number;
    return a + (b - a) * (df - low);
  }
  // Beyond 30: the usual expansion in 1/df around the normal quantile.
  const z = 1.959964;
  return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df);
}

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/**
 * Median with a distribution-free interval: the order statistics at ranks n/2 -+ 1.96 sqrt(n)/2
 * (binomial normal approximation). Below 6 values it is [min, max].
 */
export function medianInterval(values: readonly number[]): {
  median: number | null;
  lo: number | null;
  hi: number | null;
} {
  if (values.length === 0) return { median: null, lo: null, hi: null };
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  const k = Math.max(0, Math.floor((n - 1.959964 * Math.sqrt(n)) / 2));
  return { median: median(sorted), lo: sorted[k] as number, hi: sorted[n - 1 - k] as number };
}

function moments(values: readonly number[]): { n: number; mean: number; variance: number } {
  const n = values.length;
  const mean = values.reduce((sum, v) => sum + v, 0) / n;
  const variance = n > 1 ? values.reduce((sum, v) => sum + (v - mean) ** 2, 0) / (n - 1) : Number.NaN;
  return { n, mean, variance };
}

export type Interval = { readonly estimate: number | null; readonly lo: number | null; readonly hi: number | null };

/**
 * 95% Welch interval of mean(a) - mean(b) (or of mean(a) when b is null). Bounds are null when a
 * side has fewer than 2 values (no variance to judge by): such an interval never fails a gate.
 */
export function meanInterval(a: readonly number[], b: readonly number[] | null): Interval {
  if (a.length === 0 || (b !== null && b.length === 0)) return { estimate: null, lo: null, hi: null };
  const ma = moments(a);
  if (b === null) {
    if (ma.n < 2) return { estimate: ma.mean, lo: null, hi: null };
    const se = Math.sqrt(ma.variance / ma.n);
    const t = tQuantile975(ma.n - 1);
    return { estimate: ma.mean, lo: ma.mean - t * se, hi: ma.mean + t * se };
  }
  const mb = moments(b);
  const estimate = ma.mean - mb.mean;
  if (ma.n < 2 || mb.n < 2) return { estimate, lo: null, hi: null };
  const va = ma.variance / ma.n;
  const vb = mb.variance / mb.n;
  const se = Math.sqrt(va + vb);
  if (se === 0) return { estimate, lo: estimate, hi: estimate };
  // Welch-Satterthwaite degrees of freedom.
  const df = (va + vb) ** 2 / (va ** 2 / (ma.n - 1) + vb ** 2 / (mb.n - 1));
  const t = tQuantile975(df);
  return { estimate, lo: estimate - t * se, hi: estimate + t * se };
}

/**
 * 95% interval of canary over control as a ratio of geometric means: the Welch interval of
 * mean(log a) - mean(log b), exponentiated (or of a alone, for values that already are ratios).
 * Values must be positive.
 */
export function ratioInterval(a: readonly number[], b: readonly number[] | null): Interval {
  const log = (values: readonly number[]) => values.map((v) => Math.log(v));
  const interval = meanInterval(log(a), b === null ? null : log(b));
  const exp = (v: number | null) => (v === null ? null : Math.exp(v));
  return { estimate: exp(interval.estimate), lo: exp(interval.lo), hi: exp(interval.hi) };
}
