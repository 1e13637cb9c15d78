import { z } from 'zod';
import { labelMap } from './labels.ts';

/*
 * Hard samples: the policy a device captures under (carried in desired state, so sampling changes
 * fleet-wide without a redeploy), the metadata every sample carries, the resumable upload protocol
 * and the device's sample telemetry. Isomorphic: the agent, the control plane, the simulator and the
 * console all read these.
 */

const EpochMs = z.int().min(0).describe('Milliseconds since the Unix epoch');
const Sha256 = z
  .string()
  .regex(/^[0-9a-f]{64}$/)
  .describe('Lower-case hex SHA-256');
const Tags = z.array(z.string().min(1).max(64)).max(16).default([]).describe('Tags copied onto every sample');
const Probability = z
  .number()
  .min(0)
  .max(1)
  .default(1)
  .describe('Chance that a frame this strategy selects is kept (after its own test)');

/* ------------------------------------------ strategies ---------------------------------------- */

export const SAMPLE_STRATEGY_KINDS = [
  'random',
  'near-threshold',
  'shadow-disagreement',
  'camera-event',
  'class-rare',
  'on-demand',
] as const;
export const SampleStrategyKind = z.enum(SAMPLE_STRATEGY_KINDS).describe('How a strategy picks frames');
export type SampleStrategyKind = z.infer<typeof SampleStrategyKind>;

export const SampleStrategy = z
  .discriminatedUnion('kind', [
    z
      .object({
        kind: z.literal('random').describe('Strategy kind'),
        share: z.number().min(0).max(1).describe('Share of frames picked at random'),
        probability: Probability,
        tags: Tags,
      })
      .describe('A random share of frames'),
    z
      .object({
        kind: z.literal('near-threshold').describe('Strategy kind'),
        threshold: z.number().min(0).max(1).describe('The score threshold the model is used at'),
        epsilon: z.number().min(0).max(1).default(0.1).describe('A detection within threshold +- epsilon is unsure'),
        minBoxes: z.int().min(1).default(1).describe('Unsure detections a frame needs'),
        classes: z.array(z.string().max(64)).max(256).optional().describe('Only these labels count; all when absent'),
        probability: Probability,
        tags: Tags,
      })
      .describe('Frames where the model was unsure: detections whose score is close to the threshold'),
    z
      .object({
        kind: z.literal('shadow-disagreement').describe('Strategy kind'),
        minUnmatched: z.int().min(1).default(1).describe('Boxes one model has and the other does not'),
        iouBelow: z.number().min(0).max(1).default(0.5).describe('A matched pair below this IoU counts as unmatched'),
        probability: Probability,
        tags: Tags,
      })
      .describe('Frames where the shadow candidate and the active model disagree'),
    z
      .object({
        kind: z.literal('camera-event').describe('Strategy kind'),
        events: z
          .array(z.enum(['sceneChange', 'blurred', 'black', 'frozen']))
          .min(1)
          .describe('Camera-health events that select the frame'),
        probability: Probability,
        tags: Tags,
      })
      .describe('Frames where the camera-health detectors fired'),
    z
      .object({
        kind: z.literal('class-rare').describe('Strategy kind'),
        classes: z.array(z.string().min(1).max(64)).min(1).max(256).describe('Labels worth a sample when seen'),
        minScore: z.number().min(0).max(1).default(0).describe('Only detections scoring at least this'),
        probability: Probability,
        tags: Tags,
      })
      .describe('Frames where a listed (rare) class was seen'),
    z
      .object({
        kind: z.literal('on-demand').describe('Strategy kind'),
        probability: Probability,
        tags: Tags,
      })
      .describe('Frames asked for with the capture command (the next N frames)'),
  ])
  .describe('One way of selecting hard samples');
export type SampleStrategy = z.infer<typeof SampleStrategy>;

/* -------------------------------------------- limits ------------------------------------------ */

export const SampleLimits = z
  .object({
    perMinute: z.int().min(0).optional().describe('Samples per rolling minute'),
    perHour: z.int().min(0).optional().describe('Samples per rolling hour'),
    perDay: z.int().min(0).optional().describe('Samples per UTC day'),
    bytesPerDay: z.int().min(0).optional().describe('Encoded image bytes per UTC day'),
  })
  .describe('Caps on captures; an absent cap is no cap. Counters persist across agent restarts');
export type SampleLimits = z.infer<typeof SampleLimits>;

export const RedactionRect = z
  .object({
    x: z.number().min(0).max(1).describe('Left edge, share of the image width'),
    y: z.number().min(0).max(1).describe('Top edge, share of the image height'),
    w: z.number().min(0).max(1).describe('Width, share of the image width'),
    h: z.number().min(0).max(1).describe('Height, share of the image height'),
  })
  .describe('A rectangle in normalised image coordinates');
export type RedactionRect = z.infer<typeof RedactionRect>;

export const SampleRedaction = z
  .object({
    blackout: z.array(RedactionRect).max(64).default([]).describe('Rectangles painted black before encoding'),
    blurClasses: z
      .array(z.string().min(1).max(64))
      .max(256)
      .default([])
      .describe('Labels whose detected boxes are blurred before encoding'),
  })
  .describe('What is removed from an image before it leaves the device');
export type SampleRedaction = z.infer<typeof SampleRedaction>;

/* -------------------------------------------- policy ------------------------------------------ */

export const SamplePolicy = z
  .object({
    enabled: z.boolean().default(true).describe('False stops capture; the spool still drains'),
    strategies: z
      .array(SampleStrategy)
      .max(32)
      .default([])
      .describe('Strategies, tried in order; the first match wins'),
    limits: SampleLimits.prefault({}).describe('Caps per device, over all strategies'),
    strategyLimits: z
      .partialRecord(SampleStrategyKind, SampleLimits)
      .default({})
      .describe('Caps per device and strategy, on top of `limits`'),
    redaction: SampleRedaction.prefault({}),
    jpegQuality: z.int().min(1).max(100).default(85).describe('JPEG quality of the encoded sample'),
    maxWidth: z.int().min(16).max(8192).optional().describe('Downscale wider frames to this width before encoding'),
    spoolMaxBytes: z
      .int()
      .min(64 * 1024)
      .default(64 * 1024 * 1024)
      .describe('Bytes the on-disk spool may hold; the oldest samples are dropped (and counted) past it'),
  })
  .describe('Hard-sample capture policy, carried in desired state');
export type SamplePolicy = z.infer<typeof SamplePolicy>;
export type SamplePolicyInput = z.input<typeof SamplePolicy>;

/* ------------------------------------- policy by label selector ------------------------------- */

/** Label pairs a device must all carry; `{}` selects the whole fleet. */
export const SamplePolicySelector = z
  .strictObject({
    labels: labelMap(z.string(), 16)
      .default({})
      .describe('Label pairs a device must all carry; empty selects the whole fleet'),
  })
  .describe('Which devices a sample policy is for');
export type SamplePolicySelector = z.infer<typeof SamplePolicySelector>;

/** PUT /api/v1/sample-policy: set (or, with `policy: null`, remove) the policy of a label selector. */
export const SetSamplePolicyRequest = z
  .strictObject({
    selector: SamplePolicySelector.prefault({}),
    policy: SamplePolicy.nullable().describe(
      'The policy for the selected devices; null removes this selector policy (devices fall back to a less specific one, or none)',
    ),
  })
  .describe('Sets the sample policy of every device a label selector matches, now and enrolled later');
export type SetSamplePolicyRequest = z.infer<typeof SetSamplePolicyRequest>;

const SelectorView = z
  .object({ labels: z.record(z.string(), z.string()).describe('Label pairs a device must all carry; empty: all') })
  .describe('Which devices');

export const SamplePolicyView = z
  .object({
    selector: SelectorView,
    policy: SamplePolicy.describe('The stored policy'),
    updatedAt: z.int().min(0).describe('When it was last set (epoch ms)'),
    updatedBy: z.string().nullable().describe('Id of the API token that set it'),
  })
  .describe('A sample policy stored for a label selector');
export type SamplePolicyView = z.infer<typeof SamplePolicyView>;

export const SamplePolicyList = z
  .object({
    items: z
      .array(SamplePolicyView)
      .describe('Stored selector policies; a device follows the most specific one it matches (most labels)'),
  })
  .describe('Every stored sample policy by selector');
export type SamplePolicyList = z.infer<typeof SamplePolicyList>;

export const SetSamplePolicyResponse = z
  .object({
    selector: SelectorView,
    policy: SamplePolicy.nullable().describe('The stored policy, or null when it was removed'),
    devices: z.int().min(0).describe('Devices the selector matched now'),
    changed: z.int().min(0).describe('Of those, devices whose desired state changed (and was re-published)'),
  })
  .describe('What setting a selector policy did');
export type SetSamplePolicyResponse = z.infer<typeof SetSamplePolicyResponse>;

/* ------------------------------------------- metadata ----------------------------------------- */

export const SamplePrediction = z
  .object({
    box: z
      .tuple([z.number(), z.number(), z.number(), z.number()])
      .describe('x1, y1, x2, y2 in pixels of the stored image'),
    score: z.number().min(0).max(1).describe('Confidence'),
    classId: z.int().min(0).describe('Class index of the model'),
    label: z.string().max(64).describe('Class label'),
  })
  .describe('One detection of the model on the frame: a pre-annotation');
export type SamplePrediction = z.infer<typeof SamplePrediction>;

export const SampleMetadata = z
  .object({
    deviceId: z.string().min(1).max(128).describe('The capturing device'),
    site: z.string().max(128).nullable().describe('The device site label, when it has one'),
    labels: z.record(z.string(), z.string()).default({}).describe('The device labels at capture'),
    model: z
      .object({
        id: z.string().max(128).describe('name@version of the active model'),
        sha256: Sha256,
      })
      .nullable()
      .describe('The model whose predictions are attached'),
    strategy: SampleStrategyKind,
    reason: z.string().max(512).describe('Why the frame was selected, in words'),
    tags: z.array(z.string().max(64)).max(16).default([]).describe('The strategy tags'),
    predictions: z.array(SamplePrediction).max(1000).describe('The model detections, as pre-annotations'),
    frameTs: EpochMs.describe('When the frame was captured (device clock)'),
    bootId: z.string().min(1).max(64).describe('The agent boot that captured it'),
    seq: z.int().min(0).describe('Capture sequence number within the boot'),
    image: z
      .object({
        sha256: Sha256.describe('SHA-256 of the encoded image bytes: the sample identity'),
        bytes: z.int().min(1).describe('Size of the encoded image'),
        width: z.int().min(1).max(16_384).describe('Image width in pixels'),
        height: z.int().min(1).max(16_384).describe('Image height in pixels'),
        contentType: z.literal('image/jpeg').default('image/jpeg').describe('Media type of the bytes'),
      })
      .describe('The encoded (redacted) image'),
  })
  .describe('What a device says about one hard sample; sent with its bytes as one upload');
export type SampleMetadata = z.infer<typeof SampleMetadata>;
export type SampleMetadataInput = z.input<typeof SampleMetadata>;

/* ---------------------------------------- upload protocol -------------------------------------- */

/*
 * Resumable, idempotent upload with the device credential (HTTP Basic, as model downloads):
 *   POST  /api/v1/samples/uploads          body SampleMetadata (JSON)
 *         -> 201 SampleUploadState {uploadId, offset: 0}           new upload
 *         -> 200 SampleUploadState {uploadId, offset, complete}    same device + sha256 already under
 *                                                                 way (resume) or stored (done)
 *   HEAD  /api/v1/samples/uploads/:id      -> 204, header Upload-Offset: bytes acknowledged
 *   PATCH /api/v1/samples/uploads/:id      headers Upload-Offset: N, Content-Type:
 *                                          application/offset+octet-stream; body: bytes from N
 *         -> 204, header Upload-Offset      chunk appended (durably) and acknowledged
 *         -> 201 SampleUploadState {complete: true, sampleId}   the last byte arrived and sha256 held
 *         -> 409 offset_mismatch (with Upload-Offset), 413 too_large, 422 hash_mismatch (the upload
 *            is discarded: nothing partial is stored), 403 forbidden (another device's upload)
 * One request, for a sample that fits in one (not resumable; same checks and answers):
 *   POST  /api/v1/samples                  multipart/form-data: part `metadata` (SampleMetadata JSON),
 *                                          then part `image` (the JPEG bytes)
 *         -> 201 SampleUploadState {complete: true, sampleId}      stored
 *         -> 200 the same, when this device had stored this image already
 *         -> 400 (bad metadata, or the image broke off: nothing stored), 403, 413, 422 as above
 */
export const SAMPLE_UPLOAD_OFFSET_HEADER = 'upload-offset';
export const SAMPLE_UPLOAD_CONTENT_TYPE = 'application/offset+octet-stream';

export const SampleUploadState = z
  .object({
    uploadId: z.string().min(1).max(128).describe('Opaque id of this upload'),
    offset: z.int().min(0).describe('Bytes the control plane has acknowledged'),
    complete: z.boolean().describe('True once the sample is stored'),
    sampleId: z.string().nullable().describe('The stored sample id, once complete'),
  })
  .describe('Where an upload stands');
export type SampleUploadState = z.infer<typeof SampleUploadState>;

/* ------------------------------------------ read API ------------------------------------------- */

export const SampleView = z
  .object({
    id: z.string().describe('Sample id'),
    deviceId: z.string().describe('The capturing device (kept after the device is deleted)'),
    site: z.string().nullable().describe('The device site label at capture'),
    labels: z.record(z.string(), z.string()).describe('The device labels at capture'),
    model: z
      .object({
        id: z.string().describe('name@version of the model'),
        sha256: Sha256,
      })
      .nullable()
      .describe('The model whose predictions are attached'),
    strategy: SampleStrategyKind,
    reason: z.string().describe('Why the frame was selected'),
    tags: z.array(z.string()).describe('The strategy tags'),
    predictions: z.array(SamplePrediction).describe('The model detections, as pre-annotations'),
    frameTs: EpochMs.describe('When the frame was captured (device clock)'),
    bootId: z.string().describe('The agent boot that captured it'),
    seq: z.int().describe('Capture sequence number within the boot'),
    image: z
      .object({
        sha256: Sha256.describe('SHA-256 of the stored bytes (the ETag of the image)'),
        bytes: z.int().describe('Size of the stored image'),
        width: z.int().describe('Image width in pixels'),
        height: z.int().describe('Image height in pixels'),
        contentType: z.literal('image/jpeg').describe('Media type of the bytes'),
      })
      .describe('The stored (redacted) image'),
    receivedAt: EpochMs.describe('When the control plane stored the sample'),
  })
  .describe('One stored hard sample with its provenance');
export type SampleView = z.infer<typeof SampleView>;

export const SampleList = z
  .object({
    items: z.array(SampleView).describe('Samples, newest first'),
    nextCursor: z.string().nullable().describe('Pass as cursor for the next page; null on the last page'),
  })
  .describe('A page of samples');
export type SampleList = z.infer<typeof SampleList>;

export const SampleListQuery = z
  .object({
    deviceId: z.string().min(1).max(128).optional().describe('Only samples of this device'),
    site: z.string().min(1).max(128).optional().describe('Only samples of this site'),
    label: z
      .array(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}:.{0,128}$/, 'label filters look like key:value'))
      .optional()
      .describe('key:value of the device labels at capture, repeatable; every one must match'),
    modelId: z
      .string()
      .min(1)
      .max(128)
      .optional()
      .describe('Only samples with predictions of this model (name@version)'),
    modelSha256: Sha256.optional().describe('Only samples with predictions of the model with this sha256'),
    strategy: SampleStrategyKind.optional().describe('Only samples this strategy selected'),
    from: z.coerce.number().int().min(0).optional().describe('Only frames captured at or after this time (epoch ms)'),
    to: z.coerce.number().int().min(0).optional().describe('Only frames captured at or before this time (epoch ms)'),
    hasLabels: z
      .enum(['true', 'false'])
      .transform((value) => value === 'true')
      .optional()
      .describe('true: only samples with human labels in some dataset version; false: only those without'),
    limit: z.coerce.number().int().min(1).max(500).default(100).describe('Page size'),
    cursor: z.string().max(256).optional().describe('Opaque, from the previous page nextCursor'),
  })
  .describe('Filters of GET /api/v1/samples');
export type SampleListQuery = z.infer<typeof SampleListQuery>;

export const SamplePurgeResult = z
  .object({
    deviceId: z.string().describe('The device whose samples were purged'),
    purged: z.int().min(0).describe('Samples deleted'),
    bytes: z.int().min(0).describe('Image bytes those samples held'),
    removedFromDatasets: z.int().min(0).describe('Dataset memberships removed with them'),
  })
  .describe('What an explicit purge of a device samples removed');
export type SamplePurgeResult = z.infer<typeof SamplePurgeResult>;

/* ---------------------------------------- capture command -------------------------------------- */

/** Args of the device command `capture`: the next `frames` frames become on-demand samples. */
export const SampleCaptureArgs = z
  .object({
    frames: z.int().min(1).max(1000).default(1).describe('How many of the next frames to capture'),
  })
  .describe('Args of the capture command (on-demand hard samples)');
export type SampleCaptureArgs = z.infer<typeof SampleCaptureArgs>;

/* ---------------------------------------- device telemetry ------------------------------------- */

export const SAMPLE_DROP_CAUSES = [
  'budget',
  'rate',
  'queue-full',
  'encode-failed',
  'spool-full',
  'rejected',
  'policy-disabled',
] as const;

export const SampleTelemetry = z
  .object({
    captured: z.int().min(0).describe('Samples selected and encoded since boot'),
    dropped: z
      .partialRecord(z.enum(SAMPLE_DROP_CAUSES), z.int().min(0))
      .describe('Samples selected but not kept, by cause, since boot'),
    uploaded: z.int().min(0).describe('Samples the control plane stored, since boot'),
    uploadedBytes: z.int().min(0).describe('Image bytes the control plane acknowledged, since boot'),
    spooled: z.int().min(0).describe('Samples waiting in the spool'),
    spooledBytes: z.int().min(0).describe('Bytes waiting in the spool'),
    budgetLeft: z
      .object({
        today: z.int().nullable().describe('Samples left today; null without a daily cap'),
        bytesToday: z.int().nullable().describe('Bytes left today; null without a byte cap'),
      })
      .describe('What the daily caps still allow'),
    policyError: z.string().max(1024).nullable().describe('Why the last policy in desired state was refused'),
  })
  .describe('Hard-sample capture on the device');
export type SampleTelemetry = z.infer<typeof SampleTelemetry>;
