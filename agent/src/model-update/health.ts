/*
 * The post-switch health check, as a pure judgement over what was observed. The runtime observes
 * (the vision runtime with a pipeline sink and a session wrapper; a simulator with its own
 * numbers) and calls `judgeHealth`; the model manager reverts on a failed verdict.
 *
 * Checks, in order (the first failure wins; each has its own code):
 *   health_no_frames         nothing ran through the new model within maxDurationMs
 *   health_non_finite        an output held NaN or +-Infinity (scores, boxes: any output value)
 *   health_inference_errors  inference errors above maxErrorShare of the frames attempted
 *   health_latency           p95 inference latency above the budget: the manifest's latencyBudgetMs,
 *                            else max(latencyFactor x the previous model's p95, latencyFloorMs), so
 *                            timer noise on sub-millisecond models fails nothing (no previous
 *                            model and no manifest budget: no check)
 *   health_empty_output      the previous model saw objects on at least emptyOutputMinShare of its
 *                            recent frames (and had at least minFrames of them), and the new one
 *                            detected nothing on any frame of the check window
 */

export type HealthCriteria = {
  /** Frames the new model must run before a verdict. */
  readonly minFrames: number;
  /** ... and at least this long after the switch. */
  readonly minDurationMs: number;
  /** A verdict by then, whatever the frame count. */
  readonly maxDurationMs: number;
  readonly maxErrorShare: number;
  /** Budget = factor x the previous model's p95 when the manifest names no latencyBudgetMs. */
  readonly latencyFactor: number;
  /** The derived budget is never below this (ms). */
  readonly latencyFloorMs: number;
  /** Share of the previous model's frames with detections above which an empty new model fails. */
  readonly emptyOutputMinShare: number;
};

export const DEFAULT_HEALTH_CRITERIA: HealthCriteria = {
  minFrames: 30,
  minDurationMs: 10_000,
  maxDurationMs: 120_000,
  maxErrorShare: 0.05,
  latencyFactor: 5,
  latencyFloorMs: 20,
  emptyOutputMinShare: 0.2,
};

/** What the new model did over the check window. */
export type HealthObservation = {
  /** Frames that ran successfully. */
  readonly frames: number;
  /** Frames whose inference threw. */
  readonly errors: number;
  /** Frames with a NaN or infinite output value. */
  readonly nonFiniteFrames: number;
  /** Frames with at least one detection. */
  readonly framesWithDetections: number;
  /** p95 inference latency (ms); null when no frame ran. */
  readonly p95InferenceMs: number | null;
  readonly elapsedMs: number;
};

/** What the previous model did over its last frames before the switch. */
export type HealthBaseline = {
  readonly frames: number;
  readonly framesWithDetections: number;
  readonly p95InferenceMs: number | null;
};

export type HealthCode =
  | 'health_no_frames'
  | 'health_non_finite'
  | 'health_inference_errors'
  | 'health_latency'
  | 'health_empty_output';

export type HealthVerdict =
  | { readonly ok: true; readonly observation: HealthObservation; readonly budgetMs: number | null }
  | {
      readonly ok: false;
      readonly code: HealthCode;
      readonly reason: string;
      readonly observation: HealthObservation;
      readonly budgetMs: number | null;
    };

const round = (value: number) => Math.round(value * 100) / 100;

/** The p95 latency budget: the manifest's, else max(factor x the baseline's p95, floor), else none. */
export function latencyBudget(
  manifestBudgetMs: number | undefined,
  baseline: HealthBaseline | null,
  criteria: HealthCriteria,
): number | null {
  if (manifestBudgetMs !== undefined) return manifestBudgetMs;
  if (baseline?.p95InferenceMs != null && baseline.p95InferenceMs > 0) {
    return Math.max(baseline.p95InferenceMs * criteria.latencyFactor, criteria.latencyFloorMs);
  }
  return null;
}

/** Whether enough was observed for a verdict (or a failure is already certain). */
export function healthReady(observation: HealthObservation, criteria: HealthCriteria): boolean {
  if (observation.nonFiniteFrames > 0) return true;
  if (observation.elapsedMs >= criteria.maxDurationMs) return true;
  return (
    observation.frames + observation.errors >= criteria.minFrames && observation.elapsedMs >= criteria.minDurationMs
  );
}

export function judgeHealth(input: {
  readonly observation: HealthObservation;
  readonly baseline: HealthBaseline | null;
  readonly criteria: HealthCriteria;
  readonly latencyBudgetMs?: number | undefined;
}): HealthVerdict {
  const { observation, baseline, criteria } = input;
  const budgetMs = latencyBudget(input.latencyBudgetMs, baseline, criteria);
  const failed = (code: HealthCode, reason: string): HealthVerdict => ({
    ok: false,
    code,
    reason,
    observation,
    budgetMs,
  });
  const attempted = observation.frames + observation.errors;
  if (attempted === 0) {
    return failed('health_no_frames', `no frame ran through the new model in ${round(observation.elapsedMs)} ms`);
  }
  if (observation.nonFiniteFrames > 0) {
    return failed(
      'health_non_finite',
      `${observation.nonFiniteFrames} of ${observation.frames} frames had NaN or infinite outputs`,
    );
  }
  if (observation.errors / attempted > criteria.maxErrorShare) {
    return failed(
      'health_inference_errors',
      `${observation.errors} of ${attempted} inferences failed (more than ${criteria.maxErrorShare * 100}%)`,
    );
  }
  if (budgetMs !== null && observation.p95InferenceMs !== null && observation.p95InferenceMs > budgetMs) {
    return failed(
      'health_latency',
      `p95 inference latency ${round(observation.p95InferenceMs)} ms is above the budget of ${round(budgetMs)} ms`,
    );
  }
  if (
    baseline !== null &&
    baseline.frames >= criteria.minFrames &&
    baseline.framesWithDetections / baseline.frames >= criteria.emptyOutputMinShare &&
    observation.frames > 0 &&
    observation.framesWithDetections === 0
  ) {
    return failed(
      'health_empty_output',
      `the new model detected nothing on ${observation.frames} frames; the previous one saw objects on ` +
        `${baseline.framesWithDetections} of its last ${baseline.frames}`,
    );
  }
  return { ok: true, observation, budgetMs };
}
