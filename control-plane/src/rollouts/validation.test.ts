import type { EvaluationMetrics } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { selectCohorts } from './cohorts.ts';
import { evaluateValidation, type ValidationEvidence } from './gates.ts';
import { type DeviceFacts, plan, type RolloutState, type Step, VALIDATION_STAGE } from './plan.ts';
import { RolloutSpec, ValidationSpec } from './spec.ts';

/* The validation gate (spec.validation) and the pending rollout it holds before the first stage. */

const NEW = { id: 'det@2.0.0', name: 'det', version: '2.0.0', sha256: 'b'.repeat(64) };
const fleet = Array.from({ length: 10 }, (_, i) => ({ id: `cam-${i}`, hardware: null, site: null }));

const detection = (map50: number): EvaluationMetrics => ({
  task: 'detection',
  images: 40,
  map: map50 / 2,
  map50,
  map75: map50 / 3,
  accuracy: null,
  classes: [],
});

const evidence = (candidate: number, champion: number, task: 'detection' | 'classification' = 'detection') => {
  const of = (value: number): EvaluationMetrics =>
    task === 'detection'
      ? detection(value)
      : { ...detection(0), map: null, map50: null, map75: null, accuracy: value, task };
  return {
    id: 'ev-1',
    createdAt: 5,
    metrics: of(candidate),
    baseline: { modelId: 'det@1.0.0', metrics: of(champion) },
  } satisfies ValidationEvidence;
};

function pending(validation: Record<string, unknown> | undefined, reason: string | null = null): RolloutState {
  const spec = RolloutSpec.parse({ modelId: NEW.id, ...(validation ? { validation } : {}) });
  return {
    id: 'r1',
    spec,
    model: NEW,
    modelSizeBytes: 1000,
    status: 'pending',
    stageIndex: 0,
    stageStartedAt: 1000,
    failingWindows: 0,
    lastEvaluatedAt: null,
    cohorts: selectCohorts('r1', fleet, spec.canary),
    reason,
  };
}

const devices = new Map<string, DeviceFacts>(
  fleet.map((d) => [
    d.id,
    { id: d.id, online: true, activeSha256: 'a'.repeat(64), shadowSha256: null, update: null, assignment: null },
  ]),
);

const run = (rollout: RolloutState, validation: ValidationEvidence | null, now = 60_000): Step[] =>
  plan({ rollout, devices, windows: new Map(), validation, now });

describe('the validation gate', () => {
  const spec = ValidationSpec.parse({ dataset: 'evalset@2', metric: 'map50', minDelta: 0.02 });

  it('passes when the candidate scores at least the champion plus minDelta, with its numbers', () => {
    const result = evaluateValidation(spec, NEW.id, evidence(0.72, 0.7));
    expect(result.verdict).toBe('pass');
    expect(result.reason).toBe(
      'validation on evalset@2: map50 0.72 >= champion det@1.0.0 0.7 + 0.02 (evaluation ev-1)',
    );
    expect(result.gates[0]).toMatchObject({
      gate: 'validation',
      verdict: 'pass',
      threshold: 0.02,
      comparison: { kind: 'difference', estimate: 0.02 },
      validation: {
        dataset: 'evalset@2',
        metric: 'map50',
        minDelta: 0.02,
        evaluationId: 'ev-1',
        championModelId: 'det@1.0.0',
        candidate: 0.72,
        champion: 0.7,
        delta: 0.02,
      },
    });
  });

  it('fails when the candidate falls short of the champion plus minDelta', () => {
    const result = evaluateValidation(spec, NEW.id, evidence(0.71, 0.7));
    expect(result.verdict).toBe('fail');
    expect(result.reason).toContain('map50 0.71 < champion det@1.0.0 0.7 + 0.02');
    expect(result.gates[0]?.validation?.delta).toBe(0.01);
  });

  it('is inconclusive without an evaluation, or with one that measured no champion', () => {
    for (const found of [null, { ...evidence(0.9, 0.1), baseline: null }]) {
      const result = evaluateValidation(spec, NEW.id, found);
      expect(result.verdict).toBe('inconclusive');
      expect(result.reason).toMatch(/^waiting for an evaluation of det@2.0.0 on evalset@2 with the champion beside it/);
      expect(result.gates[0]?.comparison).toBeNull();
    }
  });

  it('fails an evaluation that has no value of the metric (accuracy asked of a detection report)', () => {
    const accuracy = ValidationSpec.parse({ dataset: 'evalset@2', metric: 'accuracy' });
    const result = evaluateValidation(accuracy, NEW.id, evidence(0.9, 0.5));
    expect(result.verdict).toBe('fail');
    expect(result.reason).toContain('has no accuracy (a detection evaluation)');
    expect(evaluateValidation(accuracy, NEW.id, evidence(0.9, 0.85, 'classification')).verdict).toBe('pass');
  });

  it('defaults to map50 with a zero margin: no worse than the champion passes', () => {
    const lenient = ValidationSpec.parse({ dataset: 'evalset@2' });
    expect(lenient).toEqual({ dataset: 'evalset@2', metric: 'map50', minDelta: 0 });
    expect(evaluateValidation(lenient, NEW.id, evidence(0.7, 0.7)).verdict).toBe('pass');
    expect(evaluateValidation(lenient, NEW.id, evidence(0.6999, 0.7)).verdict).toBe('fail');
  });
});

describe('a pending rollout', () => {
  const validation = { dataset: 'evalset@2', metric: 'map50', minDelta: 0.02 };

  it('records once that it waits for an evaluation and assigns no device', () => {
    const first = run(pending(validation), null);
    expect(first.map((s) => s.type)).toEqual(['verdict', 'update']);
    expect(first[0]).toMatchObject({
      type: 'verdict',
      stage: VALIDATION_STAGE,
      evaluation: { verdict: 'inconclusive' },
    });
    const reason = first[1]?.type === 'update' ? first[1].patch.reason : null;
    expect(reason).toMatch(/^waiting for an evaluation/);
    // The next pass finds the reason on the row: nothing to write.
    expect(run(pending(validation, reason ?? null), null)).toEqual([]);
  });

  it('starts its first stage (clock from now) when an evaluation passes', () => {
    const steps = run(pending(validation), evidence(0.75, 0.7), 90_000);
    expect(steps.map((s) => s.type)).toEqual(['verdict', 'update']);
    expect(steps[1]).toMatchObject({
      type: 'update',
      transition: 'advanced',
      patch: { status: 'running', stageIndex: 0, stageStartedAt: 90_000, reason: null },
      reason: expect.stringMatching(/^validation on evalset@2: map50 0.75 >= .*; entering shadow$/),
    });
    expect(steps.some((s) => s.type === 'assign')).toBe(false);
  });

  it('is rolled back with the numbers in its reason when an evaluation falls short', () => {
    const steps = run(pending(validation), evidence(0.7, 0.7));
    expect(steps.map((s) => s.type)).toEqual(['verdict', 'update']);
    expect(steps[0]).toMatchObject({ evaluation: { verdict: 'fail', gates: [{ validation: { delta: 0 } }] } });
    expect(steps[1]).toMatchObject({
      transition: 'rolled-back',
      patch: {
        status: 'rolled_back',
        reason: expect.stringContaining('validation failed: validation on evalset@2: map50 0.7 < champion'),
      },
    });
  });

  it('without a validation spec, starts at once', () => {
    expect(run(pending(undefined), null)).toEqual([
      expect.objectContaining({
        type: 'update',
        transition: 'advanced',
        patch: expect.objectContaining({ status: 'running' }),
      }),
    ]);
  });
});
