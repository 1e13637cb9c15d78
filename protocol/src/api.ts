import { z } from 'zod';
import { DEVICE_ID_PATTERN } from './device-id.ts';
import { ValidationResult, ValidationSpec } from './evaluations.ts';
import { JsonObject } from './json-value.ts';
import { labelMap } from './labels.ts';
import { CommandName, Desired, EpochMs, Reply, Reported, Telemetry } from './messages.ts';
import { LineageFlag, ModelManifest, ModelRef, ReleaseLineage, SignedModelRelease } from './models.ts';

/* Shapes of the control plane's HTTP API that clients (CLI, simulator, dashboard) share. */

export { LABEL_KEY_PATTERN, labelKeyProblem, labelValueProblem } from './labels.ts';

/** The cursor of the next page in a list response; null on the last page. */
const NextCursor = z.string().nullable().describe('Pass as ?cursor= for the next page; null on the last page');

export const Labels = labelMap(z.string().max(128), 32).describe(
  'Labels: at most 32 key=value pairs; keys lowercase letters, digits, . _ - (at most 63, not a prototype name), values at most 128 characters without control characters',
);
export type Labels = z.infer<typeof Labels>;

export const DeviceStatus = z
  .enum(['online', 'offline', 'unknown'])
  .describe('Connection status: unknown until the device first connects');
export type DeviceStatus = z.infer<typeof DeviceStatus>;

export const HealthState = z
  .enum(['healthy', 'degraded', 'offline', 'unknown'])
  .describe('Health from status and telemetry; degraded carries its reasons');
export type HealthState = z.infer<typeof HealthState>;

export const EnrollDeviceRequest = z
  .object({
    /** Checked again with checkDeviceId: the pattern here documents it for JSON Schema readers. */
    id: z
      .string()
      .regex(DEVICE_ID_PATTERN)
      .describe('Device id: lowercase letters, digits, - and _, used as MQTT client id and username'),
    labels: Labels.default({}).describe('Labels to set at enrollment'),
    auth: z
      .enum(['secret', 'cert'])
      .default('secret')
      .describe(
        'secret: MQTT with the password; cert: MQTT over TLS with a certificate signed by the fleet CA (CN = id), returned once; the password then serves HTTP only',
      ),
  })
  .describe('Enroll a device: its id, labels and how it authenticates on MQTT');
export type EnrollDeviceRequest = z.infer<typeof EnrollDeviceRequest>;

export const PatchDeviceRequest = z
  .object({
    /** Labels to set; a null value removes that label. */
    labels: labelMap(z.string().max(128).nullable(), 64).describe('Labels to set; a null value removes that label'),
  })
  .describe('Change labels of a device');
export type PatchDeviceRequest = z.infer<typeof PatchDeviceRequest>;

export const MqttCredentials = z
  .object({
    clientId: z.string().describe('MQTT client id (the device id)'),
    username: z.string().describe('MQTT username (the device id)'),
    /** Shown once, at enrollment; the control plane keeps only a keyed hash. */
    password: z.string().describe('Shown once, at enrollment; the control plane keeps only a keyed hash'),
  })
  .describe('MQTT credentials of a device');
export type MqttCredentials = z.infer<typeof MqttCredentials>;

export const DeviceView = z
  .object({
    id: z.string().describe('Device id'),
    labels: z.record(z.string(), z.string()).describe('Labels'),
    status: DeviceStatus,
    health: HealthState,
    healthReasons: z
      .array(z.string())
      .describe(
        'Why the device is degraded (telemetry-stale, high-temperature, ...); auth-failing and client-id-flapping (from the MQTT front) show in every state',
      ),
    lastSeen: EpochMs.nullable().describe('Last message received (ms since the epoch); null before any'),
    enrolledAt: EpochMs.describe('When the device was enrolled'),
    bootId: z.string().nullable().describe('bootId of the agent process last seen'),
    agentVersion: z.string().nullable().describe('Agent version last reported'),
  })
  .describe('A device as the API shows it');
export type DeviceView = z.infer<typeof DeviceView>;

export const DeviceCertificate = z
  .object({
    cert: z.string().describe('The device certificate (PEM), CN = device id, signed by the fleet CA'),
    /** Shown once, at enrollment; the control plane keeps only the certificate's fingerprint. */
    key: z.string().describe("The certificate's private key (PEM, PKCS#8); shown once, never stored"),
    ca: z.string().describe('The fleet CA certificate (PEM) the device trusts the MQTT TLS listener with'),
    fingerprint: z.string().describe('sha256 of the certificate (DER), lowercase hex'),
    notAfter: EpochMs.describe('When the certificate expires'),
  })
  .describe('An X.509 device identity (enrollment with auth: cert)');
export type DeviceCertificate = z.infer<typeof DeviceCertificate>;

export const EnrollDeviceResponse = z
  .object({
    device: DeviceView.describe('The enrolled device'),
    credentials: MqttCredentials.describe(
      'Its credentials (the password is shown only here; with auth cert it serves HTTP only, not MQTT)',
    ),
    certificate: DeviceCertificate.optional().describe(
      'With auth: cert, the device certificate and key (shown only here)',
    ),
    mqtt: z
      .object({
        host: z.string().describe('Broker host for devices'),
        port: z.int().describe('Broker port'),
        url: z.string().describe('Broker URL (mqtt://host:port; mqtts://host:port, the TLS listener, with auth cert)'),
      })
      .describe('Where the device connects'),
  })
  .describe('An enrolled device with its credentials');
export type EnrollDeviceResponse = z.infer<typeof EnrollDeviceResponse>;

export const DeviceList = z
  .object({ items: z.array(DeviceView).describe('Devices of this page'), nextCursor: NextCursor })
  .describe('A page of devices');
export type DeviceList = z.infer<typeof DeviceList>;

/** The vision pipelines of the online fleet, from each device's latest telemetry window. */
export const FleetPipelineSummary = z
  .object({
    /** Online devices whose latest telemetry carries pipeline metrics. */
    devicesReporting: z.int().describe('Online devices whose latest telemetry carries pipeline metrics'),
    /** Sum of the devices' fps. */
    fps: z.number().describe('Sum of the devices fps'),
    framesIn: z.int().describe('Frames delivered by the sources, summed'),
    framesProcessed: z.int().describe('Frames through inference, summed'),
    framesDropped: z.int().describe('Frames dropped by the queues, summed'),
    inferenceErrors: z.int().describe('Failed inference runs, summed'),
    /** Median and worst of the devices' p95 inference latency (ms). */
    inferenceP95Ms: z
      .object({
        median: z.number().nullable().describe('Median over the devices, ms; null without data'),
        max: z.number().nullable().describe('Worst device, ms; null without data'),
      })
      .describe('Median and worst of the devices p95 inference latency (ms)'),
    /** Detections per 1000 frames per class, frame-weighted over the devices. */
    detectionsPer1000: z
      .record(z.string(), z.number())
      .describe('Detections per 1000 frames per class, frame-weighted over the devices'),
    /** Devices by active execution provider and by model id. */
    providers: z.record(z.string(), z.int()).describe('Devices by active execution provider'),
    models: z.record(z.string(), z.int()).describe('Devices by model id'),
    cameraFaults: z
      .object({
        black: z.int().describe('Devices whose image is black'),
        frozen: z.int().describe('Devices whose stream is frozen'),
        blurred: z.int().describe('Devices whose image is blurred'),
      })
      .describe('Devices with each camera fault'),
  })
  .describe("The vision pipelines of the online fleet, from each device's latest telemetry window");
export type FleetPipelineSummary = z.infer<typeof FleetPipelineSummary>;

export const FleetSummary = z
  .object({
    total: z.int().describe('Enrolled, active devices'),
    online: z.int().describe('Devices connected'),
    offline: z.int().describe('Devices disconnected'),
    unknown: z.int().describe('Devices never connected'),
    healthy: z.int().describe('Healthy devices'),
    degraded: z.int().describe('Degraded devices'),
    byHealthReason: z.record(z.string(), z.int()).describe('Degraded devices by reason'),
    pipeline: FleetPipelineSummary.describe('The online pipelines'),
  })
  .describe('Counts of devices by status and health, and the online fleet pipelines');
export type FleetSummary = z.infer<typeof FleetSummary>;

export const API_ERROR_CODES = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unprocessable: 422,
  unavailable: 503,
  /** A device did not answer a command in time. */
  timeout: 504,
  internal: 500,
  /** The requested byte range lies outside the file. */
  range_not_satisfiable: 416,
  /* Model uploads: why a release or file was refused (all 422, after `unprocessable`). */
  no_trusted_keys: 422,
  malformed: 422,
  unknown_key: 422,
  bad_signature: 422,
  expired: 422,
  size_mismatch: 422,
  hash_mismatch: 422,
  invalid_model: 422,
  /* Dataset labels: an image or category the COCO file names that the version does not have. */
  unknown_image: 422,
  unknown_category: 422,
  /* Idempotency-Key (governance): the key was used with another request; the key's request is still running. */
  idempotency_key_reused: 422,
  idempotency_key_in_flight: 409,
  /** Free disk of the data directory is below its watermark (or the disk is full): writes wait (Retry-After). */
  insufficient_storage: 507,
} as const;
export type ApiErrorCode = keyof typeof API_ERROR_CODES;

export const ApiError = z
  .object({
    error: z
      .object({
        code: z
          .string()
          .describe('Stable error code: bad_request, unauthorized, forbidden, not_found, conflict, unprocessable, ...'),
        message: z.string().describe('The error in words'),
      })
      .describe('What went wrong'),
  })
  .describe('Every API error response');
export type ApiError = z.infer<typeof ApiError>;

/* ----------------------------------- devices: queries and views ------------------------------- */

/** A `limit` query parameter: 1..max, default `fallback`. */
function limitParam(max: number, fallback: number) {
  return z.coerce.number().int().min(1).max(max).default(fallback);
}

export const DeviceListQuery = z
  .object({
    status: DeviceStatus.optional().describe('Only devices with this status'),
    health: HealthState.optional().describe('Only devices in this health state'),
    /** `key:value`, repeatable; every one must match. */
    label: z
      .array(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}:.{0,128}$/, 'label filters look like key:value'))
      .optional()
      .describe('key:value, repeatable; every one must match (the CLI takes key=value and sends key:value)'),
    model: z
      .string()
      .min(1)
      .max(129)
      .regex(/^[^@]+(@[^@]+)?$/, 'a model filter looks like name or name@version')
      .optional()
      .describe('Only devices whose reported active model is this: name, or name@version'),
    limit: limitParam(500, 100).describe('Page size'),
    /** Opaque, from the previous page's nextCursor. */
    cursor: z.string().max(256).optional().describe('Opaque, from the previous page nextCursor'),
  })
  .describe('Filters of GET /api/v1/devices');
export type DeviceListQuery = z.infer<typeof DeviceListQuery>;

export const SiteCounts = z
  .object({
    site: z.string().nullable().describe('The site label; null for the devices without one'),
    total: z.int().describe('Enrolled, active devices at the site'),
    online: z.int().describe('Devices connected'),
    offline: z.int().describe('Devices disconnected'),
    unknown: z.int().describe('Devices never connected'),
    healthy: z.int().describe('Healthy devices'),
    degraded: z.int().describe('Degraded devices'),
  })
  .describe('The devices of one site (by their site label), counted by status and health');
export type SiteCounts = z.infer<typeof SiteCounts>;

export const SiteList = z
  .object({
    items: z.array(SiteCounts).describe('Sites by name (byte order), the devices without a site first'),
    nextCursor: z.string().nullable().describe('Pass as cursor for the next page; null on the last page'),
  })
  .describe('A page of sites');
export type SiteList = z.infer<typeof SiteList>;

export const SiteListQuery = z
  .object({
    limit: limitParam(1000, 200).describe('Sites per page'),
    cursor: z.string().max(512).optional().describe('Opaque, from the previous page nextCursor'),
  })
  .describe('Paging of GET /api/v1/fleet/sites');
export type SiteListQuery = z.infer<typeof SiteListQuery>;

export const DeviceDetail = z
  .object({
    device: DeviceView.describe('The device'),
    keepaliveS: z.number().nullable().describe('MQTT keepalive the agent announced'),
    telemetryIntervalS: z.number().nullable().describe('Telemetry interval the agent announced'),
    statusChangedAt: EpochMs.nullable().describe('When the status last changed'),
    /** The latest telemetry by (bootId, seq), with when the control plane received it. */
    telemetry: z
      .object({ receivedAt: EpochMs, message: Telemetry })
      .nullable()
      .describe('The latest telemetry by (bootId, seq), with when it was received'),
    reported: z
      .object({ receivedAt: EpochMs, message: Reported })
      .nullable()
      .describe('The latest reported state, with when it was received'),
    desired: Desired.nullable().describe('The desired state; null before any'),
  })
  .describe('A device with its latest telemetry, reported and desired state');
export type DeviceDetail = z.infer<typeof DeviceDetail>;

export const HistoryQuery = z
  .object({
    limit: limitParam(1000, 100).describe('Page size'),
    /** Only messages the control plane received before this instant (epoch ms). */
    before: z.coerce
      .number()
      .int()
      .min(0)
      .optional()
      .describe('Only messages the control plane received before this instant (ms since the epoch)'),
    cursor: z.string().max(256).optional().describe('Opaque, from the previous page nextCursor'),
  })
  .describe('Paging of a device history');
export type HistoryQuery = z.infer<typeof HistoryQuery>;

export const TelemetryHistory = z
  .object({
    items: z
      .array(
        z.object({
          receivedAt: EpochMs,
          message: Telemetry,
          clockSkew: z
            .boolean()
            .describe("True when the device's ts was beyond the allowed clock skew from receipt, or before 2020"),
        }),
      )
      .describe('Telemetry messages, newest first by receipt (received time, then seq), with when each was received'),
    nextCursor: z.string().nullable().describe('Pass as ?cursor= for the next page; null on the last page'),
  })
  .describe('A page of telemetry');
export type TelemetryHistory = z.infer<typeof TelemetryHistory>;

export const MessageQuery = HistoryQuery.extend({
  channel: z
    .enum(['status', 'telemetry', 'events', 'reported', 'reply'])
    .optional()
    .describe('Only messages of this channel'),
}).describe('Filters of a device message history');
export type MessageQuery = z.infer<typeof MessageQuery>;

export const StoredMessageView = z
  .object({
    channel: z.string().describe('Channel the message came on'),
    msgId: z.string().describe('Message id'),
    bootId: z.string().describe('Agent boot id'),
    seq: z.int().describe('Per-boot sequence number'),
    deviceTs: EpochMs.describe('Device clock when sent (kept as data; history is ordered by receipt)'),
    receivedAt: EpochMs.describe('When the control plane received it'),
    clockSkew: z
      .boolean()
      .describe('True when deviceTs was beyond the allowed clock skew from receivedAt, or before 2020'),
    body: JsonObject.describe('The message as stored'),
  })
  .describe('A stored device message');
export type StoredMessageView = z.infer<typeof StoredMessageView>;

export const MessageList = z
  .object({ items: z.array(StoredMessageView).describe('Messages of this page'), nextCursor: NextCursor })
  .describe('A page of stored device messages');
export type MessageList = z.infer<typeof MessageList>;

/* ------------------------------------- desired state, commands -------------------------------- */

/** Changes to a device's desired state; fields left out keep their value. */
export const SetDesiredRequest = z
  .strictObject({
    telemetryIntervalS: z.number().min(0.1).max(86_400).optional().describe('Seconds between telemetry messages'),
    config: JsonObject.optional().describe('Configuration to apply'),
  })
  .describe("Changes to a device's desired state; fields left out keep their value");
export type SetDesiredRequest = z.infer<typeof SetDesiredRequest>;

export const SetDesiredResponse = z.object({ desired: Desired }).describe('The new desired state');
export type SetDesiredResponse = z.infer<typeof SetDesiredResponse>;

export const CommandRequest = z
  .strictObject({
    name: CommandName,
    args: JsonObject.default({}).describe('Command arguments'),
    /** How long to wait for the reply (default 10 s). */
    timeoutMs: z.int().min(100).max(600_000).optional().describe('How long to wait for the reply, ms (default 10 s)'),
  })
  .describe('A command to send to a connected device');
export type CommandRequest = z.infer<typeof CommandRequest>;

export const CommandResponse = z.object({ reply: Reply }).describe("The device's reply");
export type CommandResponse = z.infer<typeof CommandResponse>;

/** Longest overlap of a credential rotation: 30 days. */
export const MAX_ROTATION_OVERLAP_S = 30 * 86_400;
/** Default overlap of a credential rotation: 24 h. */
export const DEFAULT_ROTATION_OVERLAP_S = 86_400;

export const RotateCredentialsRequest = z
  .strictObject({
    overlapS: z
      .int()
      .min(0)
      .max(MAX_ROTATION_OVERLAP_S)
      .optional()
      .describe(
        'Seconds the old secret keeps working if the device does not connect with the new one first (default 86400; 0: at once)',
      ),
    deliver: z
      .boolean()
      .optional()
      .describe(
        "Send the new secret to the device's command topic (rotate-credentials); default: when it is connected. true for an offline device answers 409",
      ),
  })
  .describe("Rotate a device's secret with an overlap");
export type RotateCredentialsRequest = z.infer<typeof RotateCredentialsRequest>;

export const CREDENTIAL_DELIVERY_STATES = ['applied', 'failed', 'timeout', 'offline', 'not-sent'] as const;

export const RotateCredentialsResponse = z
  .object({
    deviceId: z.string().describe('The device'),
    /** Shown once; the control plane keeps only a keyed hash. */
    password: z.string().describe('The new secret, shown only here; the control plane keeps only a keyed hash'),
    deadline: EpochMs.describe(
      'When the old secret stops working (ms since the epoch), unless the device connects with the new one first',
    ),
    delivery: z
      .object({
        state: z
          .enum(CREDENTIAL_DELIVERY_STATES)
          .describe(
            'applied: the agent stored the secret and reconnected with it; failed: it answered an error (it keeps the old one); timeout, offline: no answer; not-sent: deliver false',
          ),
        message: z.string().optional().describe('Why, when not applied'),
      })
      .describe('What became of sending the secret to the device'),
  })
  .describe('A rotated device secret');
export type RotateCredentialsResponse = z.infer<typeof RotateCredentialsResponse>;

/* ---------------------------------------------- tokens ---------------------------------------- */

export const ApiRole = z
  .enum(['admin', 'operator', 'viewer'])
  .describe('viewer reads; operator also enrolls, commands, uploads and rolls out; admin also manages tokens');
export type ApiRole = z.infer<typeof ApiRole>;

export const CreateTokenRequest = z
  .strictObject({
    name: z.string().min(1).max(64).describe('A name for the token'),
    role: z.enum(['operator', 'viewer']).describe('Its role'),
  })
  .describe('Create an API token');
export type CreateTokenRequest = z.infer<typeof CreateTokenRequest>;

export const ApiTokenView = z
  .object({
    id: z.string().describe('Token id'),
    name: z.string().describe('Token name'),
    role: ApiRole,
    bootstrap: z.boolean().describe('The admin token from EDGELOOP_ADMIN_TOKEN or generated at first start'),
    createdAt: EpochMs.describe('When it was created'),
    revokedAt: EpochMs.nullable().describe('When it was revoked; null while valid'),
  })
  .describe('An API token (never its secret)');
export type ApiTokenView = z.infer<typeof ApiTokenView>;

export const CreateTokenResponse = z
  .object({
    token: ApiTokenView.describe('The token'),
    /** The bearer token; shown once, only its keyed hash is kept. */
    secret: z.string().describe('The bearer token; shown once, only its keyed hash is kept'),
  })
  .describe('A created token with its secret');
export type CreateTokenResponse = z.infer<typeof CreateTokenResponse>;

/** `GET /api/v1/tokens/self`: who the caller's token is, so a client can show only what its role allows. */
export const TokenSelf = ApiTokenView.pick({ id: true, name: true, role: true }).describe(
  "The caller's own token: id, name and role",
);
export type TokenSelf = z.infer<typeof TokenSelf>;

export const TokenList = z.object({ items: z.array(ApiTokenView).describe('Every token') }).describe('API tokens');
export type TokenList = z.infer<typeof TokenList>;

/* ------------------------------------------- dead letters ------------------------------------- */

export const DeadLetterQuery = z
  .object({
    deviceId: z.string().max(64).optional().describe('Only messages of this device'),
    reason: z.string().max(64).optional().describe('Only messages refused for this reason'),
    limit: limitParam(500, 100).describe('Page size'),
    cursor: z.string().max(256).optional().describe('Opaque, from the previous page nextCursor'),
  })
  .describe('Filters of GET /api/v1/dead-letters');
export type DeadLetterQuery = z.infer<typeof DeadLetterQuery>;

export const DeadLetterView = z
  .object({
    id: z.int().describe('Dead letter id'),
    receivedAt: EpochMs.describe('When it was received'),
    deviceId: z.string().nullable().describe('The device, when the topic names one'),
    topic: z.string().describe('MQTT topic'),
    reason: z.string().describe('Why it was refused (invalid_json, schema, ...)'),
    detail: z.string().describe('The reason in words'),
    payloadSize: z.int().describe('Payload size, bytes'),
    /** The first 1 KiB of the payload, base64. */
    payloadExcerpt: z.string().describe('The first 1 KiB of the payload, base64'),
  })
  .describe('A device message the control plane refused');
export type DeadLetterView = z.infer<typeof DeadLetterView>;

export const DeadLetterList = z
  .object({ items: z.array(DeadLetterView).describe('Dead letters of this page'), nextCursor: NextCursor })
  .describe('A page of dead letters');
export type DeadLetterList = z.infer<typeof DeadLetterList>;

/* ---------------------------------------------- models ---------------------------------------- */

/**
 * `POST /api/v1/models` takes multipart/form-data with two parts: `release` (a SignedModelRelease
 * as JSON, as `edgeloop-image sign` writes it) and `model` (the ONNX file).
 */
export const MODEL_UPLOAD_PARTS = ['release', 'model'] as const;

/** A registered model version (immutable). */
export const ModelSummary = z
  .object({
    /** `name@version` */
    id: z.string().describe('`name@version`'),
    name: z.string().describe('Model name'),
    version: z.string().describe('Semantic version'),
    sha256: z.string().describe('SHA-256 of the model file'),
    sizeBytes: z.int().describe('Model file size, bytes'),
    releaseCounter: z.int().describe('Monotonic per model name (anti-rollback)'),
    adapter: z.string().describe('Output adapter (yolo, db-text, classification)'),
    keyId: z.string().describe('Key that signed the release'),
    issuedAt: EpochMs.describe('When the release was signed'),
    expiresAt: EpochMs.describe('When the release expires'),
    /** Hardware profiles the release may be installed on; empty means any. */
    hardware: z.array(z.string()).describe('Hardware profiles the release may be installed on; empty means any'),
    createdAt: EpochMs.describe('When it was uploaded'),
    /** Id of the API token that uploaded it. */
    uploadedBy: z.string().nullable().describe('Id of the API token that uploaded it'),
    /** Path of the file on the control plane (Range supported); devices use their credential. */
    url: z.string().describe('Path of the file on the control plane (Range supported); devices use their credential'),
  })
  .describe('A registered model version (immutable)');
export type ModelSummary = z.infer<typeof ModelSummary>;

export const ModelView = ModelSummary.extend({
  manifest: ModelManifest,
  /** The signed release exactly as verified at upload; devices check it again. */
  signed: SignedModelRelease.describe('The signed release exactly as verified at upload; devices check it again'),
  lineage: ReleaseLineage.nullable().describe('The lineage the signed release names; null when it names none'),
  lineageFlags: z
    .array(LineageFlag)
    .describe('What the registry could not confirm of the lineage at upload (accepted, but flagged)'),
}).describe('A registered model version with its manifest, signed release and lineage');
export type ModelView = z.infer<typeof ModelView>;

export const ModelListQuery = z
  .object({
    name: z.string().max(63).optional().describe('Only releases of this model'),
    limit: limitParam(500, 100).describe('Page size'),
    cursor: z.string().max(256).optional().describe('Opaque, from the previous page nextCursor'),
  })
  .describe('Filters of GET /api/v1/models');
export type ModelListQuery = z.infer<typeof ModelListQuery>;

export const ModelList = z
  .object({ items: z.array(ModelSummary).describe('Releases of this page'), nextCursor: NextCursor })
  .describe('A page of registered model versions');
export type ModelList = z.infer<typeof ModelList>;

/** The path a model file is served at: `/api/v1/models/<name>/<version>/file`. */
export function modelFilePath(name: string, version: string): string {
  return `/api/v1/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}/file`;
}

/* ------------------------------------------- rollout spec ------------------------------------- */

/* What an operator asks for when starting a rollout. Defaults make a careful rollout:
 * shadow on a canary cohort, then the canary cohort live against a control cohort, then 1%, 10%,
 * 50% and 100% of the target, each stage gated on how the model behaves on the devices. */

export const TIMEOUT_ACTIONS = ['pause', 'abort', 'promote'] as const;
export const TimeoutAction = z
  .enum(TIMEOUT_ACTIONS)
  .describe(
    'What an inconclusive stage does at its deadline: pause (raise a rollout.paused event for the operator), ' +
      'abort (return every device to its previous model) or promote (take the next stage)',
  );
export type TimeoutAction = z.infer<typeof TimeoutAction>;

export const StageSpec = z
  .object({
    name: z.string().min(1).max(32).describe('Stage name shown in views and events, e.g. "canary" or "10%"'),
    /**
     * shadow:  the canary cohort runs the candidate beside the current model (no switch);
     * canary:  the canary cohort switches to the candidate, compared with the control cohort;
     * percent: at least `percent` % of the target runs the candidate (cumulative).
     */
    kind: z
      .enum(['shadow', 'canary', 'percent'])
      .describe(
        'shadow: the canary cohort runs the candidate beside its current model (no switch); ' +
          'canary: the canary cohort switches, compared with the control cohort; ' +
          'percent: at least `percent` % of the target runs the candidate (cumulative)',
      ),
    percent: z
      .number()
      .min(0)
      .max(100)
      .optional()
      .describe('Share of the target devices (cumulative) that run the candidate in a percent stage'),
    maxDurationS: z
      .number()
      .min(1)
      .max(30 * 86_400)
      .optional()
      .describe(
        'Stage deadline in seconds from the stage start. At the first window close at or after it, an ' +
          'inconclusive stage takes the rollout onTimeout action. Default: the larger of 1800 s and ' +
          'soakS + jitterS + (failingWindowsRequired + 2) x windowS',
      ),
  })
  .describe('One step of a rollout: which devices run the candidate, and how long it may take');
export type StageSpec = z.infer<typeof StageSpec>;

export const DEFAULT_STAGES: readonly StageSpec[] = [
  { name: 'shadow', kind: 'shadow' },
  { name: 'canary', kind: 'canary' },
  { name: '1%', kind: 'percent', percent: 1 },
  { name: '10%', kind: 'percent', percent: 10 },
  { name: '50%', kind: 'percent', percent: 50 },
  { name: '100%', kind: 'percent', percent: 100 },
];

export const EvidenceSpec = z
  .object({
    /** Devices of the stage that must be reporting before a verdict. */
    minDevices: z
      .int()
      .min(1)
      .default(3)
      .describe(
        'Stage devices (and control devices, where the control cohort has that many) that must report ' +
          'within a window before a pass',
      ),
    /** Share of the stage's devices that must be reporting: silent devices are unknown, never success. */
    minReportingShare: z
      .number()
      .min(0)
      .max(1)
      .default(0.8)
      .describe('Share of the stage devices that must report before a pass: a silent device is unknown, never success'),
    /** Frames the stage's devices must have processed on the candidate within the window. */
    minFrames: z
      .int()
      .min(0)
      .default(500)
      .describe(
        'Frames the stage devices must process on the candidate within one window before a pass ' +
          '(shadow stages: frames compared, a sampled share of the frames)',
      ),
    /** Time a stage runs before any pass verdict. */
    soakS: z.number().min(0).default(120).describe('Seconds a stage runs before any pass verdict'),
    minDeviceFrames: z
      .int()
      .min(1)
      .default(20)
      .describe('Frames a device must process within a window for its window value to count in a gate'),
    failMinDevices: z
      .int()
      .min(2)
      .default(3)
      .describe('Devices with a window value on each side (canary and control) before a metric gate may fail'),
    failMinFrames: z
      .int()
      .min(0)
      .default(200)
      .describe('Frames on the candidate within the window before a metric gate may fail'),
    failMinS: z.number().min(0).default(60).describe('Seconds a stage runs before any metric gate may fail'),
    minDetections: z
      .int()
      .min(1)
      .default(200)
      .describe(
        'Detections on each side before confidence-psi judges; with fewer (a scene with nothing to detect) ' +
          'the gate is not-applicable',
      ),
  })
  .describe(
    'Minimum evidence for verdicts. Below the pass minimum a stage is inconclusive; below the fail minimum ' +
      'a gate is inconclusive, never fail',
  );
export type EvidenceSpec = z.infer<typeof EvidenceSpec>;

export const GateSpec = z
  .object({
    /** Kept for older spec files: windows are judged when they close, once each. */
    intervalS: z
      .number()
      .min(0.05)
      .default(30)
      .describe('Deprecated and ignored: gate windows are judged once each, when they close'),
    /** Width of the metrics window compared between cohorts. */
    windowS: z
      .number()
      .min(1)
      .default(300)
      .describe(
        'Width of a gate window in seconds. Windows are consecutive, non-overlapping slices of the stage ' +
          '[start + k x windowS, start + (k+1) x windowS), each judged once when it closes',
      ),
    /** Consecutive failing windows before a stage fails (one bad window can be noise). */
    failingWindowsRequired: z
      .int()
      .min(1)
      .default(2)
      .describe('Consecutive failing windows (distinct windows) before a stage fails and rolls back'),
    /** Canary inference error rate may exceed control's by at most this (absolute). */
    maxErrorRateIncrease: z
      .number()
      .min(0)
      .default(0.02)
      .describe('error-rate gate: canary error rate minus control error rate, at most this (absolute)'),
    /** Share of the stage's devices that failed or reverted the update locally. */
    maxRevertShare: z
      .number()
      .min(0)
      .max(1)
      .default(0.05)
      .describe('revert-rate gate: share of the stage devices that failed or reverted the update, at most this'),
    /** Canary p95 inference latency over control's. */
    maxLatencyRatio: z
      .number()
      .min(1)
      .default(1.5)
      .describe('latency-p95-ratio gate: canary p95 inference latency over control p95, at most this'),
    /** Canary fps over control's. */
    minFpsRatio: z
      .number()
      .min(0)
      .max(1)
      .default(0.8)
      .describe('fps-ratio gate: canary frames per second over control, at least this'),
    /** Canary detections per 1000 frames over control's may differ from 1 by at most this. */
    maxDetectionChange: z
      .number()
      .min(0)
      .default(0.4)
      .describe(
        'detections-change gate: canary detections per 1000 frames over control may differ from 1 by at most this',
      ),
    /** Population stability index of the confidence histograms. */
    maxPsi: z
      .number()
      .min(0)
      .default(0.25)
      .describe('confidence-psi gate: population stability index of the confidence histograms, at most this'),
    /** Shadow stage: candidate against current, IoU-matched. */
    minShadowPrecision: z
      .number()
      .min(0)
      .max(1)
      .default(0.6)
      .describe('shadow-precision gate: candidate detections matched (IoU) by the current model, at least this'),
    minShadowRecall: z
      .number()
      .min(0)
      .max(1)
      .default(0.6)
      .describe('shadow-recall gate: current model detections matched by the candidate, at least this'),
  })
  .describe(
    'Gate thresholds. Ratio and difference gates compare per-device window values with a 95% confidence ' +
      'interval: they fail only when the whole interval lies past the threshold, and pass when the estimate is ' +
      'within it',
  );
export type GateSpec = z.infer<typeof GateSpec>;

export const AbortSpec = z
  .object({
    /** Roll back when this share of devices that got the model failed the update... */
    maxFailureShare: z
      .number()
      .min(0)
      .max(1)
      .default(0.2)
      .describe('Roll back when this share of the devices handed the model failed the update...'),
    /** ...once at least this many failed. */
    minFailures: z.int().min(1).default(3).describe('...once at least this many failed'),
  })
  .describe('Abort criteria on failed updates, whatever the gates say');
export type AbortSpec = z.infer<typeof AbortSpec>;

export const MaintenanceWindow = z
  .object({
    /** Days of week (0 = Sunday) in UTC; all when left out. */
    days: z
      .array(z.int().min(0).max(6))
      .max(7)
      .optional()
      .describe('Days of the week (0 = Sunday, UTC); every day when left out'),
    /** `HH:MM` UTC; a window may wrap past midnight. */
    start: z
      .string()
      .regex(/^([01]\d|2[0-3]):[0-5]\d$/)
      .describe('Start, HH:MM UTC; a window may wrap past midnight'),
    end: z
      .string()
      .regex(/^([01]\d|2[0-3]):[0-5]\d$/)
      .describe('End, HH:MM UTC'),
  })
  .describe('A time in which devices may be handed the model');
export type MaintenanceWindow = z.infer<typeof MaintenanceWindow>;

export const CanarySpec = z
  .object({
    /** Devices per (hardware, site) combination in the canary cohort. */
    perGroup: z.int().min(1).default(1).describe('Canary devices per (hardware, site) combination'),
    /** Lower bound on the canary cohort size (when the target has enough devices). */
    minSize: z
      .int()
      .min(1)
      .default(3)
      .describe('Lower bound on the canary cohort size (when the target has enough devices)'),
    /** Upper bound on the canary cohort size. */
    maxSize: z.int().min(1).default(50).describe('Upper bound on the canary cohort size'),
    /** Label naming the site; the hardware profile comes from reports or the `hardware` label. */
    siteLabel: z
      .string()
      .default('site')
      .describe('Label naming the site; the hardware profile comes from reports or the `hardware` label'),
  })
  .describe('How the canary cohort and its matched control cohort are chosen');
export type CanarySpec = z.infer<typeof CanarySpec>;

export const RolloutSpec = z
  .object({
    /** `name@version` of a registered model. */
    modelId: z.string().min(3).max(128).describe('`name@version` of a registered model'),
    /** Target devices: every enrolled device whose labels include all of these. */
    selector: z
      .object({
        labels: labelMap(z.string(), 32).default({}).describe('Labels a device must carry, all of them (key=value)'),
      })
      .prefault({})
      .describe('Target devices: every enrolled device whose labels include all of these'),
    stages: z
      .array(StageSpec)
      .min(1)
      .max(16)
      .default([...DEFAULT_STAGES])
      .describe('Stages in order; default shadow, canary, 1%, 10%, 50%, 100%'),
    canary: CanarySpec.prefault({}),
    evidence: EvidenceSpec.prefault({}),
    gates: GateSpec.prefault({}),
    abort: AbortSpec.prefault({}),
    maintenanceWindows: z
      .array(MaintenanceWindow)
      .max(16)
      .default([])
      .describe('UTC windows in which devices may be handed the model; always when empty'),
    /** Each device's start is spread uniformly over this many seconds (from a stable hash). */
    jitterS: z
      .number()
      .min(0)
      .max(86_400)
      .default(0)
      .describe("Each device's start in a stage is spread uniformly over this many seconds (stable hash)"),
    onTimeout: TimeoutAction.default('pause'),
    validation: ValidationSpec.optional().describe(
      'Validation gate: the rollout stays pending until an evaluation of the candidate on this dataset version ' +
        'shows candidate >= champion + minDelta; one below fails it',
    ),
  })
  .describe('A staged rollout of one registered model to the devices a selector matches');
export type RolloutSpec = z.infer<typeof RolloutSpec>;
export type RolloutSpecInput = z.input<typeof RolloutSpec>;

/* ---------------------------------------------- rollouts -------------------------------------- */

/** `POST /api/v1/rollouts`: a rollout spec; `dryRun: true` returns the plan and creates nothing. */
export const CreateRolloutRequest = RolloutSpec.extend({
  dryRun: z.boolean().default(false).describe('Answer the plan (RolloutDryRun) and create nothing'),
}).describe('A rollout spec to start; with dryRun, the plan only');
export type CreateRolloutRequest = z.infer<typeof CreateRolloutRequest>;

export const ROLLOUT_STATUSES = ['pending', 'running', 'paused', 'completed', 'rolled_back', 'aborted'] as const;
export const RolloutStatus = z
  .enum(ROLLOUT_STATUSES)
  .describe('Where a rollout stands; pending: waiting for its validation gate (an evaluation), no device touched');
export type RolloutStatus = z.infer<typeof RolloutStatus>;

/**
 * assigned:    desired state names the candidate; the device has not confirmed yet
 * active:      the device runs the candidate (or shadows it, for a shadow assignment)
 * failed:      the device reported a failed update or reverted locally
 * reverting:   desired state names the previous model again; not confirmed yet
 * rolled_back: the device is back on the previous model
 * unchanged:   the device already ran the candidate's bytes: nothing to do (never switched or reverted)
 */
export const ASSIGNMENT_STATES = ['assigned', 'active', 'failed', 'reverting', 'rolled_back', 'unchanged'] as const;
export const AssignmentState = z
  .enum(ASSIGNMENT_STATES)
  .describe(
    'assigned: desired state names the candidate, not confirmed yet; active: the device runs (or shadows) it; ' +
      'failed: the device refused or reverted it; reverting: desired state names the previous model again; ' +
      "rolled_back: the device is back on the previous model; unchanged: the device already ran the candidate's " +
      'bytes, a no-op',
  );
export type AssignmentState = z.infer<typeof AssignmentState>;

export const GATE_VERDICTS = ['pass', 'fail', 'inconclusive', 'not-applicable'] as const;

/** One cohort's side of a gate: the per-device window values summarised. */
export const CohortMeasure = z
  .object({
    /** Median over the cohort's devices of their window value; null without data. */
    median: z.number().nullable().describe("Median over the cohort's devices of their window value; null without data"),
    /** Lower and upper bound of the interval around the median (per-device spread); null without data. */
    lo: z
      .number()
      .nullable()
      .describe('Lower bound of the 95% distribution-free confidence interval of the median (order statistics)'),
    hi: z.number().nullable().describe('Upper bound of that interval'),
    /** Devices that contributed a value. */
    devices: z.int().describe('Devices that contributed a window value'),
    /** Frames behind the value. */
    frames: z.number().describe('Frames behind the values'),
  })
  .describe("One cohort's side of a gate: its devices' window values summarised");
export type CohortMeasure = z.infer<typeof CohortMeasure>;

export const GateResultView = z
  .object({
    gate: z
      .string()
      .describe(
        'revert-rate, error-rate, latency-p95-ratio, fps-ratio, detections-change, confidence-psi, ' +
          'shadow-precision, shadow-recall or validation',
      ),
    /** not-applicable: the gate cannot be judged in this stage (the reason is in `detail`); never blocks. */
    verdict: z
      .enum(GATE_VERDICTS)
      .describe('not-applicable: the gate cannot be judged here (the reason is in detail); it never blocks a pass'),
    canary: CohortMeasure.nullable().describe('The stage devices on the candidate'),
    control: CohortMeasure.nullable().describe('The control devices (not assigned by this rollout); null when none'),
    /** Canary compared with control: the estimate and its confidence interval. */
    comparison: z
      .object({
        kind: z
          .enum(['ratio', 'difference', 'value'])
          .describe('ratio: canary over control; difference: canary minus control; value: canary alone'),
        estimate: z.number().nullable().describe('Point estimate (ratios: of geometric means)'),
        lo: z.number().nullable().describe('Lower bound of the confidence interval'),
        hi: z.number().nullable().describe('Upper bound of the confidence interval'),
        /** Confidence level of [lo, hi], e.g. 0.95. */
        confidence: z.number().describe('Confidence level of [lo, hi], e.g. 0.95'),
      })
      .nullable()
      .describe('Canary compared with control: estimate and Welch t confidence interval (log scale for ratios)'),
    threshold: z.number().describe('The spec threshold the comparison is judged against'),
    detail: z.string().describe('What the numbers are, in words'),
    /** One sentence: why this verdict (evidence short, interval past the threshold, ...). */
    decision: z.string().describe('Why this verdict, in one sentence'),
    validation: ValidationResult.optional().describe('The validation gate only: the evaluation and its numbers'),
  })
  .describe('One gate of a verdict with the numbers behind it');
export type GateResultView = z.infer<typeof GateResultView>;

/** One gate evaluation with the numbers behind it. */
export const VerdictView = z
  .object({
    at: EpochMs.describe('When the verdict was taken'),
    stage: z.string().describe('Stage name'),
    stageIndex: z.int().describe('Stage index in the spec, from 0'),
    verdict: z.enum(['pass', 'fail', 'inconclusive']).describe('The stage verdict for this window'),
    reason: z.string().describe('Why, in words'),
    failingWindows: z.int().describe('Consecutive failing windows so far in this stage, this one included'),
    /** The non-overlapping slice of device time this verdict judged; index counts from 0 per stage. */
    window: z
      .object({
        index: z.int().describe('Window number in the stage, from 0'),
        from: EpochMs.describe('Window start (inclusive)'),
        to: EpochMs.describe('Window end (exclusive)'),
      })
      .describe('The non-overlapping slice of the stage this verdict judged (telemetry by received time)'),
    /** True when this verdict was taken at the stage deadline (maxDurationS). */
    timedOut: z.boolean().describe('True when the stage reached its deadline (maxDurationS) inconclusive'),
    /** The onTimeout action taken, when timedOut. */
    action: TimeoutAction.nullable().describe('The onTimeout action taken, when timedOut'),
    gates: z.array(GateResultView).describe('One result per gate, with the numbers behind it'),
    evidence: z
      .object({
        stageDevices: z.int().describe('Devices of the stage that take the candidate (unchanged ones left out)'),
        reporting: z.int().describe('Stage devices that reported candidate metrics in the window'),
        frames: z.number().describe('Candidate frames in the window (shadow: frames compared)'),
        soakedS: z.number().describe('Seconds from the stage start to the window end'),
        failed: z.int().describe('Stage devices that failed or reverted the update'),
        controlDevices: z.int().describe('Control devices that reported in the window'),
        controlFrames: z.number().describe('Control frames in the window'),
        unchanged: z
          .int()
          .default(0)
          .describe("Stage devices that already ran the candidate's bytes (no-op, left out of the stage)"),
      })
      .describe('The evidence behind the verdict'),
  })
  .describe('One gate evaluation (one window) with the numbers behind it');
export type VerdictView = z.infer<typeof VerdictView>;

export const RolloutView = z
  .object({
    id: z.string().describe('Rollout id'),
    modelId: z.string().describe('`name@version` of the candidate'),
    model: ModelRef,
    spec: RolloutSpec,
    status: RolloutStatus,
    stageIndex: z.int().describe('Current stage index, from 0'),
    /** The current stage's name; null once past the last stage. */
    stage: z.string().nullable().describe("The current stage's name; null once past the last stage"),
    stageStartedAt: EpochMs.describe('When the current stage started (its windows and deadline count from here)'),
    failingWindows: z.int().describe('Consecutive failing windows in the current stage'),
    lastEvaluatedAt: EpochMs.nullable().describe('End of the last window judged in this stage; null before the first'),
    reason: z.string().nullable().describe('Why the rollout is where it is (pause, rollback, abort, deadline)'),
    cohorts: z
      .object({
        canary: z.array(z.string()).describe('Devices that try the model first'),
        control: z.array(z.string()).describe('Devices kept on their model for comparison until the last stage'),
        targetDevices: z.int().describe('Devices the selector matched (compatible hardware)'),
      })
      .describe('Cohorts frozen at creation'),
    /** Assignments by state. */
    counts: z.partialRecord(AssignmentState, z.int()).describe('Assignments by state'),
    lastVerdict: VerdictView.nullable().describe('The latest verdict; null before the first'),
    createdAt: EpochMs,
    updatedAt: EpochMs,
    createdBy: z.string().nullable().describe('The token that created it'),
  })
  .describe('A rollout as it stands');
export type RolloutView = z.infer<typeof RolloutView>;

export const RolloutListQuery = z.object({
  status: RolloutStatus.optional(),
  modelId: z.string().max(128).optional().describe('Only rollouts of this `name@version`'),
  limit: limitParam(500, 100),
  cursor: z.string().max(256).optional().describe('Opaque, from the previous page'),
});
export type RolloutListQuery = z.infer<typeof RolloutListQuery>;

export const RolloutList = z
  .object({
    items: z.array(RolloutView).describe('Rollouts of this page'),
    nextCursor: z.string().nullable().describe('Null on the last page'),
  })
  .describe('A page of rollouts, newest first');
export type RolloutList = z.infer<typeof RolloutList>;

/** What `dryRun: true` answers. */
export const RolloutDryRun = z
  .object({
    dryRun: z.literal(true).describe('Always true: nothing was created'),
    modelId: z.string().describe('`name@version` of the candidate'),
    targetDevices: z.int().describe('Devices the rollout would target'),
    /** Devices the selector matched whose hardware profile the release does not allow (left out). */
    incompatibleDevices: z
      .int()
      .describe('Devices the selector matched whose hardware profile the release does not allow (left out)'),
    /** Target devices already running the candidate's bytes: a no-op for them. */
    unchangedDevices: z
      .int()
      .describe("Target devices that already run the candidate's bytes: a no-op for them (state unchanged)"),
    canary: z.array(z.string()).describe('The canary cohort'),
    control: z.array(z.string()).describe('The control cohort'),
    /** The fps the feasibility figures assume. */
    fps: z
      .object({
        value: z.number().describe('Median fps per device'),
        source: z
          .enum(['telemetry', 'assumed'])
          .describe("telemetry: the target devices' last reported pipeline fps; assumed: no telemetry yet"),
      })
      .describe('The fps the feasibility figures assume'),
    /** Share of frames the agent's shadow comparison samples (its default). */
    shadowSampleShare: z.number().describe("Share of frames a shadow stage compares (the agent's default)"),
    stages: z
      .array(
        z
          .object({
            name: z.string().describe('Stage name'),
            kind: z.string().describe('shadow, canary or percent'),
            devices: z.int().describe('Devices running the candidate once the stage is reached (cumulative)'),
            newDevices: z.int().describe('Devices this stage adds'),
            /** Control devices the stage's gates compare against. */
            controlDevices: z.int().describe("Control devices the stage's gates compare against"),
            maxDurationS: z.number().describe('The stage deadline in seconds (given or default)'),
            /** Whether each gate can collect its minimum evidence within one window of this stage. */
            gates: z
              .array(
                z.object({
                  gate: z.string().describe('Gate name'),
                  feasible: z.boolean().describe('Whether the gate can collect its minimum evidence in one window'),
                  reason: z.string().describe('The expected evidence against the minimum, in words'),
                }),
              )
              .describe('Whether each gate can collect its minimum evidence within one window of this stage'),
          })
          .describe('One stage of the plan'),
      )
      .describe('The stages in order, with their gate feasibility'),
    /** Everything that would make a stage stall or end at its deadline, in words. */
    warnings: z.array(z.string()).describe('Everything that would make a stage stall or end at its deadline'),
    /** Fastest possible time to the last stage's verdict if every gate passes at its first chance. */
    earliestDurationS: z
      .number()
      .describe("Fastest possible time to the last stage's verdict if every gate passes at its first chance"),
    /** Bytes the devices will download (each device fetches the model once). */
    bytesToDownload: z.number().describe('Bytes the devices will download (each device fetches the model once)'),
  })
  .describe('What a rollout would do, without doing it');
export type RolloutDryRun = z.infer<typeof RolloutDryRun>;

/** `POST /api/v1/rollouts/:id/{pause,resume,abort,promote}`: an optional reason for the record. */
export const RolloutActionRequest = z
  .strictObject({ reason: z.string().max(1024).optional().describe('Why, for the record') })
  .describe('An operator action on a rollout');
export type RolloutActionRequest = z.infer<typeof RolloutActionRequest>;

export const RolloutEventView = z
  .object({
    id: z.int().describe('Event id, increasing'),
    rolloutId: z.string().describe('The rollout'),
    at: EpochMs,
    /** created, assigned, devices, verdict, advanced, completed, rolled-back, aborted, paused, ... */
    type: z
      .string()
      .describe(
        'created, assigned, unchanged, devices, verdict, advanced, completed, rolled-back, aborted, paused, ' +
          'resumed, promoted, reverting',
      ),
    stage: z.string().nullable().describe('The stage it happened in'),
    data: JsonObject,
  })
  .describe('One entry of a rollout audit log');
export type RolloutEventView = z.infer<typeof RolloutEventView>;

export const RolloutEventQuery = z.object({
  type: z.string().max(32).optional().describe('Only events of this type'),
  limit: limitParam(1000, 100),
  /** Opaque, from the previous page; events come oldest first. */
  cursor: z.string().max(256).optional().describe('Opaque, from the previous page; events come oldest first'),
});
export type RolloutEventQuery = z.infer<typeof RolloutEventQuery>;

export const RolloutEventList = z
  .object({
    items: z.array(RolloutEventView).describe('Events of this page, oldest first'),
    nextCursor: z.string().nullable().describe('Null on the last page'),
  })
  .describe('A page of rollout events, oldest first');
export type RolloutEventList = z.infer<typeof RolloutEventList>;

export const RolloutDeviceView = z
  .object({
    deviceId: z.string().describe('The device'),
    mode: z.enum(['shadow', 'active']).describe('shadow: beside the current model; active: switched'),
    stageIndex: z.int().describe('The stage that assigned it'),
    state: AssignmentState,
    /** Why the device failed or was reverted (a refusal reason such as bad_signature). */
    reason: z
      .string()
      .nullable()
      .describe('Why the device failed, was reverted or is unchanged (a refusal reason such as bad_signature)'),
    previous: ModelRef.nullable().describe(
      'The model the device ran before the rollout: what a rollback returns it to',
    ),
    assignedAt: EpochMs,
    updatedAt: EpochMs,
    /** The device's model-update state machine as it last reported it. */
    update: z
      .object({
        rolloutId: z.string().nullable().describe('The rollout behind the update; null for none'),
        state: z.string().describe('The update state (downloading, verifying, active, committed, reverted, ...)'),
        reason: z.string().optional().describe('Why it was refused or reverted'),
      })
      .nullable()
      .describe("The device's model-update state machine as it last reported it"),
  })
  .describe("One device's part in a rollout");
export type RolloutDeviceView = z.infer<typeof RolloutDeviceView>;

export const RolloutDeviceQuery = z.object({
  state: AssignmentState.optional(),
  limit: limitParam(1000, 200),
  cursor: z.string().max(256).optional().describe('Opaque, from the previous page'),
});
export type RolloutDeviceQuery = z.infer<typeof RolloutDeviceQuery>;

export const RolloutDeviceList = z
  .object({
    items: z.array(RolloutDeviceView).describe('Assignments of this page'),
    nextCursor: z.string().nullable().describe('Null on the last page'),
  })
  .describe("A page of a rollout's devices");
export type RolloutDeviceList = z.infer<typeof RolloutDeviceList>;

/* ------------------------------------------ server, events ------------------------------------ */

export const HealthzResponse = z
  .object({
    status: z.literal('ok').describe('Always ok when the process answers'),
    version: z.string().describe('Control plane version'),
    uptimeS: z.number().describe('Seconds since start'),
    mqtt: z.object({ connectedClients: z.int().describe('Connected MQTT clients') }).describe('Broker state'),
    ingest: z.object({ queueDepth: z.int().describe('Entries waiting to be stored') }).describe('Ingest queue state'),
  })
  .describe('Liveness of the control plane');
export type HealthzResponse = z.infer<typeof HealthzResponse>;

/** What `GET /readyz` checks, each named in its body. */
export const READINESS_CHECKS = ['database', 'disk', 'mqtt', 'ingest'] as const;
export const ReadinessCheckName = z.enum(READINESS_CHECKS);
export type ReadinessCheckName = z.infer<typeof ReadinessCheckName>;

export const ReadinessCheck = z
  .object({
    name: ReadinessCheckName.describe(
      'database: a write would be accepted; disk: free space of the data directory is above the watermark; mqtt: the broker is listening; ingest: no batch failed to commit lately',
    ),
    ok: z.boolean().describe('Whether this check passes'),
    detail: z.string().describe('The reading in words (free bytes, the error, the port)'),
  })
  .describe('One readiness check');
export type ReadinessCheck = z.infer<typeof ReadinessCheck>;

export const ReadyzResponse = z
  .object({
    ok: z.boolean().describe('True (HTTP 200) only when every check passes; false with HTTP 503'),
    failing: z.array(ReadinessCheckName).describe('The checks that fail (empty when ready)'),
    checks: z.array(ReadinessCheck).describe('Every check with its reading'),
    error: z
      .object({
        code: z.literal('unavailable').describe('Always unavailable'),
        message: z.string().describe('The failing checks in words'),
      })
      .optional()
      .describe('Only when not ready (the shape of every API error, for clients that read only that)'),
  })
  .describe('Readiness of the control plane: whether it can take work now');
export type ReadyzResponse = z.infer<typeof ReadyzResponse>;

/** Event types of `GET /api/v1/events` (Server-Sent Events); `?types=a,b` filters them. */
export const SERVER_EVENT_TYPES = [
  'device.enrolled',
  'device.revoked',
  'device.online',
  'device.offline',
  'device.health',
  'device.event',
  'device.reported',
  'ingest.rejected',
  'model.registered',
  'rollout.created',
  'rollout.assigned',
  'rollout.reverting',
  'rollout.devices',
  'rollout.verdict',
  'rollout.advanced',
  'rollout.completed',
  'rollout.rolled-back',
  'rollout.aborted',
  'rollout.paused',
  'rollout.resumed',
  'rollout.promoted',
  'drift.changed',
  'drift.sampling',
  'retraining.run',
] as const;
export const ServerEventType = z.enum(SERVER_EVENT_TYPES).describe('Type of a server-sent event');
export type ServerEventType = z.infer<typeof ServerEventType>;

/** The `data` of every server event: `{ type, at, data }`, `data` depending on the type. */
export const ServerEvent = z
  .object({
    type: ServerEventType,
    at: EpochMs.describe('When it happened'),
    data: JsonObject.describe('Fields depending on the type'),
  })
  .describe('The data of every server event on GET /api/v1/events');
export type ServerEvent = z.infer<typeof ServerEvent>;

/* ------------------------------------ governance: audit log ------------------------------------ */

/** Who made a change: an API token (id and role), a device (`device:<id>`), or `system:rollouts`. */
export const AuditActor = z
  .object({
    id: z.string().describe('Token id, device:<id>, or system:rollouts'),
    role: z.string().describe('admin, operator, viewer, device or system'),
  })
  .describe('Who made the change');
export type AuditActor = z.infer<typeof AuditActor>;

export const AuditEntry = z
  .object({
    id: z.int().describe('Entry id (increasing)'),
    at: EpochMs.describe('When the change was made'),
    actor: AuditActor,
    action: z
      .string()
      .describe('The route (POST /api/v1/rollouts/:id/abort) or an engine action (rollout.advanced, rollout.assigned)'),
    resource: z.string().describe('What kind of thing: devices, models, rollouts, tokens, samples, datasets, ...'),
    target: z.string().nullable().describe('The id acted on (path parameter, or the id created); null for none'),
    requestId: z.string().nullable().describe('X-Request-Id of the request; null for engine actions'),
    source: z.string().nullable().describe('Source address of the request; null when unknown or for engine actions'),
    status: z.int().nullable().describe('HTTP status answered; null for engine actions'),
    summary: JsonObject.describe('A small redacted digest of what changed (secrets are never stored)'),
  })
  .describe('One entry of the audit log');
export type AuditEntry = z.infer<typeof AuditEntry>;

export const AuditQuery = z
  .object({
    actor: z
      .string()
      .max(128)
      .optional()
      .describe('Only entries of this actor (token id, device:<id>, system:rollouts)'),
    action: z.string().max(200).optional().describe('Only entries of this action'),
    resource: z.string().max(64).optional().describe('Only entries about this kind of thing (devices, rollouts, ...)'),
    target: z.string().max(256).optional().describe('Only entries about this id'),
    from: z.coerce.number().int().min(0).optional().describe('Entries made at or after this time (ms since the epoch)'),
    to: z.coerce.number().int().min(0).optional().describe('Entries made at or before this time (ms since the epoch)'),
    limit: limitParam(500, 100).describe('Page size'),
    cursor: z.string().max(256).optional().describe('Opaque, from the previous page nextCursor'),
  })
  .describe('Filters of GET /api/v1/audit');
export type AuditQuery = z.infer<typeof AuditQuery>;

export const AuditList = z
  .object({ items: z.array(AuditEntry), nextCursor: NextCursor })
  .describe('A page of the audit log, newest first');
export type AuditList = z.infer<typeof AuditList>;

/** The header a replayed Idempotency-Key response carries (`true`). */
export const IDEMPOTENT_REPLAYED_HEADER = 'Idempotent-Replayed';
