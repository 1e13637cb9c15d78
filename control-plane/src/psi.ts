/*
 * The population stability index, shared by the rollout gates (control against canary confidence)
 * and drift detection (a reference window against the current one).
 */

/**
 * Population stability index between two histograms over the same bins:
 * sum over bins of (a - e) * ln(a / e) with proportions smoothed by `epsilon`. 0 means identical;
 * below 0.1 is usually read as stable, above 0.25 as a shift. Null when either side is empty.
 */
export function psi(expected: readonly number[], actual: readonly number[], epsilon = 1e-4): number | null {
  const bins = Math.max(expected.length, actual.length);
  let totalE = 0;
  let totalA = 0;
  for (let bin = 0; bin < bins; bin++) {
    totalE += expected[bin] ?? 0;
    totalA += actual[bin] ?? 0;
  }
  if (totalE === 0 || totalA === 0) return null;
  let index = 0;
  for (let bin = 0; bin < bins; bin++) {
    const e = Math.max((expected[bin] ?? 0) / totalE, epsilon);
    const a = Math.max((actual[bin] ?? 0) / totalA, epsilon);
    index += (a - e) * Math.log(a / e);
  }
  return index;
}
