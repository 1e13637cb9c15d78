import type { ModelManifest, ModelRef, ShadowMetrics } from '@edgeloop/protocol';
import type { HealthVerdict } from './health.ts';
import type { ModelLocation } from './storage.ts';

/*
 * What the model manager needs from whatever runs models. On a device this is the vision
 * pipeline (createVisionModelRuntime in vision-runtime.ts); in the simulator it is a fake that
 * plays latencies, detections and crashes from a model profile. The manager never looks inside a
 * handle: it only passes handles back to the runtime that made them.
 *
 * A simulator runtime, in short:
 *   load({ ref, manifest, location })  -> a handle { ref } (fail with a ModelRuntimeError code to
 *                                         play a model that does not load: `model_invalid`, ...)
 *   warm(handle)                       -> resolve (or reject to play a crash at warm-up)
 *   activate(handle)                   -> remember it as active; return the previous handle
 *   startShadow / stopShadow           -> remember the shadow; shadowMetrics() plays agreement
 *   healthCheck({ model, ... })        -> judgeHealth() over the numbers its profile gives
 *   release(handle)                    -> forget it
 * `location` holds bytes only when the storage keeps them (createMemoryModelStorage({ keepBytes })).
 */

/** A loaded model, as the runtime that loaded it knows it. */
export interface ModelHandle {
  readonly ref: ModelRef;
}

export type LoadRequest = {
  readonly ref: ModelRef;
  readonly manifest: ModelManifest;
  readonly location: ModelLocation;
  readonly signal: AbortSignal;
};

export type HealthCheckRequest = {
  readonly model: ModelHandle;
  /** The model that ran before the switch (its recent frames are the baseline); null when none. */
  readonly previous: ModelHandle | null;
  readonly manifest: ModelManifest;
  readonly signal: AbortSignal;
};

/** A failure the runtime expects (a model that does not load, a warm-up that throws), with a stable code. */
export class ModelRuntimeError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ModelRuntimeError';
    this.code = code;
  }
}

export interface ModelRuntime {
  /** The model serving frames now (null when none). */
  active(): ModelRef | null;
  /** The handle of the model serving frames now (the manager reverts to it). */
  current(): ModelHandle | null;
  /** The shadow model, while one runs. */
  shadow(): ModelRef | null;
  /** Loads a model beside the active one (not used for frames yet). Rejects with a ModelRuntimeError. */
  load(request: LoadRequest): Promise<ModelHandle>;
  /** The locally configured model (agent config `vision.model`); null when none is configured. */
  loadLocal(signal: AbortSignal): Promise<ModelHandle | null>;
  /** A warm-up inference: the first real frame then pays no set-up cost, and a model that cannot run fails here. */
  warm(model: ModelHandle, signal: AbortSignal): Promise<void>;
  /** Serves frames with `model` from the next frame on; resolves with the previous handle once unused. */
  activate(model: ModelHandle): Promise<ModelHandle | null>;
  /** Runs `model` beside the active one on sampled frames and compares their detections. */
  startShadow(model: ModelHandle): void;
  /** Stops the shadow; returns its handle (still loaded). */
  stopShadow(): ModelHandle | null;
  /** Telemetry's `shadow` field: agreement since the previous call; undefined while no shadow runs. */
  shadowMetrics(): ShadowMetrics | undefined;
  /** Watches the active `model` after a switch and judges it (see health.ts). Rejects on abort. */
  healthCheck(request: HealthCheckRequest): Promise<HealthVerdict>;
  release(model: ModelHandle): Promise<void>;
}
