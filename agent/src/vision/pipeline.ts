import type { PipelineMetrics } from '@edgeloop/protocol';
import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import type { Logger } from '../logger.ts';
import { silentLogger } from '../logger.ts';
import type { Detection } from './adapters/adapter-types.ts';
import { tensorLength } from './adapters/adapter-types.ts';
import type { CameraHealthOptions, CameraHealthSample } from './camera-health.ts';
import { createCameraHealthMonitor, lumaThumbnail } from './camera-health.ts';
import type { Frame, FrameSource, SourceStats } from './frame-source.ts';
import type { MetricsWindow, StageTimings } from './metrics-window.ts';
import { createMetricsWindow } from './metrics-window.ts';
import { describeError } from './vision-error.ts';
import type { VisionModel } from './vision-model.ts';

/*
 * source -> bounded queue -> preprocess (reused Float32Array) -> session.run -> postprocess -> sinks
 *
 * Queue: `queueCapacity` slots whose byte buffers are allocated once (grown only when a larger
 * frame arrives). The source's frame is copied into a free slot; when none is free, mode
 * 'drop-oldest' (live sources) overwrites the oldest queued frame and counts it dropped, mode
 * 'block' (files, the detect CLI, the benchmark) makes the source wait so nothing is dropped.
 *
 * Counters (stats()): framesIn = framesProcessed + framesDropped + queued + inFlight at every
 * instant; once the pipeline is done, queued = inFlight = 0 and the sum is exact. Frames still
 * queued when stop() is called are counted as dropped.
 *
 * Sinks see every processed frame in order, after postprocess, one at a time. `frame` is the
 * pipeline's slot: valid until the sink returns (or its promise settles); copy to keep. A slow
 * sink slows the loop (and so causes drops upstream); a throwing sink is counted, never fatal.
 */

export interface FrameResult {
  /** The frame (reused buffer; see lifetime above). */
  readonly frame: Frame;
  /** Detections in source pixels, best first. */
  readonly detections: readonly Detection[];
  readonly timings: StageTimings;
  readonly model: VisionModel;
  /** Camera-health flags when this frame was sampled for camera health; null otherwise. */
  readonly cameraHealth?: CameraHealthSample | null;
}

export interface VisionSink {
  readonly name: string;
  onResult(result: FrameResult): void | Promise<void>;
  /**
   * Full-resolution frames this sink needs when the source scales for the model (ffmpeg's
   * default): every `everyFrames`-th frame then carries `frame.full`. The vision service asks the
   * source for the smallest interval of its sinks when it starts a source.
   */
  readonly fullFrames?: { readonly everyFrames: number } | undefined;
}

export interface CameraHealthSampling {
  /** Sample a frame for camera health at most this often (ms of frame capture time; 0: every frame). Default 1000. */
  sampleIntervalMs?: number | undefined;
  /** Width of the luma thumbnail the detectors look at (default 320). */
  thumbnailWidth?: number | undefined;
  detectors?: Partial<CameraHealthOptions> | undefined;
}

export interface VisionPipelineOptions {
  /** Frames waiting for the model (default 2). */
  queueCapacity?: number | undefined;
  queueMode?: 'drop-oldest' | 'block' | undefined;
  /** Camera-health sampling; false turns it off. */
  cameraHealth?: CameraHealthSampling | false | undefined;
}

export interface VisionPipelineDeps {
  source: FrameSource;
  model: VisionModel;
  sinks?: readonly VisionSink[] | undefined;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  /** Aborting it stops the pipeline like stop(). */
  signal?: AbortSignal | undefined;
  /**
   * The metrics window to record into; a new one when absent. Pass one to keep a single window
   * across pipeline restarts (the vision service does).
   */
  metrics?: MetricsWindow | undefined;
  options?: VisionPipelineOptions | undefined;
}

export interface PipelineStats {
  framesIn: number;
  framesProcessed: number;
  framesDropped: number;
  inferenceErrors: number;
  sinkErrors: number;
  /** Frames waiting in the queue now. */
  queued: number;
  /** 1 while a frame is between dequeue and the end of postprocess (then it counts as processed). */
  inFlight: number;
  lastError: string | null;
  source: SourceStats;
}

export type PipelineOutcome =
  | { reason: 'ended' }
  | { reason: 'stopped' }
  | { reason: 'failed'; error: Error & { code?: string } };

export interface VisionPipeline {
  /** Starts the source and the loop; `done` settles when it ends, fails or is stopped. */
  start(): void;
  /** Stops the source, finishes the frame in flight, discards (counts as dropped) queued frames. */
  stop(): Promise<PipelineOutcome>;
  readonly done: Promise<PipelineOutcome>;
  stats(): PipelineStats;
  /** Closes the metrics window (call once per telemetry interval) and returns its metrics. */
  takeMetrics(): PipelineMetrics;
  /** The model in use. */
  model(): VisionModel;
  /**
   * Uses `next` from the next frame on. Resolves with the previous model once no frame uses it
   * any more, so the caller may release it.
   */
  swapModel(next: VisionModel): Promise<VisionModel>;
  /** Adds a sink; returns its removal. */
  addSink(sink: VisionSink): () => void;
}

interface SlotFrame {
  data: Uint8Array;
  width: number;
  height: number;
  index: number;
  capturedAt: number;
  origin: string;
  scaledForModel?: boolean | undefined;
  full?: Frame | undefined;
}

interface Slot {
  frame: SlotFrame;
  buffer: Uint8Array;
  /** The copy of `frame.full` (a source scaled for the model, on every Nth frame). */
  full: SlotFrame;
  fullBuffer: Uint8Array;
  enqueuedAt: number;
}

function emptySlotFrame(): SlotFrame {
  return { data: new Uint8Array(0), width: 0, height: 0, index: 0, capturedAt: 0, origin: '' };
}

/** Copies `frame` into `target`, reusing `buffer` (grown only for a larger frame); returns the buffer. */
function copyFrame(target: SlotFrame, buffer: Uint8Array, frame: Frame): Uint8Array {
  const bytes = frame.width * frame.height * 3;
  const store = buffer.length < bytes ? new Uint8Array(bytes) : buffer;
  const view =
    target.data.length === bytes && target.data.buffer === store.buffer ? target.data : store.subarray(0, bytes);
  view.set(frame.data.subarray(0, bytes));
  target.data = view;
  target.width = frame.width;
  target.height = frame.height;
  target.index = frame.index;
  target.capturedAt = frame.capturedAt;
  target.origin = frame.origin;
  return store;
}

export function createVisionPipeline(deps: VisionPipelineDeps): VisionPipeline {
  const clock = deps.clock ?? systemClock;
  const logger = (deps.logger ?? silentLogger).child({ component: 'vision-pipeline' });
  const options = deps.options ?? {};
  const capacity = Math.max(1, options.queueCapacity ?? 2);
  const mode = options.queueMode ?? 'drop-oldest';
  const health = options.cameraHealth === false ? null : (options.cameraHealth ?? {});
  const monitor = health ? createCameraHealthMonitor(health.detectors) : null;
  const sampleIntervalMs = health?.sampleIntervalMs ?? 1000;
  const thumbnailWidth = health?.thumbnailWidth ?? 320;
  const sinks: VisionSink[] = [...(deps.sinks ?? [])];
  const window = deps.metrics ?? createMetricsWindow({ clock });
  const controller = new AbortController();

  let model = deps.model;
  let pendingSwap: { next: VisionModel; resolve: (previous: VisionModel) => void } | null = null;
  let input = new Float32Array(0);
  let thumbnail = new Uint8Array(0);
  let lastSampleAt = Number.NEGATIVE_INFINITY;

  const free: Slot[] = [];
  for (let i = 0; i < capacity + 1; i++) {
    free.push({
      frame: emptySlotFrame(),
      buffer: new Uint8Array(0),
      full: emptySlotFrame(),
      fullBuffer: new Uint8Array(0),
      enqueuedAt: 0,
    });
  }
  const queue: Slot[] = [];
  let inFlight = 0;
  let framesIn = 0;
  let framesProcessed = 0;
  let framesDropped = 0;
  let inferenceErrors = 0;
  let sinkErrors = 0;
  let lastError: string | null = null;
  let sourceDone = false;
  let sourceError: (Error & { code?: string }) | null = null;
  let started = false;
  let loopFinished = false;

  // Wakes the loop when a frame arrives, the source ends or stop() is called.
  let wake: (() => void) | null = null;
  const notify = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };
  // Sources waiting for a free slot (block mode).
  const slotWaiters: (() => void)[] = [];
  const releaseWaiter = (): void => {
    slotWaiters.shift()?.();
  };

  function copyInto(slot: Slot, frame: Frame): void {
    slot.buffer = copyFrame(slot.frame, slot.buffer, frame);
    slot.frame.scaledForModel = frame.scaledForModel;
    if (frame.full) {
      slot.fullBuffer = copyFrame(slot.full, slot.fullBuffer, frame.full);
      slot.frame.full = slot.full;
    } else {
      slot.frame.full = undefined;
    }
    slot.enqueuedAt = performance.now();
  }

  function enqueue(frame: Frame): void | Promise<void> {
    if (controller.signal.aborted) return;
    let slot = free.pop();
    if (!slot) {
      if (mode === 'block') {
        return new Promise<void>((resolve) => slotWaiters.push(resolve)).then(() => enqueue(frame));
      }
      slot = queue.shift() as Slot;
      framesDropped++;
      window.recordDropped();
    }
    copyInto(slot, frame);
    queue.push(slot);
    framesIn++;
    window.recordFrameIn();
    notify();
  }

  function sampleHealth(frame: Slot['frame']): CameraHealthSample | null {
    if (!monitor) return null;
    if (frame.capturedAt - lastSampleAt < sampleIntervalMs) return null;
    lastSampleAt = frame.capturedAt;
    const luma = lumaThumbnail(frame.data, frame.width, frame.height, thumbnailWidth, thumbnail);
    if (luma.data.buffer !== thumbnail.buffer) thumbnail = new Uint8Array(luma.data.length);
    const sample = monitor.update(luma);
    window.recordCameraHealth(sample);
    return sample;
  }

  function noteError(message: string): void {
    // Logged when it changes, not per frame; every occurrence is counted.
    if (message !== lastError) logger.warn({ reason: message }, 'frame processing failed');
    lastError = message;
  }

  async function processSlot(slot: Slot): Promise<void> {
    const current = model;
    const frame = slot.frame as Frame;
    const t0 = performance.now();
    const queueMs = t0 - slot.enqueuedAt;
    const cameraHealth = sampleHealth(slot.frame);
    let detections: Detection[];
    let t1: number;
    let t2: number;
    let t3: number;
    try {
      const tStart = performance.now();
      const dims = current.adapter.inputDims(frame.width, frame.height);
      const needed = tensorLength(dims);
      if (input.length < needed) input = new Float32Array(needed);
      const pre = current.adapter.preprocess(frame, input);
      t1 = performance.now();
      const outputs = await current.session.run(current.input.name, input, pre.dims);
      t2 = performance.now();
      detections = current.adapter.postprocess(outputs, pre);
      t3 = performance.now();
      // Health sampling is not part of a stage.
      const preprocessMs = t1 - tStart;
      const timings: StageTimings = {
        queueMs,
        preprocessMs,
        inferenceMs: t2 - t1,
        postprocessMs: t3 - t2,
        totalMs: queueMs + preprocessMs + (t3 - t1),
      };
      framesProcessed++;
      inFlight = 0;
      window.recordProcessed(timings, detections, current.adapter.threshold);
      for (const sink of sinks) {
        try {
          const pending = sink.onResult({ frame, detections, timings, model: current, cameraHealth });
          if (pending) await pending;
        } catch (error) {
          sinkErrors++;
          noteError(`sink ${sink.name}: ${describeError(error)}`);
        }
      }
    } catch (error) {
      framesProcessed++;
      inFlight = 0;
      inferenceErrors++;
      window.recordInferenceError();
      noteError(describeError(error));
    }
  }

  async function loop(): Promise<void> {
    for (;;) {
      applyPendingSwap();
      if (controller.signal.aborted) break;
      const slot = queue.shift();
      if (!slot) {
        if (sourceDone) break;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        continue;
      }
      inFlight = 1;
      try {
        await processSlot(slot);
      } finally {
        inFlight = 0;
        free.push(slot);
        releaseWaiter();
      }
    }
    // Stopped: what is still queued will never be processed.
    if (queue.length > 0) {
      framesDropped += queue.length;
      window.recordDropped(queue.length);
      free.push(...queue.splice(0));
    }
    loopFinished = true;
    applyPendingSwap();
  }

  function applyPendingSwap(): void {
    const swap = pendingSwap;
    if (!swap) return;
    pendingSwap = null;
    const previous = model;
    model = swap.next;
    swap.resolve(previous);
  }

  let resolveDone: (outcome: PipelineOutcome) => void = () => {};
  const done = new Promise<PipelineOutcome>((resolve) => {
    resolveDone = resolve;
  });

  function start(): void {
    if (started) throw new Error('vision pipeline already started');
    started = true;
    const onExternalAbort = (): void => {
      controller.abort();
    };
    deps.signal?.addEventListener('abort', onExternalAbort, { once: true });
    if (deps.signal?.aborted) controller.abort();
    controller.signal.addEventListener(
      'abort',
      () => {
        notify();
        while (slotWaiters.length > 0) releaseWaiter();
      },
      { once: true },
    );
    const sourceRun = deps.source.run(enqueue, controller.signal).then(
      () => {
        sourceDone = true;
        notify();
      },
      (error: unknown) => {
        sourceDone = true;
        sourceError = error instanceof Error ? error : new Error(String(error));
        logger.error({ code: sourceError.code, reason: sourceError.message }, 'frame source failed');
        notify();
      },
    );
    void Promise.all([sourceRun, loop()]).then(
      () => {
        deps.signal?.removeEventListener('abort', onExternalAbort);
        if (sourceError && !controller.signal.aborted) resolveDone({ reason: 'failed', error: sourceError });
        else resolveDone(controller.signal.aborted ? { reason: 'stopped' } : { reason: 'ended' });
      },
      (error: unknown) => {
        resolveDone({ reason: 'failed', error: error instanceof Error ? error : new Error(String(error)) });
      },
    );
  }

  return {
    start,
    async stop() {
      controller.abort();
      if (!started) {
        resolveDone({ reason: 'stopped' });
      }
      return done;
    },
    done,
    stats: () => ({
      framesIn,
      framesProcessed,
      framesDropped,
      inferenceErrors,
      sinkErrors,
      queued: queue.length,
      inFlight,
      lastError,
      source: deps.source.stats(),
    }),
    takeMetrics: () => window.take({ provider: model.provider, model: model.ref }),
    model: () => model,
    swapModel(next) {
      if (!started || loopFinished) {
        const previous = model;
        model = next;
        return Promise.resolve(previous);
      }
      const replaced = pendingSwap as { next: VisionModel; resolve: (previous: VisionModel) => void } | null;
      if (replaced) {
        // A swap not yet applied is replaced; the model it would have installed was never used.
        pendingSwap = null;
        replaced.resolve(replaced.next);
      }
      return new Promise((resolve) => {
        pendingSwap = { next, resolve };
        notify();
      });
    },
    addSink(sink) {
      sinks.push(sink);
      return () => {
        const i = sinks.indexOf(sink);
        if (i >= 0) sinks.splice(i, 1);
      };
    },
  };
}
