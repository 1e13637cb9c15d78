import type { ModelManifest, ModelRef, ShadowMetrics } from '@edgeloop/protocol';
import { type Clock, systemClock, systemTimers, type Timers } from '../clock.ts';
import { type Logger, silentLogger } from '../logger.ts';
import type { ModelOutputs } from '../vision/adapters/adapter-types.ts';
import { tensorLength } from '../vision/adapters/adapter-types.ts';
import type { ModelSession } from '../vision/inference.ts';
import { createLatencyHistogram } from '../vision/latency-histogram.ts';
import { loadModelManifest } from '../vision/model-manifest.ts';
import type { FrameResult, VisionSink } from '../vision/pipeline.ts';
import type { Vision } from '../vision/vision.ts';
import type { VisionModel } from '../vision/vision-model.ts';
import {
  DEFAULT_HEALTH_CRITERIA,
  type HealthBaseline,
  type HealthCriteria,
  type HealthObservation,
  type HealthVerdict,
  healthReady,
  judgeHealth,
} from './health.ts';
import {
  type HealthCheckRequest,
  type LoadRequest,
  type ModelHandle,
  type ModelRuntime,
  ModelRuntimeError,
} from './runtime.ts';
import {
  createShadowComparator,
  type ShadowComparator,
  type ShadowComparedListener,
  type ShadowOptions,
} from './shadow.ts';

/*
 * The model runtime of a real device: the vision pipeline (vision.ts). Type-only imports of the
 * vision code, so importing this file loads no onnxruntime.
 *
 * - load: vision.loadModel (session + manifest + adapter; loadVisionModel already runs one
 *   warm-up at load), refusing bytes whose sha256 is not the release's. The session is wrapped
 *   so the health check can count inference errors and scan outputs for NaN/Inf (only while a
 *   check runs: the scan costs one pass over the output tensors).
 * - warm: the explicit warm-up: `warmupRuns` full pre -> inference -> post passes on a grey frame
 *   of the source's size; any throw fails the update before it switches.
 * - health: a pipeline sink keeps the active model's last BASELINE_FRAMES frames (inference ms,
 *   whether it detected anything); at a switch that becomes the baseline, and the new model's
 *   frames are observed until health.ts says a verdict is due.
 * - shadow: shadow.ts's comparator, added as a sink.
 */

const BASELINE_FRAMES = 256;

export type VisionModelRuntimeDeps = {
  readonly vision: Vision;
  /** The locally configured model (agent config vision.model), for desired model null. */
  readonly localModel?: { readonly path: string; readonly manifestPath?: string | undefined } | undefined;
  readonly health?: Partial<HealthCriteria> | undefined;
  readonly shadow?: Partial<ShadowOptions> | undefined;
  /** Hears each frame the shadow compared, with the candidate's detections (hard-sample capture). */
  readonly onShadowCompared?: ShadowComparedListener | undefined;
  /** Warm-up passes (default 3). */
  readonly warmupRuns?: number | undefined;
  /** Frame size of the warm-up (default: 640x480). */
  readonly warmupFrameSize?: { readonly width: number; readonly height: number } | undefined;
  readonly clock?: Clock | undefined;
  readonly timers?: Timers | undefined;
  readonly logger?: Logger | undefined;
};

export interface VisionModelRuntime extends ModelRuntime {
  /** Counters of the health monitor and shadow comparator. */
  stats(): Record<string, unknown>;
}

/** Counters the wrapped session keeps for the health check. */
type Probe = { scanning: boolean; errors: number; nonFiniteFrames: number };

class VisionHandle implements ModelHandle {
  readonly ref: ModelRef;
  readonly model: VisionModel;
  readonly probe: Probe;
  /** The previous model's recent frames, captured at the switch to this model. */
  baseline: HealthBaseline | null = null;
  constructor(model: VisionModel, probe: Probe) {
    this.ref = model.ref;
    this.model = model;
    this.probe = probe;
  }
}

function hasNonFinite(outputs: ModelOutputs): boolean {
  for (const name in outputs) {
    const data = outputs[name]?.data;
    if (!data) continue;
    for (let i = 0; i < data.length; i++) {
      const v = data[i] as number;
      // NaN - NaN and Inf - Inf are both NaN; finite values give 0.
      if (v - v !== 0) return true;
    }
  }
  return false;
}

/** The model with a session that counts errors and (while scanning) non-finite outputs. */
function watchModel(model: VisionModel, probe: Probe): VisionModel {
  const session = model.session;
  const watched: ModelSession = {
    ...session,
    async run(inputName, input, dims) {
      let outputs: ModelOutputs;
      try {
        outputs = await session.run(inputName, input, dims);
      } catch (error) {
        probe.errors++;
        throw error;
      }
      if (probe.scanning && hasNonFinite(outputs)) probe.nonFiniteFrames++;
      return outputs;
    },
  };
  return { ...model, session: watched };
}

/** The active model's recent frames and the check window of a newly switched model. */
class HealthMonitor implements VisionSink {
  readonly name = 'model-health';
  #tracked: VisionModel | null = null;
  readonly #latency = new Float64Array(BASELINE_FRAMES);
  readonly #detected = new Uint8Array(BASELINE_FRAMES);
  #count = 0;
  #next = 0;
  check: { model: VisionModel; frames: number; withDetections: number; onFrame: () => void } | null = null;
  readonly latency = createLatencyHistogram();

  onResult(result: FrameResult): void {
    if (result.model !== this.#tracked) {
      this.#tracked = result.model;
      this.#count = 0;
      this.#next = 0;
    }
    const found = result.detections.length > 0 ? 1 : 0;
    this.#latency[this.#next] = result.timings.inferenceMs;
    this.#detected[this.#next] = found;
    this.#next = (this.#next + 1) % BASELINE_FRAMES;
    if (this.#count < BASELINE_FRAMES) this.#count++;
    const check = this.check;
    if (check && check.model === result.model) {
      check.frames++;
      check.withDetections += found;
      this.latency.record(result.timings.inferenceMs);
      check.onFrame();
    }
  }

  baselineOf(model: VisionModel): HealthBaseline | null {
    if (model !== this.#tracked || this.#count === 0) return null;
    const latencies = Array.from(this.#latency.subarray(0, this.#count)).sort((a, b) => a - b);
    let withDetections = 0;
    for (let i = 0; i < this.#count; i++) withDetections += this.#detected[i] as number;
    return {
      frames: this.#count,
      framesWithDetections: withDetections,
      p95InferenceMs: latencies[Math.min(latencies.length - 1, Math.ceil(0.95 * latencies.length) - 1)] ?? null,
    };
  }
}

export function createVisionModelRuntime(deps: VisionModelRuntimeDeps): VisionModelRuntime {
  return new VisionRuntime(deps);
}

class VisionRuntime implements VisionModelRuntime {
  readonly #deps: VisionModelRuntimeDeps;
  readonly #vision: Vision;
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #log: Logger;
  readonly #criteria: HealthCriteria;
  readonly #monitor = new HealthMonitor();
  readonly #handles = new Map<VisionModel, VisionHandle>();
  #shadow: { handle: VisionHandle; comparator: ShadowComparator; remove: () => void } | null = null;
  readonly #counters = { loads: 0, warmups: 0, healthChecks: 0, healthFailures: 0 };

  constructor(deps: VisionModelRuntimeDeps) {
    this.#deps = deps;
    this.#vision = deps.vision;
    this.#clock = deps.clock ?? systemClock;
    this.#timers = deps.timers ?? systemTimers;
    this.#log = (deps.logger ?? silentLogger).child({ component: 'model-runtime' });
    this.#criteria = { ...DEFAULT_HEALTH_CRITERIA, ...deps.health };
    this.#vision.addSink(this.#monitor);
  }

  #handleOf(model: VisionModel): VisionHandle {
    let handle = this.#handles.get(model);
    if (!handle) {
      handle = new VisionHandle(model, { scanning: false, errors: 0, nonFiniteFrames: 0 });
      this.#handles.set(model, handle);
    }
    return handle;
  }

  #own(handle: ModelHandle): VisionHandle {
    if (!(handle instanceof VisionHandle)) throw new Error('not a handle of this runtime');
    return handle;
  }

  async #wrapLoad(path: string, manifest: ModelManifest | null): Promise<VisionHandle> {
    let model: VisionModel;
    try {
      model = await this.#vision.loadModel(path, manifest);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      throw new ModelRuntimeError(
        typeof code === 'string' ? code : 'model_invalid',
        `cannot load ${path}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    this.#counters.loads++;
    const probe: Probe = { scanning: false, errors: 0, nonFiniteFrames: 0 };
    const watched = watchModel(model, probe);
    const handle = new VisionHandle(watched, probe);
    this.#handles.set(watched, handle);
    return handle;
  }

  active(): ModelRef | null {
    return this.#vision.activeModel()?.ref ?? null;
  }

  current(): ModelHandle | null {
    const model = this.#vision.activeModel();
    return model ? this.#handleOf(model) : null;
  }

  shadow(): ModelRef | null {
    return this.#shadow?.handle.ref ?? null;
  }

  async load(request: LoadRequest): Promise<ModelHandle> {
    const path = request.location.path;
    if (!path) throw new ModelRuntimeError('model_not_found', 'the vision runtime loads models from files');
    const handle = await this.#wrapLoad(path, request.manifest);
    if (handle.ref.sha256 !== request.ref.sha256) {
      await this.release(handle);
      throw new ModelRuntimeError(
        'hash_mismatch',
        `${path} holds ${handle.ref.sha256}, not the released ${request.ref.sha256}`,
      );
    }
    if (request.signal.aborted) {
      await this.release(handle);
      request.signal.throwIfAborted();
    }
    return handle;
  }

  async loadLocal(signal: AbortSignal): Promise<ModelHandle | null> {
    const local = this.#deps.localModel;
    if (!local) return null;
    let manifest: ModelManifest | null = null;
    if (local.manifestPath) {
      const loaded = await loadModelManifest(local.manifestPath);
      if (!loaded.ok) throw new ModelRuntimeError('manifest_invalid', loaded.error.message);
      manifest = loaded.value;
    }
    const handle = await this.#wrapLoad(local.path, manifest);
    if (signal.aborted) {
      await this.release(handle);
      signal.throwIfAborted();
    }
    return handle;
  }

  async warm(handle: ModelHandle, signal: AbortSignal): Promise<void> {
    const { model } = this.#own(handle);
    const runs = this.#deps.warmupRuns ?? 3;
    const size = this.#deps.warmupFrameSize ?? { width: 640, height: 480 };
    const frame = {
      data: new Uint8Array(size.width * size.height * 3).fill(114),
      width: size.width,
      height: size.height,
      index: 0,
      capturedAt: this.#clock.now(),
      origin: 'warm-up',
    };
    const input = new Float32Array(tensorLength(model.adapter.inputDims(size.width, size.height)));
    for (let i = 0; i < runs; i++) {
      signal.throwIfAborted();
      try {
        const pre = model.adapter.preprocess(frame, input);
        const outputs = await model.session.run(model.input.name, input, pre.dims);
        model.adapter.postprocess(outputs, pre);
      } catch (error) {
        throw new ModelRuntimeError('warmup_failed', `warm-up of ${model.ref.id} failed: ${(error as Error).message}`, {
          cause: error,
        });
      }
    }
    this.#counters.warmups++;
  }

  async activate(handle: ModelHandle): Promise<ModelHandle | null> {
    const next = this.#own(handle);
    const current = this.#vision.activeModel();
    next.baseline = current ? this.#monitor.baselineOf(current) : null;
    const previous = await this.#vision.activateModel(next.model);
    return previous && previous !== next.model ? this.#handleOf(previous) : null;
  }

  startShadow(handle: ModelHandle): void {
    const own = this.#own(handle);
    this.stopShadow();
    const comparator = createShadowComparator({
      candidate: own.model,
      options: this.#deps.shadow,
      clock: this.#clock,
      onCompared: this.#deps.onShadowCompared,
    });
    const remove = this.#vision.addSink(comparator.sink);
    this.#shadow = { handle: own, comparator, remove };
  }

  stopShadow(): ModelHandle | null {
    const shadow = this.#shadow;
    if (!shadow) return null;
    shadow.remove();
    this.#shadow = null;
    return shadow.handle;
  }

  shadowMetrics(): ShadowMetrics | undefined {
    return this.#shadow?.comparator.take();
  }

  healthCheck(request: HealthCheckRequest): Promise<HealthVerdict> {
    const handle = this.#own(request.model);
    const criteria = this.#criteria;
    const monitor = this.#monitor;
    const probe = handle.probe;
    const signal = request.signal;
    const startedAt = this.#clock.now();
    const errorsAtStart = probe.errors;
    const nonFiniteAtStart = probe.nonFiniteFrames;
    this.#counters.healthChecks++;
    monitor.latency.reset();
    return new Promise<HealthVerdict>((resolve, reject) => {
      let timer: unknown = null;
      let settled = false;
      const observe = (): HealthObservation => ({
        frames: check.frames,
        errors: probe.errors - errorsAtStart,
        nonFiniteFrames: probe.nonFiniteFrames - nonFiniteAtStart,
        framesWithDetections: check.withDetections,
        p95InferenceMs: monitor.latency.count > 0 ? monitor.latency.quantile(0.95) : null,
        elapsedMs: this.#clock.now() - startedAt,
      });
      const finish = (outcome: { verdict: HealthVerdict } | { error: unknown }) => {
        if (settled) return;
        settled = true;
        probe.scanning = false;
        if (monitor.check === check) monitor.check = null;
        if (timer !== null) this.#timers.clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if ('verdict' in outcome) {
          if (!outcome.verdict.ok) this.#counters.healthFailures++;
          resolve(outcome.verdict);
        } else {
          reject(outcome.error);
        }
      };
      const evaluate = () => {
        if (settled) return;
        const observation = observe();
        if (!healthReady(observation, criteria)) return;
        finish({
          verdict: judgeHealth({
            observation,
            baseline: handle.baseline,
            criteria,
            latencyBudgetMs: request.manifest.latencyBudgetMs,
          }),
        });
      };
      const onAbort = () => finish({ error: signal.reason });
      const check = { model: handle.model, frames: 0, withDetections: 0, onFrame: evaluate };
      monitor.check = check;
      probe.scanning = true;
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) {
        onAbort();
        return;
      }
      // Errors do not reach sinks: a timer looks at them (and at the clock) as well.
      const tick = () => {
        timer = null;
        evaluate();
        if (!settled) timer = this.#timers.setTimeout(tick, 100);
      };
      timer = this.#timers.setTimeout(tick, 100);
    });
  }

  async release(handle: ModelHandle): Promise<void> {
    const own = this.#own(handle);
    if (this.#shadow?.handle === own) this.stopShadow();
    if (this.#vision.activeModel() === own.model) {
      this.#log.warn({ model: own.ref.id }, 'refusing to release the active model');
      return;
    }
    this.#handles.delete(own.model);
    await own.model.release();
  }

  stats(): Record<string, unknown> {
    return { ...this.#counters, shadow: this.#shadow?.comparator.stats() ?? null };
  }
}
