import type { SampleLimits, SamplePolicy, SampleStrategy } from '@edgeloop/protocol';
import type { DriftProgress } from './maths.ts';

/*
 * Adaptive sampling, pure: how a site's sample policy is raised while it drifts, and when.
 *
 *   raise    every strategy's `probability` (and the random strategy's `share`) times `factor`,
 *            capped at 1; the count caps (perMinute, perHour, perDay) of `limits` and of each
 *            `strategyLimits` entry times `factor`, rounded up. The byte budget is never raised:
 *            `bytesPerDay` caps and `spoolMaxBytes` stay as they were, and an absent count cap
 *            stays absent (there is nothing to raise).
 *   when     raise after `windows` consecutive judged windows at moderate or worse; restore the
 *            previous policy after `windows` consecutive stable ones (hysteresis against flapping).
 */

export type SamplingAction = 'raise' | 'restore' | null;

export function planSampling(progress: DriftProgress, raised: boolean, windows: number): SamplingAction {
  if (!raised && progress.moderateStreak >= windows) return 'raise';
  if (raised && progress.stableStreak >= windows) return 'restore';
  return null;
}

function raiseLimits(limits: SampleLimits, factor: number): SampleLimits {
  const next: SampleLimits = { ...limits };
  for (const key of ['perMinute', 'perHour', 'perDay'] as const) {
    const value = limits[key];
    if (value !== undefined) next[key] = Math.ceil(value * factor);
  }
  return next;
}

function raiseStrategy(strategy: SampleStrategy, factor: number): SampleStrategy {
  const probability = Math.min(1, strategy.probability * factor);
  if (strategy.kind === 'random') return { ...strategy, probability, share: Math.min(1, strategy.share * factor) };
  return { ...strategy, probability };
}

/** The policy with its sampling raised by `factor` (>= 1) within the same byte budget. */
export function raiseSampling(policy: SamplePolicy, factor: number): SamplePolicy {
  const strategyLimits: SamplePolicy['strategyLimits'] = {};
  for (const [kind, limits] of Object.entries(policy.strategyLimits) as [
    keyof SamplePolicy['strategyLimits'],
    SampleLimits,
  ][]) {
    strategyLimits[kind] = raiseLimits(limits, factor);
  }
  return {
    ...policy,
    strategies: policy.strategies.map((strategy) => raiseStrategy(strategy, factor)),
    limits: raiseLimits(policy.limits, factor),
    strategyLimits,
  };
}
