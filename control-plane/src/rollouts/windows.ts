import { CONFIDENCE_BINS } from '@edgeloop/protocol';
import type { TelemetrySample } from '../db/repositories.ts';
import type { DeviceWindow } from './gates.ts';

/*
 * Telemetry samples (one per message in the evaluation window) summed into DeviceWindows, one per
 * (device, model sha256) — what the gates compare. Pure.
 *
 *   frames      sum of framesProcessed        errors   sum of inferenceErrors
 *   seconds     sum of windowS                latencyP95  frame-weighted mean of inference p95
 *   detections  sum over classes of detectionsPer1000 x framesProcessed / 1000
 *   confidence  bin-wise sum of confidenceHistogram
 *   shadow      the candidate this device compared most in the window: sum of framesCompared,
 *               precision / recall / candidate p95 weighted by framesCompared
 */

type Accumulator = {
  deviceId: string;
  modelSha256: string;
  frames: number;
  errors: number;
  seconds: number;
  latencyWeighted: number;
  latencyFrames: number;
  detections: number;
  confidence: number[];
  shadows: Map<
    string,
    {
      compared: number;
      precisionSum: number;
      precisionN: number;
      recallSum: number;
      recallN: number;
      latencySum: number;
      latencyN: number;
    }
  >;
};

/**
 * Sums samples into windows per device and model. `devices`, when given, keeps only those
 * devices (the rollout's target). Samples without pipeline metrics (no model running) are skipped.
 */
export function buildDeviceWindows(
  samples: readonly TelemetrySample[],
  devices?: ReadonlySet<string>,
): Map<string, DeviceWindow[]> {
  const accumulators = new Map<string, Accumulator>();
  for (const sample of samples) {
    if (sample.modelSha256 === null) continue;
    if (devices && !devices.has(sample.deviceId)) continue;
    const key = `${sample.deviceId}\u0000${sample.modelSha256}`;
    let acc = accumulators.get(key);
    if (!acc) {
      acc = {
        deviceId: sample.deviceId,
        modelSha256: sample.modelSha256,
        frames: 0,
        errors: 0,
        seconds: 0,
        latencyWeighted: 0,
        latencyFrames: 0,
        detections: 0,
        confidence: new Array<number>(CONFIDENCE_BINS).fill(0),
        shadows: new Map(),
      };
      accumulators.set(key, acc);
    }
    acc.frames += sample.frames;
    acc.errors += sample.errors;
    acc.seconds += sample.windowS;
    if (sample.latencyP95 !== null && sample.frames > 0) {
      acc.latencyWeighted += sample.latencyP95 * sample.frames;
      acc.latencyFrames += sample.frames;
    }
    for (const perThousand of Object.values(sample.detectionsPer1000)) {
      acc.detections += (perThousand * sample.frames) / 1000;
    }
    sample.confidence.forEach((count, bin) => {
      acc.confidence[bin] = (acc.confidence[bin] ?? 0) + count;
    });
    const shadow = sample.shadow;
    if (shadow && shadow.compared > 0) {
      let s = acc.shadows.get(shadow.candidateSha256);
      if (!s) {
        s = { compared: 0, precisionSum: 0, precisionN: 0, recallSum: 0, recallN: 0, latencySum: 0, latencyN: 0 };
        acc.shadows.set(shadow.candidateSha256, s);
      }
      s.compared += shadow.compared;
      if (shadow.precision !== null) {
        s.precisionSum += shadow.precision * shadow.compared;
        s.precisionN += shadow.compared;
      }
      if (shadow.recall !== null) {
        s.recallSum += shadow.recall * shadow.compared;
        s.recallN += shadow.compared;
      }
      if (shadow.candidateLatencyP95 !== null) {
        s.latencySum += shadow.candidateLatencyP95 * shadow.compared;
        s.latencyN += shadow.compared;
      }
    }
  }

  const windows = new Map<string, DeviceWindow[]>();
  for (const acc of accumulators.values()) {
    let shadow: DeviceWindow['shadow'] = null;
    for (const [candidateSha256, s] of acc.shadows) {
      if (shadow && shadow.compared >= s.compared) continue;
      shadow = {
        candidateSha256,
        compared: s.compared,
        precision: s.precisionN > 0 ? s.precisionSum / s.precisionN : null,
        recall: s.recallN > 0 ? s.recallSum / s.recallN : null,
        candidateLatencyP95: s.latencyN > 0 ? s.latencySum / s.latencyN : null,
      };
    }
    const window: DeviceWindow = {
      deviceId: acc.deviceId,
      modelSha256: acc.modelSha256,
      frames: acc.frames,
      errors: acc.errors,
      seconds: acc.seconds,
      latencyP95: acc.latencyFrames > 0 ? acc.latencyWeighted / acc.latencyFrames : null,
      detections: acc.detections,
      confidence: acc.confidence,
      shadow,
    };
    const list = windows.get(acc.deviceId);
    if (list) list.push(window);
    else windows.set(acc.deviceId, [window]);
  }
  return windows;
}
