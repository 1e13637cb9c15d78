import { z } from 'zod';

/* Model manifests, signed releases and model assignments.
 *
 *   ModelManifest        how to run a model: adapter, input spec, labels, thresholds (not signed alone)
 *   ModelRelease         what is signed: bytes (sha256, size), version, release counter, expiry,
 *                        compatible hardware, key id, and the manifest
 *   SignedModelRelease   a release plus its Ed25519 signature over canonicalBytes(release)
 *   ModelAssignment      what desired state tells a device to run
 */

export const ModelName = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9][a-z0-9._-]*$/, 'model name may hold only lowercase letters, digits, . _ -');

/** Semantic version, MAJOR.MINOR.PATCH with optional pre-release and build metadata. */
export const SemVer = z
  .string()
  .max(64)
  .regex(
    /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/,
    'version must be semver (1.2.3)',
  );

export const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'sha256 must be 64 lowercase hex digits');

/** A reference to one model version, as devices report it. */
export const ModelRef = z.object({
  /** `name@version` */
  id: z.string().max(128),
  name: ModelName,
  version: SemVer,
  sha256: Sha256Hex,
});
export type ModelRef = z.infer<typeof ModelRef>;

export function modelId(name: string, version: string): string {
  return `${name}@${version}`;
}

export const ADAPTERS = ['yolo', 'db-text', 'classification'] as const;
export const AdapterName = z.enum(ADAPTERS);
export type AdapterName = z.infer<typeof AdapterName>;

/**
 * Input spec. Every field is optional: the agent reads name, size and layout from the model and
 * the manifest overrides them (a model with dynamic height/width needs the manifest's size).
 */
export const InputSpec = z.object({
  name: z.string().max(128).optional(),
  width: z.int().min(1).max(8192).optional(),
  height: z.int().min(1).max(8192).optional(),
  layout: z.enum(['nchw', 'nhwc']).default('nchw'),
  colorOrder: z.enum(['rgb', 'bgr']).default('rgb'),
  resize: z.enum(['letterbox', 'stretch']).default('letterbox'),
  /** Grey value (0..255) the letterbox pads with. */
  padValue: z.int().min(0).max(255).default(114),
  /** Pixel value v (0..255) becomes ((v * scale) - mean[c]) / std[c]. */
  scale: z
    .number()
    .positive()
    .default(1 / 255),
  mean: z.tuple([z.number(), z.number(), z.number()]).default([0, 0, 0]),
  std: z.tuple([z.number().positive(), z.number().positive(), z.number().positive()]).default([1, 1, 1]),
});
export type InputSpec = z.infer<typeof InputSpec>;

export const Thresholds = z.object({
  /** Detections below this confidence are discarded. */
  confidence: z.number().min(0).max(1).default(0.25),
  /** IoU above which NMS suppresses the weaker box of the same class. */
  iou: z.number().min(0).max(1).default(0.45),
  /** Candidates kept (by score) before NMS, which is quadratic. */
  topK: z.int().min(1).max(100_000).default(1000),
  maxDetections: z.int().min(1).max(10_000).default(300),
});
export type Thresholds = z.infer<typeof Thresholds>;

export const YoloOptions = z.object({
  /** [1,N,5+C] (YOLOv5: box, objectness, classes) or [1,4+C,N] (YOLOv8/11); auto guesses by shape. */
  layout: z.enum(['auto', 'yolov5', 'yolov8']).default('auto'),
});

export const DbTextOptions = z.object({
  /** Probability above which a pixel is text. */
  binaryThreshold: z.number().min(0).max(1).default(0.3),
  /** Mean probability a region needs to be kept. */
  boxThreshold: z.number().min(0).max(1).default(0.6),
  /** Box growth ratio (DB's unclip). */
  unclipRatio: z.number().min(0).max(10).default(1.5),
  /** Smallest side, in map pixels, of a kept region. */
  minSize: z.number().min(0).default(3),
  maxCandidates: z.int().min(1).max(100_000).default(1000),
  /** Input sides are rounded to a multiple of this (DB nets need 32). */
  sizeMultiple: z.int().min(1).max(256).default(32),
  /** Longest input side when the model has dynamic size and the manifest names none. */
  maxSide: z.int().min(32).max(8192).default(960),
});

export const ClassificationOptions = z.object({
  topK: z.int().min(1).max(100).default(5),
  /** Apply softmax to the output (false when the model already outputs probabilities). */
  softmax: z.boolean().default(true),
});

export const ModelManifest = z.object({
  name: ModelName,
  version: SemVer,
  adapter: AdapterName,
  description: z.string().max(1024).optional(),
  input: InputSpec.prefault({}),
  labels: z.array(z.string().min(1).max(64)).max(10_000).default([]),
  thresholds: Thresholds.prefault({}),
  yolo: YoloOptions.prefault({}),
  dbText: DbTextOptions.prefault({}),
  classification: ClassificationOptions.prefault({}),
  /** Hardware profiles the model may run on (orin-nano, rpi5, ...); empty means any. */
  compatibleHardware: z.array(z.string().max(64)).max(64).default([]),
  /** Execution providers the model is known to work with; empty means any. */
  providers: z.array(z.string().max(32)).max(8).default([]),
  minAgentVersion: SemVer.optional(),
  /** p95 inference latency (ms) above which the post-switch health check fails. */
  latencyBudgetMs: z.number().positive().optional(),
});
export type ModelManifest = z.infer<typeof ModelManifest>;
export type ModelManifestInput = z.input<typeof ModelManifest>;

export const MODEL_RELEASE_SCHEMA = 'edgeloop.model-release/v1';

export const KeyId = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9._-]+$/, 'key id may hold only A-Z a-z 0-9 . _ -');

/** The signed statement about one model file. */
export const ModelRelease = z.object({
  schema: z.literal(MODEL_RELEASE_SCHEMA),
  name: ModelName,
  version: SemVer,
  sha256: Sha256Hex,
  sizeBytes: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
  /** Monotonic per model name; an agent refuses a release below the highest it has installed. */
  releaseCounter: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  issuedAt: z.int().min(0),
  expiresAt: z.int().min(0),
  keyId: KeyId,
  /** Hardware profiles the release may be installed on; empty means any. */
  hardware: z.array(z.string().max(64)).max(64).default([]),
  manifest: ModelManifest,
});
export type ModelRelease = z.infer<typeof ModelRelease>;

export const SignedModelRelease = z.object({
  release: ModelRelease,
  /** Base64 Ed25519 signature over canonicalBytes(release). */
  signature: z.string().min(1).max(512),
});
export type SignedModelRelease = z.infer<typeof SignedModelRelease>;

/** What desired state asks a device to run. */
export const ModelAssignment = z.object({
  rolloutId: z.string().max(64).nullable(),
  model: ModelRef,
  /** `shadow` runs the model beside the active one and reports agreement; `active` switches to it. */
  mode: z.enum(['active', 'shadow']),
  /** Where to download the bytes (absolute URL or a path on the control plane); supports Range. */
  url: z.string().max(2048),
  signed: SignedModelRelease,
});
export type ModelAssignment = z.infer<typeof ModelAssignment>;
export type ModelReleaseInput = z.input<typeof ModelRelease>;
