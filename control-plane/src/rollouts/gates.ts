import { type CohortMeasure, type EvaluationMetrics, type GateResultView, metricValue } from '@edgeloop/protocol';
import { psi } from '../psi.ts';
import type { EvidenceSpec, GateSpec, ValidationSpec } from './spec.ts';
import { CONFIDENCE, type Interval, meanInterval, medianInterval, ratioInterval } from './stats.ts';

/**
 * One device's pipeline metrics over one gate window, for one model (summed over its telemetry
 * messages). Built by the metrics query from stored telemetry.
 */
export type DeviceWindow = {
  readonly deviceId: string;
  /** The model (sha256) that produced these metrics. */
  readonly modelSha256: string;
  readonly frames: number;
  readonly errors: number;
  /** Seconds of telemetry windows summed. */
  readonly seconds: number;
  /** Frame-weighted mean of the windows' p95 inference latency (ms); null without frames. */
  readonly latencyP95: number | null;
  /** Total detections (all classes). */
  readonly detections: number;
  readonly confidence: readonly number[];
  /** Shadow comparison of a candidate against this model, where the device ran one. */
  readonly shadow: {
    readonly candidateSha256: string;
    readonly compared: number;
    readonly precision: number | null;
    readonly recall: number | null;
    readonly candidateLatencyP95: number | null;
  } | null;
};

export { psi } from '../psi.ts';

export type Verdict = 'pass' | 'fail' | 'inconclusive';
export type GateVerdict = GateResultView['verdict'];
export type GateResult = GateResultView;

export type StageEvidence = {
  readonly stageDevices: number;
  readonly reporting: number;
  readonly frames: number;
  readonly soakedS: number;
  readonly failed: number;
  readonly controlDevices: number;
  readonly controlFrames: number;
  readonly unchanged: number;
};

export type StageEvaluation = {
  readonly verdict: Verdict;
  readonly reason: string;
  readonly gates: readonly GateResult[];
  readonly evidence: StageEvidence;
};

export type StageInput = {
  readonly kind: 'shadow' | 'live';
  /** Devices in the stage that take the candidate (devices already on its bytes left out). */
  readonly stageDevices: number;
  /** Stage devices that already ran the candidate's bytes (no-op). */
  readonly unchanged?: number;
  /** Windows of stage devices on the candidate (live) or on their current model with shadow data. */
  readonly candidate: readonly DeviceWindow[];
  /** Windows of control devices (not assigned by this rollout); null when no control cohort is left. */
  readonly control: readonly DeviceWindow[] | null;
  /** Control devices the stage may compare against (reporting or not). */
  readonly controlCohort?: number;
  /** Stage devices that failed or reverted the update locally. */
  readonly failedDevices: number;
  /** Seconds from the stage start to the end of the window judged. */
  readonly soakedS: number;
};

/** A device's windows (one per model it ran) summed into one: control devices may switch. */
function mergeByDevice(windows: readonly DeviceWindow[]): DeviceWindow[] {
  const byDevice = new Map<string, DeviceWindow>();
  for (const window of windows) {
    const seen = byDevice.get(window.deviceId);
    if (!seen) {
      byDevice.set(window.deviceId, window);
      continue;
    }
    const frames = seen.frames + window.frames;
    const latency =
      seen.latencyP95 !== null && window.latencyP95 !== null && frames > 0
        ? (seen.latencyP95 * seen.frames + window.latencyP95 * window.frames) / frames
        : (seen.latencyP95 ?? window.latencyP95);
    const confidence = Array.from(
      { length: Math.max(seen.confidence.length, window.confidence.length) },
      (_, bin) => (seen.confidence[bin] ?? 0) + (window.confidence[bin] ?? 0),
    );
    byDevice.set(window.deviceId, {
      ...seen,
      frames,
      errors: seen.errors + window.errors,
      seconds: seen.seconds + window.seconds,
      latencyP95: latency,
      detections: seen.detections + window.detections,
      confidence,
    });
  }
  return [...byDevice.values()];
}

/** Per-device window values of one metric, for devices with enough frames. */
type Side = { readonly values: number[]; readonly frames: number; readonly devices: number };

function side(windows: readonly DeviceWindow[], minFrames: number, value: (w: DeviceWindow) => number | null): Side {
  const values: number[] = [];
  let frames = 0;
  for (const window of windows) {
    if (window.frames < minFrames) continue;
    const v = value(window);
    if (v === null || !Number.isFinite(v)) continue;
    values.push(v);
    frames += window.frames;
  }
  return { values, frames, devices: values.length };
}

function measure(s: Side): CohortMeasure {
  return { ...medianInterval(s.values), devices: s.devices, frames: s.frames };
}

const round = (v: number | null, digits = 4) => (v === null ? 'n/a' : String(Number(v.toPrecision(digits))));
const showInterval = (i: Interval) =>
  i.lo === null || i.hi === null
    ? `${round(i.estimate)} (no interval)`
    : `${round(i.estimate)} [${round(i.lo)}, ${round(i.hi)}]`;

/** How a comparison is judged against its threshold. */
type Direction =
  /** Fails when the interval lies wholly above the threshold. */
  | { readonly kind: 'max'; readonly threshold: number }
  /** Fails when the interval lies wholly below the threshold. */
  | { readonly kind: 'min'; readonly threshold: number }
  /** A ratio that must stay within 1 -+ change. */
  | { readonly kind: 'band'; readonly change: number };

function within(direction: Direction, v: number): boolean {
  switch (direction.kind) {
    case 'max':
      return v <= direction.threshold;
    case 'min':
      return v >= direction.threshold;
    case 'band':
      return v >= 1 - direction.change && v <= 1 + direction.change;
  }
}

function wholeIntervalPast(direction: Direction, i: Interval): boolean {
  if (i.lo === null || i.hi === null) return false;
  switch (direction.kind) {
    case 'max':
      return i.lo > direction.threshold;
    case 'min':
      return i.hi < direction.threshold;
    case 'band':
      return i.lo > 1 + direction.change || i.hi < 1 - direction.change;
  }
}

function thresholdOf(direction: Direction): number {
  return direction.kind === 'band' ? direction.change : direction.threshold;
}

/** The threshold in words: "1.5", or "1 -+ 0.4" for a band. */
function boundOf(direction: Direction): string {
  return direction.kind === 'band' ? `1 -+ ${direction.change}` : String(direction.threshold);
}

/** What a metric gate may conclude from the evidence: failing needs more than passing. */
type Allowance = { readonly canFail: boolean; readonly short: string };

function compareGate(options: {
  readonly gate: string;
  readonly kind: 'ratio' | 'difference' | 'value';
  readonly canary: Side;
  readonly control: Side | null;
  readonly interval: Interval;
  readonly direction: Direction;
  readonly detail: string;
  readonly allowance: Allowance;
}): GateResult {
  const { gate, kind, canary, control, interval, direction, detail, allowance } = options;
  const base = {
    gate,
    canary: measure(canary),
    control: control ? measure(control) : null,
    comparison: { kind, ...interval, confidence: CONFIDENCE },
    threshold: thresholdOf(direction),
    detail,
  };
  if (interval.estimate === null) {
    const missing = canary.devices === 0 ? 'no canary device' : 'no control device';
    return {
      ...base,
      verdict: 'inconclusive',
      decision: `no data: ${missing} has a window value yet`,
    };
  }
  const shown = showInterval(interval);
  const bound = boundOf(direction);
  if (wholeIntervalPast(direction, interval)) {
    if (allowance.canFail) {
      return {
        ...base,
        verdict: 'fail',
        decision: `${shown}: the whole 95% interval lies past the threshold ${bound}`,
      };
    }
    return {
      ...base,
      verdict: 'inconclusive',
      decision: `${shown} lies past the threshold ${bound}, but too little evidence to fail: ${allowance.short}`,
    };
  }
  if (within(direction, interval.estimate)) {
    return { ...base, verdict: 'pass', decision: `${shown}: the estimate is within the threshold ${bound}` };
  }
  return {
    ...base,
    verdict: 'inconclusive',
    decision: `${shown}: the estimate is past the threshold ${bound} but the interval reaches it; more evidence needed`,
  };
}

function notApplicable(gate: string, threshold: number, detail: string, reason: string): GateResult {
  return {
    gate,
    verdict: 'not-applicable',
    canary: null,
    control: null,
    comparison: null,
    threshold,
    detail,
    decision: reason,
  };
}

const sumHistogram = (windows: readonly DeviceWindow[]) => {
  const bins: number[] = [];
  for (const window of windows) {
    window.confidence.forEach((count, bin) => {
      bins[bin] = (bins[bin] ?? 0) + count;
    });
  }
  return bins;
};

/**
 * Judges one stage window from per-device window values.
 *
 *   pass          every gate passes or is not-applicable, and the stage has its pass evidence:
 *                 reporting devices (minDevices, minReportingShare), frames (minFrames), soak
 *                 (soakS), control devices reporting (minDevices, where the cohort has them)
 *   fail          a gate fails: its whole 95% interval lies past the threshold, with the fail
 *                 evidence (failMinDevices on each side, failMinFrames, failMinS); reverts and
 *                 refusals are facts and fail the revert-rate gate at once
 *   inconclusive  anything else. Devices that report nothing count as unknown, never as success.
 */
export function evaluateStage(input: StageInput, gates: GateSpec, evidence: EvidenceSpec): StageEvaluation {
  const results: GateResult[] = [];
  const candidate = input.candidate;
  const control = input.control ? mergeByDevice(input.control) : null;
  const minFrames = evidence.minDeviceFrames;
  const failedShare = input.stageDevices > 0 ? input.failedDevices / input.stageDevices : 0;
  const revertFailed = input.failedDevices > 0 && failedShare > gates.maxRevertShare;
  results.push({
    gate: 'revert-rate',
    verdict: revertFailed ? 'fail' : 'pass',
    canary: { median: failedShare, lo: failedShare, hi: failedShare, devices: input.stageDevices, frames: 0 },
    control: null,
    comparison: { kind: 'value', estimate: failedShare, lo: failedShare, hi: failedShare, confidence: 1 },
    threshold: gates.maxRevertShare,
    detail: `${input.failedDevices} of ${input.stageDevices} devices failed or reverted the update`,
    decision: revertFailed
      ? `${round(failedShare)} of the stage failed or reverted the update, more than ${gates.maxRevertShare}: device reports are facts, no interval needed`
      : `${round(failedShare)} of the stage failed or reverted the update, at most ${gates.maxRevertShare}`,
  });

  const reporting = candidate.filter((window) => window.frames > 0 || (window.shadow?.compared ?? 0) > 0).length;
  const frames =
    input.kind === 'shadow'
      ? candidate.reduce((sum, window) => sum + (window.shadow?.compared ?? 0), 0)
      : candidate.reduce((sum, window) => sum + window.frames, 0);
  const controlReporting = control ? control.filter((window) => window.frames > 0).length : 0;
  const controlFrames = control ? control.reduce((sum, window) => sum + window.frames, 0) : 0;
  const facts: StageEvidence = {
    stageDevices: input.stageDevices,
    reporting,
    frames,
    soakedS: input.soakedS,
    failed: input.failedDevices,
    controlDevices: controlReporting,
    controlFrames,
    unchanged: input.unchanged ?? 0,
  };

  const allowance = (canaryDevices: number, controlDevices: number | null): Allowance => {
    const short: string[] = [];
    if (canaryDevices < evidence.failMinDevices)
      short.push(`${canaryDevices} canary devices with values, need ${evidence.failMinDevices}`);
    if (controlDevices !== null) {
      // A control cohort smaller than failMinDevices can still fail a gate once all of it reports (2 at least).
      const needed = Math.min(evidence.failMinDevices, Math.max(2, input.controlCohort ?? evidence.failMinDevices));
      if (controlDevices < needed) short.push(`${controlDevices} control devices with values, need ${needed}`);
    }
    if (frames < evidence.failMinFrames) short.push(`${frames} frames, need ${evidence.failMinFrames}`);
    if (input.soakedS < evidence.failMinS)
      short.push(`${Math.floor(input.soakedS)} s into the stage, need ${evidence.failMinS} s`);
    return { canFail: short.length === 0, short: short.join('; ') };
  };

  if (input.kind === 'shadow') {
    const shadowOf = (window: DeviceWindow) =>
      window.shadow && window.shadow.compared >= minFrames ? window.shadow : null;
    const compared = candidate.filter((window) => shadowOf(window) !== null);
    // Per-device values over compared frames: a shadow compares a sampled share of the frames.
    const shadowSide = (value: (w: DeviceWindow) => number | null): Side => {
      const values: number[] = [];
      let n = 0;
      for (const window of compared) {
        const v = value(window);
        if (v === null || !Number.isFinite(v)) continue;
        values.push(v);
        n += window.shadow?.compared ?? 0;
      }
      return { values, frames: n, devices: values.length };
    };
    const agreement = (
      gate: string,
      threshold: number,
      pick: (s: NonNullable<DeviceWindow['shadow']>) => number | null,
    ) => {
      const s = shadowSide((w) => (w.shadow ? pick(w.shadow) : null));
      if (s.devices === 0 && compared.length > 0) {
        return notApplicable(
          gate,
          threshold,
          `${frames} frames compared`,
          'no detections on the compared frames (neither model found anything to match): nothing to judge',
        );
      }
      return compareGate({
        gate,
        kind: 'value',
        canary: s,
        control: null,
        interval: meanInterval(s.values, null),
        direction: { kind: 'min', threshold },
        detail: `mean over devices of IoU-matched agreement, ${frames} frames compared`,
        allowance: allowance(s.devices, null),
      });
    };
    results.push(
      agreement('shadow-precision', gates.minShadowPrecision, (s) => s.precision),
      agreement('shadow-recall', gates.minShadowRecall, (s) => s.recall),
    );
    const latency = shadowSide((w) =>
      w.shadow?.candidateLatencyP95 != null && w.latencyP95 !== null && w.latencyP95 > 0
        ? w.shadow.candidateLatencyP95 / w.latencyP95
        : null,
    );
    results.push(
      compareGate({
        gate: 'latency-p95-ratio',
        kind: 'ratio',
        canary: latency,
        control: null,
        interval: ratioInterval(latency.values, null),
        direction: { kind: 'max', threshold: gates.maxLatencyRatio },
        detail: 'candidate p95 / current p95 on the same devices (geometric mean over devices)',
        allowance: allowance(latency.devices, null),
      }),
    );
  } else if (control) {
    const ratioGate = (
      gate: string,
      value: (w: DeviceWindow) => number | null,
      direction: Direction,
      detail: string,
    ): GateResult => {
      const c = side(candidate, minFrames, value);
      const k = side(control, minFrames, value);
      return compareGate({
        gate,
        kind: 'ratio',
        canary: c,
        control: k,
        interval: ratioInterval(c.values, k.values),
        direction,
        detail,
        allowance: allowance(c.devices, k.devices),
      });
    };
    const errorRate = (w: DeviceWindow) => (w.frames + w.errors > 0 ? w.errors / (w.frames + w.errors) : null);
    const errorsC = side(candidate, minFrames, errorRate);
    const errorsK = side(control, minFrames, errorRate);
    results.push(
      compareGate({
        gate: 'error-rate',
        kind: 'difference',
        canary: errorsC,
        control: errorsK,
        interval: meanInterval(errorsC.values, errorsK.values),
        direction: { kind: 'max', threshold: gates.maxErrorRateIncrease },
        detail: 'canary error rate minus control error rate (means over devices)',
        allowance: allowance(errorsC.devices, errorsK.devices),
      }),
      ratioGate(
        'latency-p95-ratio',
        (w) => (w.latencyP95 !== null && w.latencyP95 > 0 ? w.latencyP95 : null),
        { kind: 'max', threshold: gates.maxLatencyRatio },
        'canary p95 / control p95 inference latency (ms), ratio of geometric means over devices',
      ),
      ratioGate(
        'fps-ratio',
        (w) => (w.seconds > 0 && w.frames > 0 ? w.frames / w.seconds : null),
        { kind: 'min', threshold: gates.minFpsRatio },
        'canary fps / control fps, ratio of geometric means over devices',
      ),
      ratioGate(
        'detections-change',
        // +0.5 detection keeps a device that found nothing comparable (and positive for the log).
        (w) => (w.frames > 0 ? ((w.detections + 0.5) / w.frames) * 1000 : null),
        { kind: 'band', change: gates.maxDetectionChange },
        'canary / control detections per 1000 frames, within 1 -+ the threshold',
      ),
    );
    const counted = (windows: readonly DeviceWindow[]) => windows.filter((w) => w.frames >= minFrames);
    const canaryHistogram = sumHistogram(counted(candidate));
    const controlHistogram = sumHistogram(counted(control));
    const canaryCounts = canaryHistogram.reduce((sum, c) => sum + c, 0);
    const controlCounts = controlHistogram.reduce((sum, c) => sum + c, 0);
    const psiDetail = 'PSI of the confidence histograms, control as expected';
    if (canaryCounts === 0 && controlCounts === 0) {
      results.push(
        notApplicable(
          'confidence-psi',
          gates.maxPsi,
          psiDetail,
          'no detections on either side: there is no confidence distribution to compare',
        ),
      );
    } else if (canaryCounts < evidence.minDetections || controlCounts < evidence.minDetections) {
      results.push(
        notApplicable(
          'confidence-psi',
          gates.maxPsi,
          psiDetail,
          `${canaryCounts} canary and ${controlCounts} control detections, fewer than ${evidence.minDetections} on a side: ` +
            'too few for a distribution (detections-change judges the counts)',
        ),
      );
    } else {
      const index = psi(controlHistogram, canaryHistogram) ?? 0;
      const c = counted(candidate);
      const k = counted(control);
      const allowed = allowance(c.length, k.length);
      const over = index > gates.maxPsi;
      const verdict: GateVerdict = over ? (allowed.canFail ? 'fail' : 'inconclusive') : 'pass';
      results.push({
        gate: 'confidence-psi',
        verdict,
        canary: { median: null, lo: null, hi: null, devices: c.length, frames: canaryCounts },
        control: { median: null, lo: null, hi: null, devices: k.length, frames: controlCounts },
        comparison: { kind: 'value', estimate: index, lo: null, hi: null, confidence: CONFIDENCE },
        threshold: gates.maxPsi,
        detail: `${psiDetail}; frames are detections counted`,
        decision: over
          ? allowed.canFail
            ? `PSI ${round(index)} over ${canaryCounts} and ${controlCounts} detections exceeds ${gates.maxPsi}`
            : `PSI ${round(index)} exceeds ${gates.maxPsi}, but too little evidence to fail: ${allowed.short}`
          : `PSI ${round(index)} is at most ${gates.maxPsi}`,
      });
    }
  } else {
    // Last stage: nobody left on the old model to compare with; judge absolute error rate only.
    const errorsC = side(candidate, minFrames, (w) =>
      w.frames + w.errors > 0 ? w.errors / (w.frames + w.errors) : null,
    );
    results.push(
      compareGate({
        gate: 'error-rate',
        kind: 'value',
        canary: errorsC,
        control: null,
        interval: meanInterval(errorsC.values, null),
        direction: { kind: 'max', threshold: gates.maxErrorRateIncrease },
        detail: 'candidate error rate, mean over devices (no control cohort left)',
        allowance: allowance(errorsC.devices, null),
      }),
    );
    for (const [gate, threshold] of [
      ['latency-p95-ratio', gates.maxLatencyRatio],
      ['fps-ratio', gates.minFpsRatio],
      ['detections-change', gates.maxDetectionChange],
      ['confidence-psi', gates.maxPsi],
    ] as const) {
      results.push(notApplicable(gate, threshold, 'canary against control', 'no control cohort left at this stage'));
    }
  }

  const failing = results.filter((result) => result.verdict === 'fail');
  if (failing.length > 0) {
    return {
      verdict: 'fail',
      reason: `failing gates: ${failing.map((result) => result.gate).join(', ')}`,
      gates: results,
      evidence: facts,
    };
  }
  const neededReporting = Math.min(
    input.stageDevices,
    Math.max(evidence.minDevices, Math.ceil(evidence.minReportingShare * input.stageDevices)),
  );
  const shortfalls: string[] = [];
  if (reporting < neededReporting)
    shortfalls.push(`${reporting} of ${input.stageDevices} devices reporting, need ${neededReporting}`);
  if (control && input.kind === 'live') {
    const neededControl = Math.min(evidence.minDevices, input.controlCohort ?? evidence.minDevices);
    if (controlReporting < neededControl)
      shortfalls.push(`${controlReporting} control devices reporting, need ${neededControl}`);
  }
  if (frames < evidence.minFrames)
    shortfalls.push(`${frames} ${input.kind === 'shadow' ? 'frames compared' : 'frames'}, need ${evidence.minFrames}`);
  if (input.soakedS < evidence.soakS) shortfalls.push(`soaked ${Math.floor(input.soakedS)} s of ${evidence.soakS} s`);
  const unknown = results.filter((result) => result.verdict === 'inconclusive');
  if (unknown.length > 0) shortfalls.push(`inconclusive gates: ${unknown.map((result) => result.gate).join(', ')}`);
  if (shortfalls.length > 0) {
    return { verdict: 'inconclusive', reason: shortfalls.join('; '), gates: results, evidence: facts };
  }
  const skipped = results.filter((result) => result.verdict === 'not-applicable').map((result) => result.gate);
  return {
    verdict: 'pass',
    reason: `every gate passed with enough evidence${skipped.length > 0 ? ` (not applicable: ${skipped.join(', ')})` : ''}`,
    gates: results,
    evidence: facts,
  };
}

/* ----------------------------------------- validation ----------------------------------------- */

/** An evaluation report as the validation gate reads it (the newest with a champion beside it). */
export type ValidationEvidence = {
  readonly id: string;
  readonly createdAt: number;
  readonly metrics: EvaluationMetrics;
  readonly baseline: { readonly modelId: string; readonly metrics: EvaluationMetrics } | null;
};

/** Float noise of figures rounded to 4 places must not fail `candidate >= champion + minDelta`. */
const VALIDATION_EPSILON = 1e-9;

const fmt = (value: number) => String(Math.round(value * 10_000) / 10_000);

/**
 * The validation gate, before the first stage: the candidate's evaluation on the spec's dataset
 * version must show candidate >= champion (its baseline) + minDelta on the spec's metric.
 * Inconclusive while no evaluation with a champion exists; fail when the evaluation lacks the
 * metric (a classification report asked for mAP) or falls short. Pure.
 */
export function evaluateValidation(
  spec: ValidationSpec,
  modelId: string,
  evaluation: ValidationEvidence | null,
): StageEvaluation {
  const { dataset, metric, minDelta } = spec;
  const numbers = {
    dataset,
    metric,
    minDelta,
    evaluationId: evaluation?.id ?? null,
    championModelId: evaluation?.baseline?.modelId ?? null,
    candidate: evaluation ? metricValue(evaluation.metrics, metric) : null,
    champion: evaluation?.baseline ? metricValue(evaluation.baseline.metrics, metric) : null,
    delta: null as number | null,
  };
  let verdict: Verdict;
  let reason: string;
  if (!evaluation?.baseline) {
    verdict = 'inconclusive';
    reason =
      `waiting for an evaluation of ${modelId} on ${dataset} with the champion beside it ` +
      `(edgeloop-agent eval --dataset EXPORT --baseline CHAMPION.onnx --control-plane-url URL)`;
  } else if (numbers.candidate === null || numbers.champion === null) {
    verdict = 'fail';
    reason = `evaluation ${evaluation.id} has no ${metric} (a ${evaluation.metrics.task} evaluation): the validation cannot pass`;
  } else {
    const delta = numbers.candidate - numbers.champion;
    numbers.delta = Math.round(delta * 1e6) / 1e6;
    const passes = delta >= minDelta - VALIDATION_EPSILON;
    verdict = passes ? 'pass' : 'fail';
    reason =
      `validation on ${dataset}: ${metric} ${fmt(numbers.candidate)} ${passes ? '>=' : '<'} champion ` +
      `${numbers.championModelId} ${fmt(numbers.champion)} + ${fmt(minDelta)} (evaluation ${evaluation.id})`;
  }
  const gate: GateResult = {
    gate: 'validation',
    verdict,
    canary: null,
    control: null,
    comparison:
      numbers.delta === null
        ? null
        : { kind: 'difference', estimate: numbers.delta, lo: numbers.delta, hi: numbers.delta, confidence: 1 },
    threshold: minDelta,
    detail: `${metric} of the candidate minus the champion's on ${dataset}, from an offline evaluation`,
    decision: reason,
    validation: numbers,
  };
  return {
    verdict,
    reason,
    gates: [gate],
    evidence: {
      stageDevices: 0,
      reporting: 0,
      frames: evaluation?.metrics.images ?? 0,
      soakedS: 0,
      failed: 0,
      controlDevices: 0,
      controlFrames: 0,
      unchanged: 0,
    },
  };
}
