import { SamplePolicy } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { advance, STABLE_PROGRESS } from './maths.ts';
import { planSampling, raiseSampling } from './sampling.ts';

describe('adaptive sampling', () => {
  const policy = SamplePolicy.parse({
    strategies: [
      { kind: 'random', share: 0.01, probability: 0.5 },
      { kind: 'near-threshold', threshold: 0.4, probability: 0.8 },
    ],
    limits: { perMinute: 2, perHour: 30, bytesPerDay: 5_000_000 },
    strategyLimits: { random: { perDay: 100, bytesPerDay: 1_000_000 } },
    spoolMaxBytes: 8 * 1024 * 1024,
  });

  it('raises probabilities, the random share and the count caps by the factor, capped at 1', () => {
    const raised = raiseSampling(policy, 2);
    expect(raised.strategies[0]).toMatchObject({ kind: 'random', share: 0.02, probability: 1 });
    expect(raised.strategies[1]).toMatchObject({ kind: 'near-threshold', probability: 1 });
    expect(raised.limits).toMatchObject({ perMinute: 4, perHour: 60 });
    expect(raised.strategyLimits.random?.perDay).toBe(200);
    expect(SamplePolicy.safeParse(raised).success).toBe(true);
  });

  it('never raises the byte budget: bytesPerDay caps and the spool stay, an absent count cap stays absent', () => {
    const raised = raiseSampling(policy, 3);
    expect(raised.limits.bytesPerDay).toBe(5_000_000);
    expect(raised.strategyLimits.random?.bytesPerDay).toBe(1_000_000);
    expect(raised.spoolMaxBytes).toBe(8 * 1024 * 1024);
    expect(raised.limits.perDay).toBeUndefined();
  });

  it('raises after the configured windows at moderate or worse and restores after as many stable ones', () => {
    let progress = advance(STABLE_PROGRESS, 'moderate', 1);
    expect(planSampling(progress, false, 2)).toBeNull();
    progress = advance(progress, 'major', 2);
    expect(planSampling(progress, false, 2)).toBe('raise');
    expect(planSampling(progress, true, 2)).toBeNull();
    progress = advance(progress, 'stable', 3);
    expect(planSampling(progress, true, 2)).toBeNull();
    progress = advance(progress, 'stable', 4);
    expect(planSampling(progress, true, 2)).toBe('restore');
    expect(planSampling(progress, false, 2)).toBeNull();
  });
});
