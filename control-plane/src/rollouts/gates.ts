import type { EvidenceSpec, GateSpec } from './spec.ts';

/**
 * One device's pipeline metrics over the evaluation window, for one model (summed over its
 * telemetry windows). Built by the metrics query from stored telemetry.
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

export type CohortStats = {
  readonly devices: number;
  readonly frames: number;
  readonly errorRate: number | null;
  readonly latencyP95: number | null;
  /** Mean per-device fps. */
  readonly fps: number | null;
  readonly detectionsPer1000: number | null;
  readonly confidence: readonly number[];
};

export function summarise(windows: readonly DeviceWindow[]): CohortStats {
  let frames = 0;
  let errors = 0;
  let detections = 0;
  let latencyWeighted = 0;
  let latencyFrames = 0;
  let fpsSum = 0;
  let fpsDevices = 0;
  const confidence: number[] = [];
  for (const window of windows) {
    frames += window.frames;
    errors += window.errors;
    detections += window.detections;
    if (window.latencyP95 !== null && window.frames > 0) {
      latencyWeighted += window.latencyP95 * window.frames;
      latencyFrames += window.frames;
    }
    if (window.seconds > 0) {
      fpsSum += window.frames / window.seconds;
      fpsDevices++;
    }
    window.confidence.forEach((count, bin) => {
      confidence[bin] = (confidence[bin] ?? 0) + count;
    });
  }
  return {
    devices: windows.length,
    frames,
    errorRate: frames + errors > 0 ? errors / (frames + errors) : null,
    latencyP95: latencyFrames > 0 ? latencyWeighted / latencyFrames : null,
    fps: fpsDevices > 0 ? fpsSum / fpsDevices : null,
    detectionsPer1000: frames > 0 ? (detections / frames) * 1000 : null,
    confidence,
  };
}

/**
 * Population stability index between two histograms over the same bins:
 * sum over bins of (a - e) * ln(a / e) with proportions smoothed by `epsilon`. 0 means identical;
 * below 0.1 is usually read as stable, above 0.25 as a shift. Null when either side is empty.
 */
export function psi(expected: readonly number[], actual: readonly number[], epsilon = 1e-4): number | null {
  const bins = Math.max(expected.length, actual.length);
  const totalE = expected.reduce((sum, count) => sum + count, 0);
  const totalA = actual.reduce((sum, count) => sum + count, 0);
  if (totalE === 0 || totalA === 0) return null;
  let index = 0;
  for (let bin = 0; bin < bins; bin++) {
    const e = Math.max((expected[bin] ?? 0) / totalE, epsilon);
    const a = Math.max((actual[bin] ?? 0) / totalA, epsilon);
    index += (a - e) * Math.log(a / e);
  }
  return index;
}

export type Verdict = 'pass' | 'fail' | 'inconclusive';

export type GateResult = {
  readonly gate: string;
  readonly verdict: Verdict;
  readonly canary: number | null;
  readonly control: number | null;
  readonly threshold: number;
  readonly detail: string;
};

export type StageEvaluation = {
  readonly verdict: Verdict;
  readonly reason: string;
  readonly gates: readonly GateResult[];
  readonly evidence: {
    readonly stageDevices: number;
    readonly reporting: number;
    readonly frames: number;
    readonly soakedS: number;
    readonly failed: number;
  };
  readonly canary: CohortStats;
  readonly control: CohortStats | null;
};

export type StageInput = {
  readonly kind: 'shadow' | 'live';
  /** Devices in the stage (they should run the candidate, or shadow it). */
  readonly stageDevices: number;
  /** Windows of stage devices on the candidate (live) or on their current model with shadow data. */
  readonly candidate: readonly DeviceWindow[];
  /** Windows of control devices on the previous model; null when no control cohort is left. */
  readonly control: readonly DeviceWindow[] | null;
  /** Stage devices that failed or reverted the update locally. */
  readonly failedDevices: number;
  readonly soakedS: number;
};

function gate(
  name: string,
  canary: number | null,
  control: number | null,
  threshold: number,
  failed: (canary: number, control: number) => boolean,
  detail: string,
): GateResult {
  if (canary === null || control === null) {
    return { gate: name, verdict: 'inconclusive', canary, control, threshold, detail: `no data: ${detail}` };
  }
  return { gate: name, verdict: failed(canary, control) ? 'fail' : 'pass', canary, control, threshold, detail };
}

function ratio(a: number | null, b: number | null): number | null {
  if (a === null || b === null || b === 0) return null;
  return a / b;
}

/**
 * Judges a stage from the canary and control windows. Fails on any failing gate; passes only with
 * enough reporting devices, frames and soak time and every gate passing; otherwise inconclusive.
 * Devices that report nothing count as unknown, never as success.
 */
export function evaluateStage(input: StageInput, gates: GateSpec, evidence: EvidenceSpec): StageEvaluation {
  const canary = summarise(input.candidate);
  const control = input.control ? summarise(input.control) : null;
  const results: GateResult[] = [];
  const failedShare = input.stageDevices > 0 ? input.failedDevices / input.stageDevices : 0;
  results.push({
    gate: 'revert-rate',
    verdict: failedShare > gates.maxRevertShare ? 'fail' : 'pass',
    canary: failedShare,
    control: null,
    threshold: gates.maxRevertShare,
    detail: `${input.failedDevices} of ${input.stageDevices} devices failed or reverted the update`,
  });

  if (input.kind === 'shadow') {
    let compared = 0;
    let precisionSum = 0;
    let recallSum = 0;
    let precisionN = 0;
    let recallN = 0;
    let latencyRatioSum = 0;
    let latencyRatioN = 0;
    for (const window of input.candidate) {
      const shadow = window.shadow;
      if (!shadow || shadow.compared === 0) continue;
      compared += shadow.compared;
      if (shadow.precision !== null) {
        precisionSum += shadow.precision * shadow.compared;
        precisionN += shadow.compared;
      }
      if (shadow.recall !== null) {
        recallSum += shadow.recall * shadow.compared;
        recallN += shadow.compared;
      }
      const r = ratio(shadow.candidateLatencyP95, window.latencyP95);
      if (r !== null) {
        latencyRatioSum += r;
        latencyRatioN++;
      }
    }
    const precision = precisionN > 0 ? precisionSum / precisionN : null;
    const recall = recallN > 0 ? recallSum / recallN : null;
    const latencyRatio = latencyRatioN > 0 ? latencyRatioSum / latencyRatioN : null;
    results.push(
      gate(
        'shadow-precision',
        precision,
        1,
        gates.minShadowPrecision,
        (c) => c < gates.minShadowPrecision,
        `${compared} frames compared`,
      ),
      gate(
        'shadow-recall',
        recall,
        1,
        gates.minShadowRecall,
        (c) => c < gates.minShadowRecall,
        `${compared} frames compared`,
      ),
      gate(
        'latency-p95-ratio',
        latencyRatio,
        1,
        gates.maxLatencyRatio,
        (c) => c > gates.maxLatencyRatio,
        'candidate p95 / current p95 on the same devices',
      ),
    );
  } else if (control) {
    const errorIncrease =
      canary.errorRate !== null && control.errorRate !== null ? canary.errorRate - control.errorRate : null;
    results.push(
      gate(
        'error-rate',
        errorIncrease,
        0,
        gates.maxErrorRateIncrease,
        (c) => c > gates.maxErrorRateIncrease,
        'canary error rate minus control error rate',
      ),
      gate(
        'latency-p95-ratio',
        ratio(canary.latencyP95, control.latencyP95),
        1,
        gates.maxLatencyRatio,
        (c) => c > gates.maxLatencyRatio,
        'canary p95 / control p95',
      ),
      gate(
        'fps-ratio',
        ratio(canary.fps, control.fps),
        1,
        gates.minFpsRatio,
        (c) => c < gates.minFpsRatio,
        'canary fps / control fps',
      ),
      gate(
        'detections-change',
        canary.detectionsPer1000 !== null && control.detectionsPer1000 !== null && control.detectionsPer1000 > 0
          ? Math.abs(canary.detectionsPer1000 - control.detectionsPer1000) / control.detectionsPer1000
          : canary.detectionsPer1000 !== null && control.detectionsPer1000 === 0
            ? canary.detectionsPer1000 === 0
              ? 0
              : Number.POSITIVE_INFINITY
            : null,
        0,
        gates.maxDetectionChange,
        (c) => c > gates.maxDetectionChange,
        '|canary - control| / control detections per 1000 frames',
      ),
      gate(
        'confidence-psi',
        psi(control.confidence, canary.confidence),
        0,
        gates.maxPsi,
        (c) => c > gates.maxPsi,
        'PSI of confidence histograms, control as expected',
      ),
    );
  } else {
    // Last stage: nobody left on the old model to compare with; judge absolute error rate only.
    results.push(
      gate(
        'error-rate',
        canary.errorRate,
        0,
        gates.maxErrorRateIncrease,
        (c) => c > gates.maxErrorRateIncrease,
        'candidate error rate (no control cohort left)',
      ),
    );
  }

  const reporting = input.candidate.filter((window) => window.frames > 0 || (window.shadow?.compared ?? 0) > 0).length;
  const frames =
    input.kind === 'shadow'
      ? input.candidate.reduce((sum, window) => sum + (window.shadow?.compared ?? 0), 0)
      : canary.frames;
  const evidenceFacts = {
    stageDevices: input.stageDevices,
    reporting,
    frames,
    soakedS: input.soakedS,
    failed: input.failedDevices,
  };
  // Metric gates judge only once enough devices report: one early device is noise, not a verdict.
  // Reverts and local failures are facts and fail the stage at once.
  if (reporting < Math.min(evidence.minDevices, input.stageDevices)) {
    for (let i = 0; i < results.length; i++) {
      const result = results[i] as GateResult;
      if (result.gate !== 'revert-rate' && result.verdict === 'fail') {
        results[i] = {
          ...result,
          verdict: 'inconclusive',
          detail: `${result.detail} (too few devices reporting to judge)`,
        };
      }
    }
  }
  const failing = results.filter((result) => result.verdict === 'fail');
  if (failing.length > 0) {
    return {
      verdict: 'fail',
      reason: `failing gates: ${failing.map((result) => result.gate).join(', ')}`,
      gates: results,
      evidence: evidenceFacts,
      canary,
      control,
    };
  }
  const neededReporting = Math.min(
    input.stageDevices,
    Math.max(evidence.minDevices, Math.ceil(evidence.minReportingShare * input.stageDevices)),
  );
  const shortfalls: string[] = [];
  if (reporting < neededReporting)
    shortfalls.push(`${reporting} of ${input.stageDevices} devices reporting, need ${neededReporting}`);
  if (frames < evidence.minFrames) shortfalls.push(`${frames} frames, need ${evidence.minFrames}`);
  if (input.soakedS < evidence.soakS) shortfalls.push(`soaked ${Math.floor(input.soakedS)} s of ${evidence.soakS} s`);
  const unknown = results.filter((result) => result.verdict === 'inconclusive');
  if (unknown.length > 0) shortfalls.push(`gates without data: ${unknown.map((result) => result.gate).join(', ')}`);
  if (shortfalls.length > 0) {
    return {
      verdict: 'inconclusive',
      reason: shortfalls.join('; '),
      gates: results,
      evidence: evidenceFacts,
      canary,
      control,
    };
  }
  return {
    verdict: 'pass',
    reason: 'every gate passed with enough evidence',
    gates: results,
    evidence: evidenceFacts,
    canary,
    control,
  };
}
