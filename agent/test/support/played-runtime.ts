import type { ModelRef, ShadowMetrics } from '@edgeloop/protocol';
import { DEFAULT_HEALTH_CRITERIA, type HealthVerdict, judgeHealth } from '../../src/model-update/health.ts';
import {
  type HealthCheckRequest,
  type LoadRequest,
  type ModelHandle,
  type ModelRuntime,
  ModelRuntimeError,
} from '../../src/model-update/runtime.ts';

/*
 * A model runtime that plays models instead of running them (what the simulator will do), for the
 * model manager's tests: per sha256 it can refuse to load, fail its warm-up, fail its health check,
 * or hold a step until the signal aborts (a process that hangs there, to be "killed").
 */

export type PlayedBehaviour = {
  readonly load?: 'fail' | 'hold';
  readonly warm?: 'fail' | 'hold';
  readonly health?: 'latency' | 'empty' | 'hold' | 'gate';
};

class PlayedHandle implements ModelHandle {
  readonly ref: ModelRef;
  constructor(ref: ModelRef) {
    this.ref = ref;
  }
}

function hold(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

export class PlayedRuntime implements ModelRuntime {
  readonly behaviours = new Map<string, PlayedBehaviour>();
  readonly log: string[] = [];
  readonly loaded = new Set<PlayedHandle>();
  readonly #gates: Array<() => void> = [];
  #active: PlayedHandle | null = null;
  #shadow: PlayedHandle | null = null;
  readonly #local: ModelRef | null;

  constructor(options: { local?: ModelRef | null } = {}) {
    this.#local = options.local ?? null;
  }

  /** Starts with the local model running, as vision.start() would. */
  startLocal(): void {
    if (this.#local) this.#active = this.#handle(this.#local);
  }

  #handle(ref: ModelRef): PlayedHandle {
    const handle = new PlayedHandle(ref);
    this.loaded.add(handle);
    return handle;
  }

  active(): ModelRef | null {
    return this.#active?.ref ?? null;
  }
  current(): ModelHandle | null {
    return this.#active;
  }
  shadow(): ModelRef | null {
    return this.#shadow?.ref ?? null;
  }
  async load(request: LoadRequest): Promise<ModelHandle> {
    this.log.push(`load ${request.ref.id}`);
    const behaviour = this.behaviours.get(request.ref.sha256)?.load;
    if (behaviour === 'hold') await hold(request.signal);
    if (behaviour === 'fail') throw new ModelRuntimeError('model_invalid', `${request.ref.id} does not load`);
    return this.#handle(request.ref);
  }
  async loadLocal(): Promise<ModelHandle | null> {
    this.log.push('load local');
    return this.#local ? this.#handle(this.#local) : null;
  }
  async warm(model: ModelHandle, signal: AbortSignal): Promise<void> {
    this.log.push(`warm ${model.ref.id}`);
    const behaviour = this.behaviours.get(model.ref.sha256)?.warm;
    if (behaviour === 'hold') await hold(signal);
    if (behaviour === 'fail') throw new ModelRuntimeError('warmup_failed', `${model.ref.id} crashed at warm-up`);
  }
  async activate(model: ModelHandle): Promise<ModelHandle | null> {
    this.log.push(`activate ${model.ref.id}`);
    const previous = this.#active;
    this.#active = model as PlayedHandle;
    return previous;
  }
  startShadow(model: ModelHandle): void {
    this.log.push(`shadow ${model.ref.id}`);
    this.#shadow = model as PlayedHandle;
  }
  stopShadow(): ModelHandle | null {
    const shadow = this.#shadow;
    this.#shadow = null;
    return shadow;
  }
  shadowMetrics(): ShadowMetrics | undefined {
    const shadow = this.#shadow;
    if (!shadow) return undefined;
    return {
      candidate: shadow.ref,
      framesCompared: 10,
      framesSkipped: 0,
      precision: 1,
      recall: 1,
      perClass: {},
      candidateLatencyMs: { count: 10, p50: 5, p95: 6, p99: 6, max: 6 },
    };
  }
  async healthCheck(request: HealthCheckRequest): Promise<HealthVerdict> {
    this.log.push(`health ${request.model.ref.id}`);
    const behaviour = this.behaviours.get(request.model.ref.sha256)?.health;
    if (behaviour === 'hold') await hold(request.signal);
    if (behaviour === 'gate')
      await Promise.race([new Promise<void>((resolve) => this.#gates.push(resolve)), hold(request.signal)]);
    const criteria = { ...DEFAULT_HEALTH_CRITERIA, minFrames: 10 };
    return judgeHealth({
      observation: {
        frames: 30,
        errors: 0,
        nonFiniteFrames: 0,
        framesWithDetections: behaviour === 'empty' ? 0 : 25,
        p95InferenceMs: behaviour === 'latency' ? 300 : 30,
        elapsedMs: 10_000,
      },
      baseline: { frames: 100, framesWithDetections: 90, p95InferenceMs: 30 },
      criteria,
    });
  }
  /** Health checks waiting at a gate: how many, and letting them all finish (healthy). */
  get gatesWaiting(): number {
    return this.#gates.length;
  }
  openGates(): void {
    for (const open of this.#gates.splice(0)) open();
  }

  async release(model: ModelHandle): Promise<void> {
    this.log.push(`release ${model.ref.id}`);
    this.loaded.delete(model as PlayedHandle);
  }
}
