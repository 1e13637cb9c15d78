import {
  DEFAULT_HEALTH_CRITERIA,
  type HealthCheckRequest,
  type HealthVerdict,
  judgeHealth,
  type LoadRequest,
  type ModelHandle,
  type ModelRuntime,
  ModelRuntimeError,
} from '@edgeloop/agent';
import type { ModelRef, ShadowMetrics } from '@edgeloop/protocol';
import type { ModelProfile } from './profiles.ts';
import { syntheticShadowWindow } from './synthetic-metrics.ts';

/*
 * The model runtime of a simulated device: the agent's real model manager (download over HTTP
 * from the control plane, signature and hash checks, A/B slots in memory, the transition table,
 * health check, local revert) drives it, and it plays what the model does instead of running it.
 * How a model behaves comes from the fleet's behaviour table (scenario `models`), by model id.
 */

import { type PlayedModel, profileIn } from './model-behaviour.ts';

export type { PlayedModel };

/** The device side a runtime plays on. */
export type SimulatedPipeline = {
  readonly hardwareSpeed: number;
  readonly cameraFps: number;
  /** What serves frames now (feeds the synthetic pipeline metrics), with its profile per scene. */
  setModel(model: ServedModel | null): void;
  /** The scene the camera sees now (null: the normal one); see scenario `scene-change`. */
  scene(): string | null;
  random(): number;
};

/** A model serving frames: its profile on the normal scene and on each scene a behaviour names. */
export type ServedModel = {
  readonly ref: ModelRef;
  readonly profile: ModelProfile;
  readonly scenes?: Readonly<Record<string, ModelProfile>>;
};

class PlayedHandle implements ModelHandle {
  readonly ref: ModelRef;
  readonly played: PlayedModel;
  constructor(ref: ModelRef, played: PlayedModel) {
    this.ref = ref;
    this.played = played;
  }
}

export type SimulatedRuntimeDeps = {
  readonly pipeline: SimulatedPipeline;
  /** How a model behaves (by `name@version`); the default profile when the table has none. */
  readonly behaviourOf: (ref: ModelRef) => PlayedModel;
  /** The model the device runs before any rollout (its locally configured model). */
  readonly local: ModelRef | null;
  /** Simulated time the health check watches the new model (ms). */
  readonly healthCheckMs: number;
  /** Share of frames shadow inference compares. */
  readonly shadowShare: number;
};

export class SimulatedModelRuntime implements ModelRuntime {
  readonly #deps: SimulatedRuntimeDeps;
  #active: PlayedHandle | null = null;
  #shadow: PlayedHandle | null = null;
  #shadowSince = Date.now();

  constructor(deps: SimulatedRuntimeDeps) {
    this.#deps = deps;
    // Like the vision pipeline at start: the locally configured model serves frames until the
    // model manager activates a slot model.
    if (deps.local) this.#serve(new PlayedHandle(deps.local, deps.behaviourOf(deps.local)));
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
    return new PlayedHandle(request.ref, this.#deps.behaviourOf(request.ref));
  }

  async loadLocal(): Promise<ModelHandle | null> {
    const local = this.#deps.local;
    if (!local) return null;
    return new PlayedHandle(local, this.#deps.behaviourOf(local));
  }

  async warm(model: ModelHandle): Promise<void> {
    const played = (model as PlayedHandle).played;
    if (played.crashOnLoad) {
      throw new ModelRuntimeError('warmup_failed', `${model.ref.id} crashed at warm-up (simulated)`);
    }
  }

  #serve(handle: PlayedHandle | null): void {
    this.#active = handle;
    this.#deps.pipeline.setModel(
      handle ? { ref: handle.ref, profile: handle.played.profile, scenes: handle.played.scenes } : null,
    );
  }

  async activate(model: ModelHandle): Promise<ModelHandle | null> {
    const previous = this.#active;
    this.#serve(model as PlayedHandle);
    return previous;
  }

  startShadow(model: ModelHandle): void {
    this.#shadow = model as PlayedHandle;
    this.#shadowSince = Date.now();
  }

  stopShadow(): ModelHandle | null {
    const shadow = this.#shadow;
    this.#shadow = null;
    return shadow;
  }

  shadowMetrics(): ShadowMetrics | undefined {
    const shadow = this.#shadow;
    const active = this.#active;
    if (!shadow || !active) return undefined;
    const now = Date.now();
    const seconds = Math.max(0.1, (now - this.#shadowSince) / 1000);
    this.#shadowSince = now;
    const { pipeline, shadowShare } = this.#deps;
    const frames = Math.round(seconds * pipeline.cameraFps * shadowShare);
    const scene = pipeline.scene();
    return syntheticShadowWindow({
      candidate: shadow.ref,
      current: profileIn(active.played, scene),
      candidateProfile: profileIn(shadow.played, scene),
      hardwareSpeed: pipeline.hardwareSpeed,
      framesCompared: frames,
      framesSkipped: 0,
      random: () => pipeline.random(),
    });
  }

  async healthCheck(request: HealthCheckRequest): Promise<HealthVerdict> {
    const { healthCheckMs, pipeline } = this.#deps;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, healthCheckMs);
      request.signal.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          reject(request.signal.reason);
        },
        { once: true },
      );
    });
    const scene = pipeline.scene();
    const model = profileIn((request.model as PlayedHandle).played, scene);
    const previousPlayed = (request.previous as PlayedHandle | null)?.played;
    const previous = previousPlayed ? profileIn(previousPlayed, scene) : null;
    const frames = Math.max(30, Math.round((healthCheckMs / 1000) * pipeline.cameraFps));
    const errors = Math.round(frames * model.errorRate);
    const detectRate = (profile: ModelProfile) =>
      Math.min(
        1,
        Object.values(profile.detectionsPerFrame).reduce((sum, rate) => sum + rate, 0),
      );
    return judgeHealth({
      observation: {
        frames: frames - errors,
        errors,
        nonFiniteFrames: 0,
        framesWithDetections: Math.round((frames - errors) * detectRate(model)),
        p95InferenceMs: (model.latencyMs / pipeline.hardwareSpeed) * 1.28,
        elapsedMs: Math.max(healthCheckMs, DEFAULT_HEALTH_CRITERIA.minDurationMs),
      },
      baseline: previous
        ? {
            frames: 100,
            framesWithDetections: Math.round(100 * detectRate(previous)),
            p95InferenceMs: (previous.latencyMs / pipeline.hardwareSpeed) * 1.28,
          }
        : null,
      criteria: { ...DEFAULT_HEALTH_CRITERIA, minFrames: 1, minDurationMs: 0 },
    });
  }

  async release(): Promise<void> {}
}
