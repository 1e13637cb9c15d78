import { z } from 'zod';

/* Model manifests, signed releases and model assignments.
 *
 *   ModelManifest        how to run a model: adapter, input spec, labels, thresholds (not signed alone)
 *   ModelRelease         what is signed: bytes (sha256, size), version, release counter, expiry,
 *                        compatible hardware, key id, the manifest, and optionally its lineage
 *   SignedModelRelease   a release plus its Ed25519 signature over canonicalBytes(release)
 *   ModelAssignment      what desired state tells a device to run
 */

export const ModelName = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9][a-z0-9._-]*$/, 'model name may hold only lowercase letters, digits, . _ -')
  .describe('Model name: lowercase letters, digits, . _ -');

/** Semantic version, MAJOR.MINOR.PATCH with optional pre-release and build metadata. */
export const SemVer = z
  .string()
  .max(64)
  .regex(
    /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/,
    'version must be semver (1.2.3)',
  )
  .describe('Semantic version MAJOR.MINOR.PATCH, optional pre-release and build metadata');

export const Sha256Hex = z
  .string()
  .regex(/^[0-9a-f]{64}$/, 'sha256 must be 64 lowercase hex digits')
  .describe('SHA-256 of the model bytes, 64 lowercase hex digits');

/** A reference to one model version, as devices report it. */
export const ModelRef = z
  .object({
    /** `name@version` */
    id: z.string().max(128).describe('`name@version`'),
    name: ModelName,
    version: SemVer,
    sha256: Sha256Hex,
  })
  .describe('A reference to one model version');
export type ModelRef = z.infer<typeof ModelRef>;

export function modelId(name: string, version: string): string {
  return `${name}@${version}`;
}

export const ADAPTERS = ['yolo', 'db-text', 'classification'] as const;
export const AdapterName = z
  .enum(ADAPTERS)
  .describe('How model outputs are decoded: yolo (boxes), db-text (text regions), classification');
export type AdapterName = z.infer<typeof AdapterName>;

/**
 * Input spec. Every field is optional: the agent reads name, size and layout from the model and
 * the manifest overrides them (a model with dynamic height/width needs the manifest's size).
 */
export const InputSpec = z
  .object({
    name: z.string().max(128).optional().describe("Input tensor name (default: the model's first input)"),
    width: z.int().min(1).max(8192).optional().describe("Input width in pixels (needed when the model's is dynamic)"),
    height: z.int().min(1).max(8192).optional().describe("Input height in pixels (needed when the model's is dynamic)"),
    layout: z.enum(['nchw', 'nhwc']).default('nchw').describe('Tensor layout'),
    colorOrder: z.enum(['rgb', 'bgr']).default('rgb').describe('Channel order the model expects'),
    resize: z
      .enum(['letterbox', 'stretch'])
      .default('letterbox')
      .describe('letterbox keeps the aspect ratio and pads; stretch does not'),
    /** Grey value (0..255) the letterbox pads with. */
    padValue: z.int().min(0).max(255).default(114).describe('Grey value (0..255) the letterbox pads with'),
    /** Pixel value v (0..255) becomes ((v * scale) - mean[c]) / std[c]. */
    scale: z
      .number()
      .positive()
      .default(1 / 255)
      .describe('Pixel value v (0..255) becomes ((v * scale) - mean[c]) / std[c]'),
    mean: z
      .tuple([z.number(), z.number(), z.number()])
      .default([0, 0, 0])
      .describe('Per-channel mean subtracted after scaling'),
    std: z
      .tuple([z.number().positive(), z.number().positive(), z.number().positive()])
      .default([1, 1, 1])
      .describe('Per-channel divisor after the mean'),
  })
  .describe('Input preprocessing; every field overrides what the model declares');
export type InputSpec = z.infer<typeof InputSpec>;

export const Thresholds = z
  .object({
    /** Detections below this confidence are discarded. */
    confidence: z.number().min(0).max(1).default(0.25).describe('Detections below this confidence are discarded'),
    /** IoU above which NMS suppresses the weaker box of the same class. */
    iou: z
      .number()
      .min(0)
      .max(1)
      .default(0.45)
      .describe('IoU above which NMS suppresses the weaker box of the same class'),
    /** Candidates kept (by score) before NMS, which is quadratic. */
    topK: z.int().min(1).max(100_000).default(1000).describe('Candidates kept (by score) before NMS'),
    maxDetections: z.int().min(1).max(10_000).default(300).describe('Most detections kept per frame'),
  })
  .describe('Detection thresholds');
export type Thresholds = z.infer<typeof Thresholds>;

export const YoloOptions = z
  .object({
    /** [1,N,5+C] (YOLOv5: box, objectness, classes) or [1,4+C,N] (YOLOv8/11); auto guesses by shape. */
    layout: z
      .enum(['auto', 'yolov5', 'yolov8'])
      .default('auto')
      .describe('Output layout: yolov5 [1,N,5+C], yolov8 [1,4+C,N]; auto guesses by shape'),
  })
  .describe('Options of the yolo adapter');

export const DbTextOptions = z
  .object({
    /** Probability above which a pixel is text. */
    binaryThreshold: z.number().min(0).max(1).default(0.3).describe('Probability above which a pixel is text'),
    /** Mean probability a region needs to be kept. */
    boxThreshold: z.number().min(0).max(1).default(0.6).describe('Mean probability a region needs to be kept'),
    /** Box growth ratio (DB's unclip). */
    unclipRatio: z.number().min(0).max(10).default(1.5).describe('Box growth ratio (DB unclip)'),
    /** Smallest side, in map pixels, of a kept region. */
    minSize: z.number().min(0).default(3).describe('Smallest side, in map pixels, of a kept region'),
    maxCandidates: z.int().min(1).max(100_000).default(1000).describe('Most regions considered'),
    /** Input sides are rounded to a multiple of this (DB nets need 32). */
    sizeMultiple: z.int().min(1).max(256).default(32).describe('Input sides are rounded to a multiple of this'),
    /** Longest input side when the model has dynamic size and the manifest names none. */
    maxSide: z
      .int()
      .min(32)
      .max(8192)
      .default(960)
      .describe('Longest input side when the model has dynamic size and the manifest names none'),
  })
  .describe('Options of the db-text (text detection) adapter');

export const ClassificationOptions = z
  .object({
    topK: z.int().min(1).max(100).default(5).describe('Classes reported per frame'),
    /** Apply softmax to the output (false when the model already outputs probabilities). */
    softmax: z
      .boolean()
      .default(true)
      .describe('Apply softmax to the output (false when it already holds probabilities)'),
  })
  .describe('Options of the classification adapter');

export const ModelManifest = z
  .object({
    name: ModelName,
    version: SemVer,
    adapter: AdapterName,
    description: z.string().max(1024).optional().describe('What the model does, in words'),
    input: InputSpec.prefault({}).describe('Input preprocessing'),
    labels: z.array(z.string().min(1).max(64)).max(10_000).default([]).describe('Class labels by output index'),
    thresholds: Thresholds.prefault({}).describe('Detection thresholds'),
    yolo: YoloOptions.prefault({}).describe('Options of the yolo adapter'),
    dbText: DbTextOptions.prefault({}).describe('Options of the db-text adapter'),
    classification: ClassificationOptions.prefault({}).describe('Options of the classification adapter'),
    /** Hardware profiles the model may run on (orin-nano, rpi5, ...); empty means any. */
    compatibleHardware: z
      .array(z.string().max(64))
      .max(64)
      .default([])
      .describe('Hardware profiles the model may run on (orin-nano, rpi5, ...); empty means any'),
    /** Execution providers the model is known to work with; empty means any. */
    providers: z
      .array(z.string().max(32))
      .max(8)
      .default([])
      .describe('Execution providers the model is known to work with; empty means any'),
    minAgentVersion: SemVer.optional().describe('Oldest agent version that can run the model'),
    /** p95 inference latency (ms) above which the post-switch health check fails. */
    latencyBudgetMs: z
      .number()
      .positive()
      .optional()
      .describe('p95 inference latency (ms) above which the post-switch health check fails'),
  })
  .describe('How to run a model: adapter, input, labels, thresholds, compatibility');
export type ModelManifest = z.infer<typeof ModelManifest>;
export type ModelManifestInput = z.input<typeof ModelManifest>;

export const MODEL_RELEASE_SCHEMA = 'edgeloop.model-release/v1';

export const KeyId = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9._-]+$/, 'key id may hold only A-Z a-z 0-9 . _ -')
  .describe('Id of a signing key: A-Z a-z 0-9 . _ -');

/** A dataset version id as the control plane names it: `name@version`. */
export const DATASET_VERSION_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}@[1-9][0-9]{0,8}$/;

/** A retraining run id: letters, digits, . _ : - (what the control plane's webhook names `runId`). */
export const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/**
 * Where a model came from, inside the signed release (so a changed lineage breaks the signature).
 * Every member is optional; a release without `lineage` (every release signed before it existed)
 * stays valid and verifies unchanged. The control plane checks each name at upload and flags, but
 * accepts, one it does not know.
 */
export const ReleaseLineage = z
  .object({
    datasetVersion: z
      .string()
      .regex(DATASET_VERSION_ID_PATTERN, 'datasetVersion must be a dataset version id name@version (hard-b@3)')
      .optional()
      .describe('The dataset version (name@version) the model was trained on'),
    parentModel: Sha256Hex.optional().describe('SHA-256 of the model it was trained from (fine-tuned or retrained)'),
    runId: z
      .string()
      .regex(RUN_ID_PATTERN, 'runId may hold only letters, digits, . _ : - (at most 128)')
      .optional()
      .describe('The retraining run (its webhook runId) that asked for this model'),
    trainer: z
      .string()
      .min(1)
      .max(256)
      // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
      .regex(/^[^\u0000-\u001f\u007f]*$/, 'trainer may not hold control characters')
      .optional()
      .describe('Free text naming the trainer (tool, version, host), at most 256 characters'),
  })
  .describe('Where the model came from: dataset version, parent model, retraining run, trainer');
export type ReleaseLineage = z.infer<typeof ReleaseLineage>;

/**
 * What the registry flags (and accepts) when a release's lineage names something it cannot confirm:
 *
 *   unknown_dataset       no dataset version has that id
 *   unknown_parent        no registered model holds the parent sha256
 *   unknown_run           no retraining run has that id
 *   run_dataset_mismatch  the run froze another dataset version than the one named
 *   run_model_mismatch    the run was fired for another model name
 *   run_already_linked    the run already names another model as its result
 */
export const LINEAGE_FLAGS = [
  'unknown_dataset',
  'unknown_parent',
  'unknown_run',
  'run_dataset_mismatch',
  'run_model_mismatch',
  'run_already_linked',
] as const;
export const LineageFlag = z
  .enum(LINEAGE_FLAGS)
  .describe(
    'unknown_dataset, unknown_parent, unknown_run: the lineage names something the control plane does not hold; ' +
      'run_dataset_mismatch: the run froze another dataset version; run_model_mismatch: the run was for another ' +
      'model name; run_already_linked: the run names another model as its result',
  );
export type LineageFlag = z.infer<typeof LineageFlag>;

/** The signed statement about one model file. */
export const ModelRelease = z
  .object({
    schema: z.literal(MODEL_RELEASE_SCHEMA).describe('Format identifier of the release document'),
    name: ModelName,
    version: SemVer,
    sha256: Sha256Hex,
    sizeBytes: z.int().min(1).max(Number.MAX_SAFE_INTEGER).describe('Size of the model file in bytes'),
    /** Monotonic per model name; an agent refuses a release below the highest it has installed. */
    releaseCounter: z
      .int()
      .min(0)
      .max(Number.MAX_SAFE_INTEGER)
      .describe('Monotonic per model name; an agent refuses a release below the highest it has installed'),
    issuedAt: z.int().min(0).describe('When the release was signed (ms since the epoch)'),
    expiresAt: z.int().min(0).describe('After this instant (ms since the epoch) agents refuse the release'),
    keyId: KeyId.describe('Which trusted public key verifies the signature'),
    /** Hardware profiles the release may be installed on; empty means any. */
    hardware: z
      .array(z.string().max(64))
      .max(64)
      .default([])
      .describe('Hardware profiles the release may be installed on; empty means any'),
    manifest: ModelManifest.describe('How to run the model'),
    lineage: ReleaseLineage.optional().describe(
      'Where the model came from (signed with the rest); absent in releases that name none',
    ),
  })
  .describe('The signed statement about one model file');
export type ModelRelease = z.infer<typeof ModelRelease>;

export const SignedModelRelease = z
  .object({
    release: ModelRelease.describe('The signed statement'),
    /** Base64 Ed25519 signature over canonicalBytes(release). */
    signature: z.string().min(1).max(512).describe('Base64 Ed25519 signature over the canonical JSON bytes of release'),
  })
  .describe('A release with its Ed25519 signature');
export type SignedModelRelease = z.infer<typeof SignedModelRelease>;

/** What desired state asks a device to run. */
export const ModelAssignment = z
  .object({
    rolloutId: z
      .string()
      .max(64)
      .nullable()
      .describe('The rollout that assigned the model; null for a direct assignment'),
    model: ModelRef.describe('The model to run'),
    /** `shadow` runs the model beside the active one and reports agreement; `active` switches to it. */
    mode: z
      .enum(['active', 'shadow'])
      .describe('shadow runs the model beside the active one and reports agreement; active switches to it'),
    /** Where to download the bytes (absolute URL or a path on the control plane); supports Range. */
    url: z
      .string()
      .max(2048)
      .describe('Where to download the bytes (absolute URL or a control-plane path); supports Range'),
    signed: SignedModelRelease.describe('The signed release the device verifies before switching'),
    /**
     * Until when (epoch ms) a device may act on this assignment. The control plane stamps it when it
     * writes desired state and refreshes it well before it lapses, so a device that receives an
     * expired one (a stale retained message, a replay) ignores it and reports `assignment-expired`.
     */
    expiresAt: z
      .int()
      .min(0)
      .max(8.64e15)
      .describe(
        'Until when (ms since the epoch) a device may act on it; the control plane refreshes it before it ' +
          'lapses, and a device ignores an expired one (reported as assignment-expired); absent in desired ' +
          'states stored before it existed (no expiry)',
      )
      .optional(),
  })
  .describe('What desired state asks a device to run');
export type ModelAssignment = z.infer<typeof ModelAssignment>;
export type ModelReleaseInput = z.input<typeof ModelRelease>;
