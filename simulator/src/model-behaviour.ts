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
 * `scenes` says how a model behaves on a changed scene (a scenario's `scene-change` step): the
 * base's entry applies to every model that does not name the scene itself, so a retrained model
 * can undo what the scene does to the current one:
 *
 *   {
 *     "models": {
 *       "*": { "scenes": { "snow": { "confidenceShift": -0.25 } } },
 *       "det@2.0.0": { "scenes": { "snow": { "confidenceShift": 0 } } }
 *     }
 *   }
 *
 * A device plays the model it runs: inference latency (so fps and CPU load), detections per
 * frame, the confidence distribution, inference errors, and whether it crashes at warm-up (the
 * agent's model manager then reverts locally and reports `warmup_failed`).
 */

const SCENE_NAME = /^[a-z0-9][a-z0-9._-]*$/;

/** A scene's name (`snow`, `night`, `fog-2`), as scenario `scene-change` steps and `scenes` keys spell it. */
export const SceneName = z
  .string()
  .min(1)
  .max(64)
  .regex(SCENE_NAME, 'a scene name is lowercase letters, digits, dots, dashes or underscores');

const behaviourFields = {
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
};

/**
 * How a model behaves on a changed scene, over its own behaviour: the same fields as a model's
 * (no crash, no nested scenes).
 */
export const SceneBehaviourSpec = z.strictObject(behaviourFields);
export type SceneBehaviourSpec = z.infer<typeof SceneBehaviourSpec>;

export const ModelBehaviourSpec = z.strictObject({
  ...behaviourFields,
  /** The model crashes at warm-up: every device reverts locally (`warmup_failed`). */
  crashOnLoad: z.boolean().optional(),
  /**
   * How the model behaves on a scene a scenario's `scene-change` step sets, by scene name. A
   * model that names a scene replaces the base's (`*`) entry for it; one that does not plays
   * the base's.
   */
  scenes: z
    .record(z.string(), SceneBehaviourSpec)
    .superRefine((scenes, ctx) => {
      for (const key of Object.keys(scenes)) {
        if (!SceneName.safeParse(key).success) {
          ctx.addIssue({
            code: 'custom',
            path: [key],
            message: `"${key}": a scene name is lowercase letters, digits, dots, dashes or underscores (at most 64)`,
          });
        }
      }
    })
    .optional(),
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

/**
 * What a simulated model does on the device: a pipeline profile, the profile on each scene a
 * behaviour names (see `profileIn`), and whether it crashes.
 */
export type PlayedModel = {
  readonly profile: ModelProfile;
  readonly crashOnLoad: boolean;
  readonly scenes: Readonly<Record<string, ModelProfile>>;
};

/** The profile a model plays on `scene` (null: the normal scene, or a scene no behaviour names). */
export function profileIn(
  model: { readonly profile: ModelProfile; readonly scenes?: Readonly<Record<string, ModelProfile>> },
  scene: string | null,
): ModelProfile {
  return (scene === null ? undefined : model.scenes?.[scene]) ?? model.profile;
}

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
    const baseSpec = specs.get(ANY_MODEL);
    const base = applyBehaviour(DEFAULT_MODEL_PROFILE, baseSpec);
    const profile = behaviour ? applyBehaviour(base, behaviour) : base;
    // A scene's entry sits over the model's own profile: the model's entry if it names the
    // scene, the base's otherwise.
    const names = new Set([...Object.keys(baseSpec?.scenes ?? {}), ...Object.keys(behaviour?.scenes ?? {})]);
    const scenes: Record<string, ModelProfile> = {};
    for (const name of names) {
      scenes[name] = applyBehaviour(profile, behaviour?.scenes?.[name] ?? baseSpec?.scenes?.[name]);
    }
    return {
      profile,
      crashOnLoad: behaviour?.crashOnLoad ?? baseSpec?.crashOnLoad ?? false,
      scenes,
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
