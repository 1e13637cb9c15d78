import type { ModelManifest, PipelineMetrics } from '@edgeloop/protocol';
import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import type { Logger } from '../logger.ts';
import { silentLogger } from '../logger.ts';
import type { SourceScale } from './adapters/resize.ts';
import type { CameraHealthConfig, VisionConfig, VisionSourceConfig } from './config.ts';
import { createFfmpegSource } from './ffmpeg-source.ts';
import type { FrameSource } from './frame-source.ts';
import { backoffDelay, sleepUnlessAborted } from './frame-source.ts';
import { createImageFolderSource } from './image-folder-source.ts';
import type { MetricsWindow } from './metrics-window.ts';
import { createMetricsWindow } from './metrics-window.ts';
import { loadModelManifest } from './model-manifest.ts';
import { createPiCameraSource } from './pi-camera-source.ts';
import type { PipelineStats, VisionPipeline, VisionSink } from './pipeline.ts';
import { createVisionPipeline } from './pipeline.ts';
import { createSyntheticSource } from './synthetic-source.ts';
import { VisionError } from './vision-error.ts';
import type { VisionModel } from './vision-model.ts';
import { loadVisionModel } from './vision-model.ts';

/*
 * The agent's vision service: builds the frame source from config, runs the pipeline with the
 * active model, keeps ONE metrics window across pipeline restarts and model swaps, and restarts
 * the pipeline (with backoff) when its source fails for good.
 *
 *   const vision = createVision({ config: config.vision, clock, logger, searchPath: process.env.PATH, onFault });
 *   await vision.start();                       // loads config.vision.model when given
 *   telemetry: pipeline: () => vision.takeMetrics()   // once per telemetry interval
 *   model update: const next = await vision.loadModel(path, manifest);
 *                 const previous = await vision.activateModel(next); await previous?.release();
 */

export interface VisionFault {
  code: string;
  message: string;
  /** When the source is started again. */
  retryInMs: number;
}

export interface VisionDeps {
  config: VisionConfig;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  /** PATH-style folders for ffmpeg and the camera programs (main.ts passes process.env.PATH). */
  searchPath?: string | undefined;
  /** The source failed for good and will be retried (once per failure, not per frame). */
  onFault?: ((fault: VisionFault) => void) | undefined;
  sinks?: readonly VisionSink[] | undefined;
}

export interface Vision {
  /** Loads the configured model (if any) and starts the pipeline. Throws VisionError on a bad model. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Telemetry's `pipeline` field: metrics since the previous call; undefined while no model runs. */
  takeMetrics(): PipelineMetrics | undefined;
  /** Loads and warms a model with the configured providers and threads (does not activate it). */
  loadModel(modelPath: string, manifest: ModelManifest | null): Promise<VisionModel>;
  /** Runs `model` from the next frame on; resolves with the previous model once unused (release it). */
  activateModel(model: VisionModel): Promise<VisionModel | null>;
  activeModel(): VisionModel | null;
  addSink(sink: VisionSink): () => void;
  /** Counters of the running pipeline; null when none runs. */
  stats(): PipelineStats | null;
}

export interface FrameSourceDeps {
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  ffmpegPath?: string | undefined;
  searchPath?: string | undefined;
  /** ffmpeg sources with scaleToModel: the model's wish (adapter.sourceScale); null: no scaling for the model. */
  modelScale?: SourceScale | null | undefined;
  /** With modelScale: every Nth frame carries the full-resolution frame (the sinks' smallest wish). */
  fullFrames?: { everyFrames: number } | null | undefined;
}

/** The smallest full-frame interval the sinks ask for; null when none asks. */
export function fullFramesFor(sinks: readonly VisionSink[]): { everyFrames: number } | null {
  let every = Number.POSITIVE_INFINITY;
  for (const sink of sinks) {
    const wanted = sink.fullFrames?.everyFrames;
    if (wanted !== undefined && wanted >= 1) every = Math.min(every, Math.floor(wanted));
  }
  return Number.isFinite(every) ? { everyFrames: every } : null;
}

function sameScale(a: SourceScale | null, b: SourceScale | null): boolean {
  return (
    a === b ||
    (a !== null && b !== null && a.width === b.width && a.height === b.height && a.keepAspect === b.keepAspect)
  );
}

/** The frame source a `vision.source` config describes. */
export function createFrameSource(config: VisionSourceConfig, deps: FrameSourceDeps = {}): FrameSource {
  switch (config.kind) {
    case 'ffmpeg':
      return createFfmpegSource(
        {
          url: config.url,
          modelScale: config.scaleToModel ? deps.modelScale : null,
          fullFrames: config.scaleToModel && deps.modelScale ? deps.fullFrames : null,
          format: config.format,
          inputOptions: config.inputOptions,
          width: config.width,
          height: config.height,
          fps: config.fps,
          loop: config.loop,
          realtime: config.realtime,
          rtspTransport: config.rtspTransport,
          restart: config.restart,
          stallTimeoutMs: config.stallTimeoutMs,
          ffmpegPath: deps.ffmpegPath,
        },
        { clock: deps.clock, logger: deps.logger },
      );
    case 'pi-camera':
      return createPiCameraSource(
        {
          backend: config.backend,
          command: config.command,
          width: config.width,
          height: config.height,
          intervalMs: config.intervalMs,
          settleMs: config.settleMs,
          captureTimeoutMs: config.captureTimeoutMs,
          maxConsecutiveFailures: config.maxConsecutiveFailures,
          extraArgs: config.extraArgs,
          searchPath: deps.searchPath,
          ffmpegPath: deps.ffmpegPath,
        },
        { clock: deps.clock, logger: deps.logger },
      );
    case 'images':
      return createImageFolderSource(
        { dir: config.dir, loop: config.loop, intervalMs: config.intervalMs, ffmpegPath: deps.ffmpegPath },
        { clock: deps.clock },
      );
    case 'synthetic':
      return createSyntheticSource(
        { width: config.width, height: config.height, fps: config.fps, pattern: config.pattern },
        { clock: deps.clock },
      );
  }
}

function healthDetectors(config: CameraHealthConfig) {
  const { enabled: _enabled, sampleIntervalMs: _interval, thumbnailWidth: _width, ...detectors } = config;
  return detectors;
}

export function createVision(deps: VisionDeps): Vision {
  const { config } = deps;
  const clock = deps.clock ?? systemClock;
  const logger = (deps.logger ?? silentLogger).child({ component: 'vision' });
  const window: MetricsWindow = createMetricsWindow({ clock });
  const sinks: VisionSink[] = [...(deps.sinks ?? [])];
  const stopController = new AbortController();
  let model: VisionModel | null = null;
  let pipeline: VisionPipeline | null = null;
  let loopDone: Promise<void> | null = null;
  // The model scale the running source was started with; a swap to a model that wants another one restarts it.
  let sourceScale: SourceScale | null = null;
  let restartSource = false;
  const ffmpegPath = config.ffmpegPath;
  const scalesForModel = config.source.kind === 'ffmpeg' && config.source.scaleToModel;

  async function loadModel(modelPath: string, manifest: ModelManifest | null): Promise<VisionModel> {
    const warmupFrameSize =
      config.source.kind !== 'images' && config.source.width && config.source.height
        ? { width: config.source.width, height: config.source.height }
        : undefined;
    return loadVisionModel({
      modelPath,
      manifest,
      providers: config.providers,
      intraOpThreads: config.threads.intraOp,
      interOpThreads: config.threads.interOp,
      ortLogLevel: config.ortLogLevel,
      logger: deps.logger,
      warmupFrameSize,
    });
  }

  async function runPipelines(): Promise<void> {
    let failures = 0;
    while (!stopController.signal.aborted && model) {
      sourceScale = scalesForModel ? model.adapter.sourceScale : null;
      restartSource = false;
      const current = createVisionPipeline({
        source: createFrameSource(config.source, {
          clock,
          logger: deps.logger,
          ffmpegPath,
          searchPath: deps.searchPath,
          modelScale: sourceScale,
          fullFrames: fullFramesFor(sinks),
        }),
        model,
        sinks,
        clock,
        logger: deps.logger,
        signal: stopController.signal,
        metrics: window,
        options: {
          queueCapacity: config.queue.capacity,
          queueMode: config.queue.mode,
          cameraHealth: config.cameraHealth.enabled
            ? {
                sampleIntervalMs: config.cameraHealth.sampleIntervalMs,
                thumbnailWidth: config.cameraHealth.thumbnailWidth,
                detectors: healthDetectors(config.cameraHealth),
              }
            : false,
        },
      });
      pipeline = current;
      current.start();
      const outcome = await current.done;
      model = current.model();
      pipeline = null;
      if (outcome.reason === 'stopped' && restartSource && !stopController.signal.aborted) continue;
      if (outcome.reason === 'stopped') return;
      if (outcome.reason === 'ended') {
        logger.info({ source: config.source.kind }, 'frame source ended');
        return;
      }
      failures = current.stats().framesProcessed > 0 ? 1 : failures + 1;
      const retryInMs = backoffDelay(failures - 1, config.sourceRetry.initialDelayMs, config.sourceRetry.maxDelayMs);
      const fault = { code: outcome.error.code ?? 'source_failed', message: outcome.error.message, retryInMs };
      logger.error(fault, 'vision source failed; retrying');
      deps.onFault?.(fault);
      if (!(await sleepUnlessAborted(retryInMs, stopController.signal))) return;
    }
  }

  function startLoop(): void {
    if (loopDone || !model || stopController.signal.aborted) return;
    loopDone = runPipelines().finally(() => {
      loopDone = null;
    });
  }

  return {
    async start() {
      if (!config.enabled) return;
      if (config.model && !model) {
        let manifest: ModelManifest | null = null;
        if (config.model.manifestPath) {
          const loaded = await loadModelManifest(config.model.manifestPath);
          if (!loaded.ok) throw new VisionError('manifest_invalid', loaded.error.message);
          manifest = loaded.value;
        }
        model = await loadModel(config.model.path, manifest);
      }
      startLoop();
    },
    async stop() {
      stopController.abort();
      await pipeline?.stop();
      await loopDone;
      await model?.release();
      model = null;
    },
    takeMetrics() {
      if (!model) return undefined;
      return window.take({ provider: model.provider, model: model.ref });
    },
    loadModel,
    async activateModel(next) {
      const running = pipeline;
      if (running) {
        const previous = await running.swapModel(next);
        model = next;
        if (scalesForModel && !sameScale(sourceScale, next.adapter.sourceScale)) {
          // ffmpeg scales for the previous model's input: start the source again for this one.
          restartSource = true;
          void running.stop();
        }
        return previous;
      }
      const previous = model;
      model = next;
      if (config.enabled) startLoop();
      return previous;
    },
    activeModel: () => model,
    addSink(sink) {
      sinks.push(sink);
      const removeFromRunning = pipeline?.addSink(sink);
      return () => {
        const i = sinks.indexOf(sink);
        if (i >= 0) sinks.splice(i, 1);
        removeFromRunning?.();
      };
    },
    stats: () => pipeline?.stats() ?? null,
  };
}
