import type { ModelRef } from '@edgeloop/protocol';
import { fail, ok, type Result } from '@edgeloop/protocol';
import { z } from 'zod';
import { applyBehaviour, DEFAULT_MODEL_PROFILE, type ModelBehaviour, type ModelProfile } from './profiles.ts';

/*
 * How models behave on simulated devices (`edgeloop-sim --model-behaviour FILE`, and the `models`
 * section of a scenario file). Keys name a model by `name@version` or by its sha256; `*` sets the
 * base every model starts from (a scene with no detections: `"*": { "detectionFactor": 0 }`).
 * A model no key names behaves like the base: "the same as the current model".
 *
 *   {
 *     "models": {
 *       "det@2.0.0": { "latencyFactor": 1.3 },
 *       "3f1c...e9": { "crashOnLoad": true },
 *       "*": { "maxFps": 2 }
 *     }
 *   }
 *
 * A device plays the model it runs: inference latency (so fps and CPU load), detections per
 * frame, the confidence distribution, inference errors, and whether it crashes at warm-up (the
 * agent's model manager then reverts locally and reports `warmup_failed`).
 */

export const ModelBehaviourSpec = z.strictObject({
  /** Inference latency x this (1.3: a model 30% slower). Default 1. */
  latencyFactor: z.number().positive().optional(),
  /** Detections per frame x this (0: a scene where it sees nothing). Default 1. */
  detectionFactor: z.number().min(0).optional(),
  /** Mean detections per frame per class, replacing the default detector's (before detectionFactor). */
  detectionsPerFrame: z.record(z.string().min(1).max(64), z.number().min(0)).optional(),
  /** Added to the mean detection confidence (-0.2: a less sure model). Default 0. */
  confidenceShift: z.number().min(-1).max(1).optional(),
  /** Spread (standard deviation) of detection confidence. Default 0.14. */
  confidenceSd: z.number().min(0).max(1).optional(),
  /** Share of frames whose inference fails. Default 0. */
  errorRate: z.number().min(0).max(1).optional(),
  /** Frames per second the model can process at most, whatever the camera gives. Default: no cap. */
  maxFps: z.number().positive().optional(),
  /** The model crashes at warm-up: every device reverts locally (`warmup_failed`). */
  crashOnLoad: z.boolean().optional(),
});
export type ModelBehaviourSpec = z.infer<typeof ModelBehaviourSpec>;

/** Key of the base behaviour every model starts from. */
export const ANY_MODEL = '*';

const MODEL_KEY = /^(\*|[0-9a-f]{64}|[a-z0-9][a-z0-9._-]*@[0-9A-Za-z.+-]+)$/;

export const ModelBehaviours = z.record(z.string(), ModelBehaviourSpec).superRefine((models, ctx) => {
  for (const key of Object.keys(models)) {
    if (!MODEL_KEY.test(key)) {
      ctx.addIssue({
        code: 'custom',
        path: [key],
        message: `"${key}": a model key is name@version, a sha256 (64 lowercase hex digits) or *`,
      });
    }
  }
});
export type ModelBehaviours = z.infer<typeof ModelBehaviours>;

export const ModelBehaviourFile = z.strictObject({
  description: z.string().max(2000).optional(),
  models: ModelBehaviours,
});
export type ModelBehaviourFile = z.infer<typeof ModelBehaviourFile>;

/** Parses a `--model-behaviour` file's text; every problem is listed. */
export function parseModelBehaviourFile(text: string): Result<ModelBehaviourFile> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return fail('invalid_model_behaviour', `not JSON: ${(error as Error).message}`);
  }
  const parsed = ModelBehaviourFile.safeParse(json);
  if (!parsed.success) {
    return fail(
      'invalid_model_behaviour',
      parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; '),
    );
  }
  return ok(parsed.data);
}

/** What a simulated model does on the device: a pipeline profile, and whether it crashes. */
export type PlayedModel = { readonly profile: ModelProfile; readonly crashOnLoad: boolean };

/**
 * The behaviour table of a fleet: a model is looked up by `name@version`, then by sha256; what
 * neither names plays the base (`*` over the default detector).
 */
export type BehaviourTable = {
  set(key: string, behaviour: ModelBehaviour): void;
  of(ref: ModelRef): PlayedModel;
};

export function createBehaviourTable(behaviours: Readonly<Record<string, ModelBehaviour>> = {}): BehaviourTable {
  const specs = new Map<string, ModelBehaviour>(Object.entries(behaviours));
  const played = (behaviour: ModelBehaviour | undefined): PlayedModel => {
    const base = applyBehaviour(DEFAULT_MODEL_PROFILE, specs.get(ANY_MODEL));
    return {
      profile: behaviour ? applyBehaviour(base, behaviour) : base,
      crashOnLoad: behaviour?.crashOnLoad ?? specs.get(ANY_MODEL)?.crashOnLoad ?? false,
    };
  };
  return {
    set(key, behaviour) {
      specs.set(key, behaviour);
    },
    of(ref) {
      return played(specs.get(ref.id) ?? specs.get(ref.sha256));
    },
  };
}
