import type { CameraHealth, ModelRef, PipelineMetrics, PipelineStage, ProviderInfo } from '@edgeloop/protocol';
import { CONFIDENCE_BINS, PIPELINE_STAGES } from '@edgeloop/protocol';
import type { Clock } from '../clock.ts';
import type { Detection } from './adapters/adapter-types.ts';
import type { LatencyHistogram } from './latency-histogram.ts';
import { createLatencyHistogram } from './latency-histogram.ts';

/*
 * Pipeline metrics over one window (one telemetry interval): what `take()` returns is a protocol
 * PipelineMetrics; then a new window starts. Fixed memory and O(1) per frame apart from one step
 * per detection.
 *
 * Counting rules (the pipeline calls these):
 *   framesIn         frames the source handed to the queue
 *   framesDropped    frames pushed out of the full queue (and frames left queued at stop)
 *   framesProcessed  frames taken from the queue and run through the stages, whether inference
 *                    succeeded or threw (those are also in inferenceErrors)
 *   fps              successful frames per second of the window
 *   detectionsPer1000, confidenceHistogram, nearThresholdShare: over successful frames
 * In one window framesIn need not equal processed + dropped: a frame may enter in one window and
 * leave in the next. The pipeline's cumulative stats() add up exactly once it has drained.
 * camera: null when no frame was sampled in the window; flags are true when any sample of the
 * window had them; brightness and sharpness are window means.
 */

export interface StageTimings {
  queueMs: number;
  preprocessMs: number;
  inferenceMs: number;
  postprocessMs: number;
  /** Queue entry to the end of postprocess. */
  totalMs: number;
}

export interface MetricsWindowContext {
  provider: ProviderInfo;
  model: ModelRef | null;
}

export interface MetricsWindow {
  recordFrameIn(): void;
  recordDropped(count?: number): void;
  /** A frame that went through every stage; `threshold` is the adapter's (near-threshold share). */
  recordProcessed(timings: StageTimings, detections: readonly Detection[], threshold: number): void;
  /** A frame whose inference (or pre/postprocess) threw. */
  recordInferenceError(): void;
  recordCameraHealth(sample: CameraHealth): void;
  /** Metrics since the previous take (or creation); starts the next window. */
  take(context: MetricsWindowContext): PipelineMetrics;
}

const MAX_LABEL = 64;
const round = (value: number, digits: number): number => {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
};

export function createMetricsWindow(deps: { clock: Clock }): MetricsWindow {
  const { clock } = deps;
  let windowStart = clock.now();
  let framesIn = 0;
  let framesDropped = 0;
  let framesProcessed = 0;
  let framesOk = 0;
  let inferenceErrors = 0;
  let lastInferenceAt: number | null = null;
  let detections = 0;
  let nearThreshold = 0;
  const confidence = new Uint32Array(CONFIDENCE_BINS);
  const perClass = new Map<string, number>();
  const latency: Record<PipelineStage, LatencyHistogram> = {
    queue: createLatencyHistogram(),
    preprocess: createLatencyHistogram(),
    inference: createLatencyHistogram(),
    postprocess: createLatencyHistogram(),
    total: createLatencyHistogram(),
  };
  let cameraSamples = 0;
  let brightnessSum = 0;
  let sharpnessSum = 0;
  const cameraFlags = { black: false, frozen: false, blurred: false, sceneChange: false };

  return {
    recordFrameIn() {
      framesIn++;
    },
    recordDropped(count = 1) {
      framesDropped += count;
    },
    recordProcessed(timings, found, threshold) {
      framesProcessed++;
      framesOk++;
      lastInferenceAt = clock.now();
      latency.queue.record(timings.queueMs);
      latency.preprocess.record(timings.preprocessMs);
      latency.inference.record(timings.inferenceMs);
      latency.postprocess.record(timings.postprocessMs);
      latency.total.record(timings.totalMs);
      for (const d of found) {
        detections++;
        const score = d.score;
        const bin = score >= 1 ? CONFIDENCE_BINS - 1 : score <= 0 ? 0 : Math.floor(score * CONFIDENCE_BINS);
        confidence[bin] = (confidence[bin] as number) + 1;
        if (score >= threshold && score < threshold + 0.1) nearThreshold++;
        const label = d.label.length > MAX_LABEL ? d.label.slice(0, MAX_LABEL) : d.label;
        perClass.set(label, (perClass.get(label) ?? 0) + 1);
      }
    },
    recordInferenceError() {
      framesProcessed++;
      inferenceErrors++;
    },
    recordCameraHealth(sample) {
      cameraSamples++;
      brightnessSum += sample.brightness;
      sharpnessSum += sample.sharpness;
      cameraFlags.black ||= sample.black;
      cameraFlags.frozen ||= sample.frozen;
      cameraFlags.blurred ||= sample.blurred;
      cameraFlags.sceneChange ||= sample.sceneChange;
    },
    take(context) {
      const now = clock.now();
      const windowS = Math.max(0.001, (now - windowStart) / 1000);
      const latencyMs: PipelineMetrics['latencyMs'] = {};
      for (const stage of PIPELINE_STAGES) {
        if (latency[stage].count > 0) latencyMs[stage] = latency[stage].summary();
        latency[stage].reset();
      }
      const detectionsPer1000: Record<string, number> = {};
      if (framesOk > 0) {
        for (const [label, count] of perClass) detectionsPer1000[label] = round((count * 1000) / framesOk, 3);
      }
      const metrics: PipelineMetrics = {
        windowS: round(windowS, 3),
        framesIn,
        framesProcessed,
        framesDropped,
        inferenceErrors,
        fps: round(framesOk / windowS, 3),
        latencyMs,
        detectionsPer1000,
        confidenceHistogram: Array.from(confidence),
        nearThresholdShare: detections > 0 ? round(nearThreshold / detections, 4) : 0,
        lastInferenceAt,
        provider: context.provider,
        model: context.model,
        camera:
          cameraSamples > 0
            ? {
                ...cameraFlags,
                brightness: round(brightnessSum / cameraSamples, 2),
                sharpness: round(sharpnessSum / cameraSamples, 2),
              }
            : null,
      };
      windowStart = now;
      framesIn = 0;
      framesDropped = 0;
      framesProcessed = 0;
      framesOk = 0;
      inferenceErrors = 0;
      detections = 0;
      nearThreshold = 0;
      confidence.fill(0);
      perClass.clear();
      cameraSamples = 0;
      brightnessSum = 0;
      sharpnessSum = 0;
      cameraFlags.black = false;
      cameraFlags.frozen = false;
      cameraFlags.blurred = false;
      cameraFlags.sceneChange = false;
      return metrics;
    },
  };
}
