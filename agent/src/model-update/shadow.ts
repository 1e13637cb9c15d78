import type { ShadowMetrics } from '@edgeloop/protocol';
import { type Clock, systemClock } from '../clock.ts';
import { type Detection, tensorLength } from '../vision/adapters/adapter-types.ts';
import type { FrameResult, VisionSink } from '../vision/pipeline.ts';
import type { VisionModel } from '../vision/vision-model.ts';
import { ShadowWindow } from './shadow-match.ts';

/*
 * Shadow mode: a VisionSink that runs the candidate model on a sampled share of the frames the
 * current model processed, and compares the candidate's detections with the current model's on
 * the same frame (shadow-match.ts). The frame is the pipeline's reused buffer: the candidate's
 * preprocess copies what it needs into the comparator's own tensor before the (awaited)
 * inference, and the pipeline keeps the frame valid until the sink's promise settles anyway.
 *
 * Sampling is deterministic: a frame is sampled each time the running sum of `sampleShare`
 * passes a whole number (0.2: every fifth frame). A sampled frame runs only within the compute
 * budget, else it is counted in `framesSkipped`:
 *   maxExtraShare  candidate inference time at most this share of the current model's inference
 *                  time (credit grows by share x the current frame's inference ms, capped)
 *   maxMsPerS      and, when set, at most this many ms of candidate inference per second of wall time
 * A sampled frame runs when the credit covers the candidate's recent latency (an EWMA).
 *
 * `onCompared` hears each compared frame with the candidate's detections, while the frame is
 * still valid (the hard-sample capture's shadow-disagreement strategy); frames not compared cost
 * it nothing.
 */

/** A compared frame: the current model's result and the candidate's detections on the same frame. */
export type ShadowComparedListener = (result: FrameResult, candidate: readonly Detection[]) => void;

export type ShadowOptions = {
  /** Share of frames sampled for comparison (0..1]. */
  readonly sampleShare: number;
  /** Candidate inference time at most this share of the current model's. */
  readonly maxExtraShare: number;
  /** Absolute cap in ms of candidate inference per second; null: none. */
  readonly maxMsPerS: number | null;
  /** IoU a candidate box needs with a current box of the same class to match. */
  readonly iouThreshold: number;
};

export const DEFAULT_SHADOW_OPTIONS: ShadowOptions = {
  sampleShare: 0.2,
  maxExtraShare: 0.5,
  maxMsPerS: null,
  iouThreshold: 0.5,
};

/** Largest credit (ms) that may build up, so a long idle stretch does not buy a burst. */
const MAX_CREDIT_MS = 1000;

export type ShadowComparatorStats = {
  readonly sampled: number;
  readonly compared: number;
  readonly skipped: number;
  readonly candidateErrors: number;
  /** onCompared listeners that threw (counted, the comparison stands). */
  readonly listenerErrors: number;
};

export interface ShadowComparator {
  readonly sink: VisionSink;
  readonly candidate: VisionModel;
  /** ShadowMetrics since the previous call. */
  take(): ShadowMetrics;
  stats(): ShadowComparatorStats;
}

export function createShadowComparator(deps: {
  readonly candidate: VisionModel;
  readonly options?: Partial<ShadowOptions> | undefined;
  readonly clock?: Clock | undefined;
  readonly onCompared?: ShadowComparedListener | undefined;
}): ShadowComparator {
  return new Comparator(
    deps.candidate,
    { ...DEFAULT_SHADOW_OPTIONS, ...deps.options },
    deps.clock ?? systemClock,
    deps.onCompared ?? null,
  );
}

class Comparator implements ShadowComparator, VisionSink {
  readonly name = 'shadow';
  readonly candidate: VisionModel;
  readonly #options: ShadowOptions;
  readonly #clock: Clock;
  readonly #window: ShadowWindow;
  #input = new Float32Array(0);
  #sampleSum = 0;
  #relativeCredit = 0;
  #absoluteCredit = 0;
  #lastRefill: number;
  #latencyEstimate = 0;
  readonly #counters = { sampled: 0, compared: 0, skipped: 0, candidateErrors: 0, listenerErrors: 0 };
  readonly #onCompared: ShadowComparedListener | null;

  constructor(candidate: VisionModel, options: ShadowOptions, clock: Clock, onCompared: ShadowComparedListener | null) {
    this.candidate = candidate;
    this.#onCompared = onCompared;
    this.#options = options;
    this.#clock = clock;
    this.#window = new ShadowWindow(candidate.ref);
    this.#lastRefill = clock.now();
    this.#absoluteCredit = options.maxMsPerS ?? 0;
  }

  get sink(): VisionSink {
    return this;
  }

  async onResult(result: FrameResult): Promise<void> {
    if (result.model === this.candidate) return;
    const options = this.#options;
    this.#relativeCredit = Math.min(
      MAX_CREDIT_MS,
      this.#relativeCredit + result.timings.inferenceMs * options.maxExtraShare,
    );
    if (options.maxMsPerS !== null) {
      const now = this.#clock.now();
      const elapsedS = Math.max(0, now - this.#lastRefill) / 1000;
      this.#lastRefill = now;
      this.#absoluteCredit = Math.min(options.maxMsPerS, this.#absoluteCredit + elapsedS * options.maxMsPerS);
    }
    this.#sampleSum += options.sampleShare;
    if (this.#sampleSum < 1) return;
    this.#sampleSum -= 1;
    this.#counters.sampled++;
    const estimate = this.#latencyEstimate;
    const withinBudget =
      this.#relativeCredit >= estimate && (options.maxMsPerS === null || this.#absoluteCredit >= estimate);
    if (!withinBudget) {
      this.#counters.skipped++;
      this.#window.skipped();
      return;
    }
    const { frame, detections } = result;
    const model = this.candidate;
    const dims = model.adapter.inputDims(frame.width, frame.height);
    const needed = tensorLength(dims);
    if (this.#input.length < needed) this.#input = new Float32Array(needed);
    let found: ReturnType<VisionModel['adapter']['postprocess']>;
    let ms: number;
    try {
      const pre = model.adapter.preprocess(frame, this.#input);
      const t0 = performance.now();
      const outputs = await model.session.run(model.input.name, this.#input, pre.dims);
      ms = performance.now() - t0;
      found = model.adapter.postprocess(outputs, pre);
    } catch {
      this.#counters.candidateErrors++;
      return;
    }
    this.#relativeCredit -= ms;
    if (options.maxMsPerS !== null) this.#absoluteCredit -= ms;
    this.#latencyEstimate = estimate === 0 ? ms : estimate * 0.8 + ms * 0.2;
    this.#counters.compared++;
    this.#window.compared(detections, found, ms, options.iouThreshold);
    if (this.#onCompared) {
      try {
        this.#onCompared(result, found);
      } catch {
        this.#counters.listenerErrors++;
      }
    }
  }

  take(): ShadowMetrics {
    return this.#window.take();
  }

  stats(): ShadowComparatorStats {
    return { ...this.#counters };
  }
}
