import { describe, expect, it } from 'vitest';
import {
  DEFAULT_HEALTH_CRITERIA,
  type HealthBaseline,
  type HealthObservation,
  healthReady,
  judgeHealth,
  latencyBudget,
} from './health.ts';

const criteria = { ...DEFAULT_HEALTH_CRITERIA, minFrames: 10, minDurationMs: 1000, maxDurationMs: 5000 };

const seen = (patch: Partial<HealthObservation> = {}): HealthObservation => ({
  frames: 20,
  errors: 0,
  nonFiniteFrames: 0,
  framesWithDetections: 15,
  p95InferenceMs: 40,
  elapsedMs: 2000,
  ...patch,
});

const baseline: HealthBaseline = { frames: 100, framesWithDetections: 80, p95InferenceMs: 30 };

describe('judgeHealth', () => {
  it('passes a model that runs like the previous one', () => {
    expect(judgeHealth({ observation: seen(), baseline, criteria })).toMatchObject({ ok: true, budgetMs: 150 });
  });

  it('fails with a distinct code for each problem', () => {
    const cases: Array<[Partial<HealthObservation>, string]> = [
      [{ frames: 0, errors: 0, framesWithDetections: 0, p95InferenceMs: null }, 'health_no_frames'],
      [{ nonFiniteFrames: 1 }, 'health_non_finite'],
      [{ frames: 18, errors: 2 }, 'health_inference_errors'],
      [{ p95InferenceMs: 151 }, 'health_latency'],
      [{ framesWithDetections: 0 }, 'health_empty_output'],
    ];
    for (const [patch, code] of cases) {
      expect(judgeHealth({ observation: seen(patch), baseline, criteria })).toMatchObject({ ok: false, code });
    }
  });

  it('prefers the manifest latency budget over the previous model', () => {
    expect(
      judgeHealth({ observation: seen({ p95InferenceMs: 91 }), baseline, criteria, latencyBudgetMs: 100 }).ok,
    ).toBe(true);
    expect(
      judgeHealth({ observation: seen({ p95InferenceMs: 20 }), baseline, criteria, latencyBudgetMs: 10 }),
    ).toMatchObject({ ok: false, code: 'health_latency', budgetMs: 10 });
  });

  it('does not call an empty model unhealthy when the previous one saw nothing either', () => {
    const quiet: HealthBaseline = { frames: 100, framesWithDetections: 5, p95InferenceMs: 30 };
    expect(judgeHealth({ observation: seen({ framesWithDetections: 0 }), baseline: quiet, criteria }).ok).toBe(true);
    expect(judgeHealth({ observation: seen({ framesWithDetections: 0 }), baseline: null, criteria }).ok).toBe(true);
  });

  it('never derives a budget below the floor, so timer noise on tiny models is no regression', () => {
    const tiny: HealthBaseline = { frames: 100, framesWithDetections: 80, p95InferenceMs: 0.05 };
    expect(latencyBudget(undefined, tiny, criteria)).toBe(criteria.latencyFloorMs);
    expect(latencyBudget(undefined, null, criteria)).toBeNull();
    expect(judgeHealth({ observation: seen({ p95InferenceMs: 0.4 }), baseline: tiny, criteria }).ok).toBe(true);
  });
});

describe('healthReady', () => {
  it('waits for both enough frames and enough time, at most maxDurationMs', () => {
    expect(healthReady(seen({ frames: 5, elapsedMs: 2000 }), criteria)).toBe(false);
    expect(healthReady(seen({ frames: 20, elapsedMs: 500 }), criteria)).toBe(false);
    expect(healthReady(seen({ frames: 20, elapsedMs: 1000 }), criteria)).toBe(true);
    expect(healthReady(seen({ frames: 0, elapsedMs: 5000 }), criteria)).toBe(true);
  });

  it('is ready at once when an output was not finite', () => {
    expect(healthReady(seen({ frames: 1, elapsedMs: 10, nonFiniteFrames: 1 }), criteria)).toBe(true);
  });
});
