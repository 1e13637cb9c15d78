import {
  CONFIDENCE_BINS,
  type LatencySummary,
  type ModelRef,
  type PipelineMetrics,
  type ShadowMetrics,
  type SystemMetrics,
} from '@edgeloop/protocol';
import type { HardwareProfile, ModelProfile } from './profiles.ts';

function normal(random: () => number): number {
  // Box-Muller; 1 - u keeps log away from 0.
  const u = 1 - random();
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function latency(p50: number, count: number, random: () => number): LatencySummary {
  const jitter = 1 + 0.05 * normal(random);
  const median = Math.max(0.1, p50 * jitter);
  return {
    count,
    p50: round(median),
    p95: round(median * 1.28),
    p99: round(median * 1.55),
    max: round(median * 1.9),
  };
}

export type PipelineWindowInput = {
  readonly hardware: HardwareProfile;
  readonly model: ModelProfile;
  readonly modelRef: ModelRef | null;
  readonly windowS: number;
  readonly cameraFps: number;
  readonly now: number;
  readonly random: () => number;
  /** Inference stopped (crashed model, dead camera): frames come in, none processed. */
  readonly stalled?: boolean;
  /** The scene changed in this window (a scenario's scene-change or scene-restore): raises `camera.sceneChange`. */
  readonly sceneChange?: boolean;
  readonly lastInferenceAt: number | null;
};

/**
 * One window of pipeline metrics in exactly the real agent's schema. Throughput is bound by the
 * camera or by inference latency; frames the pipeline cannot take are dropped (drop-oldest queue).
 */
export function syntheticPipelineWindow(input: PipelineWindowInput): PipelineMetrics {
  const { hardware, model, random, windowS } = input;
  const inferenceP50 = model.latencyMs / hardware.speed;
  const framesIn = Math.round(input.cameraFps * windowS);
  const bound = Math.floor((windowS * 1000) / (inferenceP50 * 1.08 + 2));
  const capacity = input.stalled
    ? 0
    : model.maxFps === undefined
      ? bound
      : Math.min(bound, Math.round(model.maxFps * windowS));
  const attempted = Math.min(framesIn, capacity);
  let errors = 0;
  for (let i = 0; i < Math.min(attempted, 200); i++) if (random() < model.errorRate) errors++;
  errors = attempted > 200 ? Math.round((errors / 200) * attempted) : errors;
  const framesProcessed = attempted - errors;
  const framesDropped = framesIn - attempted;

  const histogram = new Array<number>(CONFIDENCE_BINS).fill(0);
  const detectionsPer1000: Record<string, number> = {};
  let total = 0;
  for (const [label, rate] of Object.entries(model.detectionsPerFrame)) {
    const expected = rate * framesProcessed;
    const count = Math.max(0, Math.round(expected + Math.sqrt(Math.max(expected, 0)) * normal(random)));
    detectionsPer1000[label] = framesProcessed > 0 ? round((count / framesProcessed) * 1000) : 0;
    total += count;
  }
  // Sample the confidence distribution (up to 500 draws, scaled) into the fixed bins.
  let near = 0;
  const draws = Math.min(total, 500);
  for (let i = 0; i < draws; i++) {
    const confidence = Math.min(
      0.999,
      Math.max(model.threshold, model.confidenceMean + model.confidenceSd * normal(random)),
    );
    histogram[Math.min(CONFIDENCE_BINS - 1, Math.floor(confidence * CONFIDENCE_BINS))]! += 1;
    if (confidence < model.threshold + 0.1) near++;
  }
  if (draws > 0 && total > draws) {
    const scale = total / draws;
    for (let bin = 0; bin < CONFIDENCE_BINS; bin++) histogram[bin] = Math.round(histogram[bin]! * scale);
  }
  const inference = latency(inferenceP50, framesProcessed, random);
  const pre = latency(inferenceP50 * 0.04, framesProcessed, random);
  const post = latency(inferenceP50 * 0.03, framesProcessed, random);
  const totalLatency = latency(inferenceP50 * 1.08 + 2, framesProcessed, random);
  return {
    windowS,
    framesIn,
    framesProcessed,
    framesDropped,
    inferenceErrors: errors,
    fps: round(framesProcessed / windowS),
    latencyMs: {
      queue: latency(1, framesProcessed, random),
      preprocess: pre,
      inference,
      postprocess: post,
      total: totalLatency,
    },
    detectionsPer1000,
    confidenceHistogram: histogram,
    nearThresholdShare: draws > 0 ? round(near / draws, 4) : 0,
    lastInferenceAt: framesProcessed > 0 ? input.now : input.lastInferenceAt,
    provider: { requested: [...hardware.providers], active: hardware.providers[0] ?? 'cpu' },
    model: input.modelRef,
    camera: {
      black: false,
      frozen: false,
      blurred: false,
      sceneChange: input.sceneChange === true,
      brightness: round(110 + 5 * normal(random)),
      sharpness: round(420 + 20 * normal(random)),
    },
  };
}

export type SystemInput = {
  readonly hardware: HardwareProfile;
  readonly uptimeS: number;
  /** Share of inference capacity in use, 0..1. */
  readonly utilisation: number;
  /** Extra °C a scenario adds (overheating). */
  readonly extraTempC: number;
  readonly diskUsedShare: number;
  readonly random: () => number;
};

export function syntheticSystemMetrics(input: SystemInput): SystemMetrics {
  const { hardware, random } = input;
  const load = Math.min(100, hardware.baseCpuPct + input.utilisation * (hardware.gpu ? 25 : 70) + 3 * normal(random));
  const cpuC = hardware.idleTempC + input.utilisation * hardware.loadTempRiseC + input.extraTempC + normal(random);
  const gpuC = hardware.gpu ? cpuC - 1.5 + normal(random) * 0.5 : null;
  const zones: Record<string, number> = { 'CPU-therm': round(cpuC, 1) };
  if (gpuC !== null) zones['GPU-therm'] = round(gpuC, 1);
  return {
    cpu: { loadPct: round(Math.max(0, load), 1), cores: hardware.cores },
    memory: {
      usedBytes: Math.round(hardware.memoryBytes * (0.35 + 0.1 * input.utilisation + 0.01 * normal(random))),
      totalBytes: hardware.memoryBytes,
    },
    disk: {
      usedBytes: Math.round(hardware.diskBytes * input.diskUsedShare),
      totalBytes: hardware.diskBytes,
      path: '/',
    },
    temperatures: { cpuC: round(cpuC, 1), gpuC: gpuC === null ? null : round(gpuC, 1), zones },
    gpu: {
      loadPct: hardware.gpu ? round(Math.min(100, Math.max(0, input.utilisation * 85 + 3 * normal(random))), 1) : null,
    },
    uptimeS: Math.round(input.uptimeS),
  };
}

export type ShadowWindowInput = {
  readonly candidate: ModelRef;
  readonly current: ModelProfile;
  readonly candidateProfile: ModelProfile;
  /** The device's inference speed relative to an Orin Nano (HardwareProfile.speed). */
  readonly hardwareSpeed: number;
  readonly framesCompared: number;
  readonly framesSkipped: number;
  readonly random: () => number;
};

/** Shadow agreement: a candidate that finds fewer objects has lower recall against the current model. */
export function syntheticShadowWindow(input: ShadowWindowInput): ShadowMetrics {
  const currentRate = Object.values(input.current.detectionsPerFrame).reduce((a, b) => a + b, 0);
  const candidateRate = Object.values(input.candidateProfile.detectionsPerFrame).reduce((a, b) => a + b, 0);
  const agreement = 0.93 + 0.02 * normal(input.random);
  const precision = Math.min(1, Math.max(0, agreement * Math.min(1, currentRate / Math.max(candidateRate, 1e-9))));
  const recall = Math.min(1, Math.max(0, agreement * Math.min(1, candidateRate / Math.max(currentRate, 1e-9))));
  const perClass: ShadowMetrics['perClass'] = {};
  for (const [label, rate] of Object.entries(input.current.detectionsPerFrame)) {
    if (rate <= 0) continue;
    perClass[label] = {
      precision: candidateRate > 0 ? round(precision, 4) : null,
      recall: round(recall, 4),
      support: Math.round(rate * input.framesCompared),
    };
  }
  // As the agent's shadow matcher: precision is null when the candidate found nothing, recall when
  // the current model found nothing (a scene with nothing to detect has neither).
  const compared = input.framesCompared > 0;
  return {
    candidate: input.candidate,
    framesCompared: input.framesCompared,
    framesSkipped: input.framesSkipped,
    precision: compared && candidateRate > 0 ? round(precision, 4) : null,
    recall: compared && currentRate > 0 ? round(recall, 4) : null,
    perClass,
    candidateLatencyMs: latency(
      input.candidateProfile.latencyMs / input.hardwareSpeed,
      input.framesCompared,
      input.random,
    ),
  };
}
