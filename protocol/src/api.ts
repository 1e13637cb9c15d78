import { z } from 'zod';
import { DEVICE_ID_PATTERN } from './device-id.ts';
import { JsonObject } from './json-value.ts';
import { CommandName, Desired, EpochMs, Reply, Reported, Telemetry } from './messages.ts';
import { ModelManifest, ModelRef, SignedModelRelease } from './models.ts';

/* Shapes of the control plane's HTTP API that clients (CLI, simulator, dashboard) share. */

export const LABEL_KEY_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export const Labels = z
  .record(
    z.string().regex(LABEL_KEY_PATTERN, 'label keys are lowercase letters, digits, . _ -, at most 63 characters'),
    z.string().max(128),
  )
  .refine((labels) => Object.keys(labels).length <= 32, 'at most 32 labels');
export type Labels = z.infer<typeof Labels>;

export const DeviceStatus = z.enum(['online', 'offline', 'unknown']);
export type DeviceStatus = z.infer<typeof DeviceStatus>;

export const HealthState = z.enum(['healthy', 'degraded', 'offline', 'unknown']);
export type HealthState = z.infer<typeof HealthState>;

export const EnrollDeviceRequest = z.object({
  /** Checked again with checkDeviceId: the pattern here documents it for JSON Schema readers. */
  id: z.string().regex(DEVICE_ID_PATTERN),
  labels: Labels.default({}),
});
export type EnrollDeviceRequest = z.infer<typeof EnrollDeviceRequest>;

export const PatchDeviceRequest = z.object({
  /** Labels to set; a null value removes that label. */
  labels: z.record(z.string().regex(LABEL_KEY_PATTERN), z.string().max(128).nullable()),
});
export type PatchDeviceRequest = z.infer<typeof PatchDeviceRequest>;

export const MqttCredentials = z.object({
  clientId: z.string(),
  username: z.string(),
  /** Shown once, at enrollment; the control plane keeps only a keyed hash. */
  password: z.string(),
});
export type MqttCredentials = z.infer<typeof MqttCredentials>;

export const DeviceView = z.object({
  id: z.string(),
  labels: z.record(z.string(), z.string()),
  status: DeviceStatus,
  health: HealthState,
  healthReasons: z.array(z.string()),
  lastSeen: EpochMs.nullable(),
  enrolledAt: EpochMs,
  bootId: z.string().nullable(),
  agentVersion: z.string().nullable(),
});
export type DeviceView = z.infer<typeof DeviceView>;

export const EnrollDeviceResponse = z.object({
  device: DeviceView,
  credentials: MqttCredentials,
  mqtt: z.object({ host: z.string(), port: z.int(), url: z.string() }),
});
export type EnrollDeviceResponse = z.infer<typeof EnrollDeviceResponse>;

export const DeviceList = z.object({ items: z.array(DeviceView), nextCursor: z.string().nullable() });
export type DeviceList = z.infer<typeof DeviceList>;

/** The vision pipelines of the online fleet, from each device's latest telemetry window. */
export const FleetPipelineSummary = z.object({
  /** Online devices whose latest telemetry carries pipeline metrics. */
  devicesReporting: z.int(),
  /** Sum of the devices' fps. */
  fps: z.number(),
  framesIn: z.int(),
  framesProcessed: z.int(),
  framesDropped: z.int(),
  inferenceErrors: z.int(),
  /** Median and worst of the devices' p95 inference latency (ms). */
  inferenceP95Ms: z.object({ median: z.number().nullable(), max: z.number().nullable() }),
  /** Detections per 1000 frames per class, frame-weighted over the devices. */
  detectionsPer1000: z.record(z.string(), z.number()),
  /** Devices by active execution provider and by model id. */
  providers: z.record(z.string(), z.int()),
  models: z.record(z.string(), z.int()),
  cameraFaults: z.object({ black: z.int(), frozen: z.int(), blurred: z.int() }),
});
export type FleetPipelineSummary = z.infer<typeof FleetPipelineSummary>;

export const FleetSummary = z.object({
  total: z.int(),
  online: z.int(),
  offline: z.int(),
  unknown: z.int(),
  healthy: z.int(),
  degraded: z.int(),
  byHealthReason: z.record(z.string(), z.int()),
  pipeline: FleetPipelineSummary,
});
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
} as const;
export type ApiErrorCode = keyof typeof API_ERROR_CODES;

export const ApiError = z.object({ error: z.object({ code: z.string(), message: z.string() }) });
export type ApiError = z.infer<typeof ApiError>;

/* ----------------------------------- devices: queries and views ------------------------------- */

/** A `limit` query parameter: 1..max, default `fallback`. */
function limitParam(max: number, fallback: number) {
  return z.coerce.number().int().min(1).max(max).default(fallback);
}

export const DeviceListQuery = z.object({
  status: DeviceStatus.optional(),
  health: HealthState.optional(),
  /** `key:value`, repeatable; every one must match. */
  label: z
    .array(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}:.{0,128}$/, 'label filters look like key:value'))
    .optional(),
  limit: limitParam(500, 100),
  /** Opaque, from the previous page's nextCursor. */
  cursor: z.string().max(256).optional(),
});
export type DeviceListQuery = z.infer<typeof DeviceListQuery>;

export const DeviceDetail = z.object({
  device: DeviceView,
  keepaliveS: z.number().nullable(),
  telemetryIntervalS: z.number().nullable(),
  statusChangedAt: EpochMs.nullable(),
  /** The latest telemetry by (bootId, seq), with when the control plane received it. */
  telemetry: z.object({ receivedAt: EpochMs, message: Telemetry }).nullable(),
  reported: z.object({ receivedAt: EpochMs, message: Reported }).nullable(),
  desired: Desired.nullable(),
});
export type DeviceDetail = z.infer<typeof DeviceDetail>;

export const HistoryQuery = z.object({
  limit: limitParam(1000, 100),
  /** Only messages whose device timestamp is before this instant (epoch ms). */
  before: z.coerce.number().int().min(0).optional(),
  cursor: z.string().max(256).optional(),
});
export type HistoryQuery = z.infer<typeof HistoryQuery>;

export const TelemetryHistory = z.object({
  items: z.array(z.object({ receivedAt: EpochMs, message: Telemetry })),
  nextCursor: z.string().nullable(),
});
export type TelemetryHistory = z.infer<typeof TelemetryHistory>;

export const MessageQuery = HistoryQuery.extend({
  channel: z.enum(['status', 'telemetry', 'events', 'reported', 'reply']).optional(),
});
export type MessageQuery = z.infer<typeof MessageQuery>;

export const StoredMessageView = z.object({
  channel: z.string(),
  msgId: z.string(),
  bootId: z.string(),
  seq: z.int(),
  deviceTs: EpochMs,
  receivedAt: EpochMs,
  body: JsonObject,
});
export type StoredMessageView = z.infer<typeof StoredMessageView>;

export const MessageList = z.object({ items: z.array(StoredMessageView), nextCursor: z.string().nullable() });
export type MessageList = z.infer<typeof MessageList>;

/* ------------------------------------- desired state, commands -------------------------------- */

/** Changes to a device's desired state; fields left out keep their value. */
export const SetDesiredRequest = z.strictObject({
  telemetryIntervalS: z.number().min(0.1).max(86_400).optional(),
  config: JsonObject.optional(),
});
export type SetDesiredRequest = z.infer<typeof SetDesiredRequest>;

export const SetDesiredResponse = z.object({ desired: Desired });
export type SetDesiredResponse = z.infer<typeof SetDesiredResponse>;

export const CommandRequest = z.strictObject({
  name: CommandName,
  args: JsonObject.default({}),
  /** How long to wait for the reply (default 10 s). */
  timeoutMs: z.int().min(100).max(600_000).optional(),
});
export type CommandRequest = z.infer<typeof CommandRequest>;

export const CommandResponse = z.object({ reply: Reply });
export type CommandResponse = z.infer<typeof CommandResponse>;

/* ---------------------------------------------- tokens ---------------------------------------- */

export const ApiRole = z.enum(['admin', 'operator', 'viewer']);
export type ApiRole = z.infer<typeof ApiRole>;

export const CreateTokenRequest = z.strictObject({
  name: z.string().min(1).max(64),
  role: z.enum(['operator', 'viewer']),
});
export type CreateTokenRequest = z.infer<typeof CreateTokenRequest>;

export const ApiTokenView = z.object({
  id: z.string(),
  name: z.string(),
  role: ApiRole,
  bootstrap: z.boolean(),
  createdAt: EpochMs,
  revokedAt: EpochMs.nullable(),
});
export type ApiTokenView = z.infer<typeof ApiTokenView>;

export const CreateTokenResponse = z.object({
  token: ApiTokenView,
  /** The bearer token; shown once, only its keyed hash is kept. */
  secret: z.string(),
});
export type CreateTokenResponse = z.infer<typeof CreateTokenResponse>;

export const TokenList = z.object({ items: z.array(ApiTokenView) });
export type TokenList = z.infer<typeof TokenList>;

/* ------------------------------------------- dead letters ------------------------------------- */

export const DeadLetterQuery = z.object({
  deviceId: z.string().max(64).optional(),
  reason: z.string().max(64).optional(),
  limit: limitParam(500, 100),
  cursor: z.string().max(256).optional(),
});
export type DeadLetterQuery = z.infer<typeof DeadLetterQuery>;

export const DeadLetterView = z.object({
  id: z.int(),
  receivedAt: EpochMs,
  deviceId: z.string().nullable(),
  topic: z.string(),
  reason: z.string(),
  detail: z.string(),
  payloadSize: z.int(),
  /** The first 1 KiB of the payload, base64. */
  payloadExcerpt: z.string(),
});
export type DeadLetterView = z.infer<typeof DeadLetterView>;

export const DeadLetterList = z.object({ items: z.array(DeadLetterView), nextCursor: z.string().nullable() });
export type DeadLetterList = z.infer<typeof DeadLetterList>;

/* ---------------------------------------------- models ---------------------------------------- */

/**
 * `POST /api/v1/models` takes multipart/form-data with two parts: `release` (a SignedModelRelease
 * as JSON, as `edgeloop-image sign` writes it) and `model` (the ONNX file).
 */
export const MODEL_UPLOAD_PARTS = ['release', 'model'] as const;

/** A registered model version (immutable). */
export const ModelSummary = z.object({
  /** `name@version` */
  id: z.string(),
  name: z.string(),
  version: z.string(),
  sha256: z.string(),
  sizeBytes: z.int(),
  releaseCounter: z.int(),
  adapter: z.string(),
  keyId: z.string(),
  issuedAt: EpochMs,
  expiresAt: EpochMs,
  /** Hardware profiles the release may be installed on; empty means any. */
  hardware: z.array(z.string()),
  createdAt: EpochMs,
  /** Id of the API token that uploaded it. */
  uploadedBy: z.string().nullable(),
  /** Path of the file on the control plane (Range supported); devices use their credential. */
  url: z.string(),
});
export type ModelSummary = z.infer<typeof ModelSummary>;

export const ModelView = ModelSummary.extend({
  manifest: ModelManifest,
  /** The signed release exactly as verified at upload; devices check it again. */
  signed: SignedModelRelease,
});
export type ModelView = z.infer<typeof ModelView>;

export const ModelListQuery = z.object({
  name: z.string().max(63).optional(),
  limit: limitParam(500, 100),
  cursor: z.string().max(256).optional(),
});
export type ModelListQuery = z.infer<typeof ModelListQuery>;

export const ModelList = z.object({ items: z.array(ModelSummary), nextCursor: z.string().nullable() });
export type ModelList = z.infer<typeof ModelList>;

/** The path a model file is served at: `/api/v1/models/<name>/<version>/file`. */
export function modelFilePath(name: string, version: string): string {
  return `/api/v1/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}/file`;
}

/* ------------------------------------------- rollout spec ------------------------------------- */

/* What an operator asks for when starting a rollout. Defaults make a careful rollout:
 * shadow on a canary cohort, then the canary cohort live against a control cohort, then 1%, 10%,
 * 50% and 100% of the target, each stage gated on how the model behaves on the devices. */

export const StageSpec = z.object({
  name: z.string().min(1).max(32),
  /**
   * shadow:  the canary cohort runs the candidate beside the current model (no switch);
   * canary:  the canary cohort switches to the candidate, compared with the control cohort;
   * percent: at least `percent` % of the target runs the candidate (cumulative).
   */
  kind: z.enum(['shadow', 'canary', 'percent']),
  percent: z.number().min(0).max(100).optional(),
});
export type StageSpec = z.infer<typeof StageSpec>;

export const DEFAULT_STAGES: readonly StageSpec[] = [
  { name: 'shadow', kind: 'shadow' },
  { name: 'canary', kind: 'canary' },
  { name: '1%', kind: 'percent', percent: 1 },
  { name: '10%', kind: 'percent', percent: 10 },
  { name: '50%', kind: 'percent', percent: 50 },
  { name: '100%', kind: 'percent', percent: 100 },
];

export const EvidenceSpec = z.object({
  /** Devices of the stage that must be reporting before a verdict. */
  minDevices: z.int().min(1).default(3),
  /** Share of the stage's devices that must be reporting: silent devices are unknown, never success. */
  minReportingShare: z.number().min(0).max(1).default(0.8),
  /** Frames the stage's devices must have processed on the candidate within the window. */
  minFrames: z.int().min(0).default(500),
  /** Time a stage runs before any pass verdict. */
  soakS: z.number().min(0).default(120),
});
export type EvidenceSpec = z.infer<typeof EvidenceSpec>;

export const GateSpec = z.object({
  /** Seconds between gate evaluations (the evaluation window is the soak so far, at most windowS). */
  intervalS: z.number().min(0.05).default(30),
  /** Width of the metrics window compared between cohorts. */
  windowS: z.number().min(1).default(300),
  /** Consecutive failing evaluations before a stage fails (one bad window can be noise). */
  failingWindowsRequired: z.int().min(1).default(2),
  /** Canary inference error rate may exceed control's by at most this (absolute). */
  maxErrorRateIncrease: z.number().min(0).default(0.02),
  /** Share of the stage's devices that failed or reverted the update locally. */
  maxRevertShare: z.number().min(0).max(1).default(0.05),
  /** Canary p95 inference latency over control's. */
  maxLatencyRatio: z.number().min(1).default(1.5),
  /** Canary fps over control's. */
  minFpsRatio: z.number().min(0).max(1).default(0.8),
  /** |canary - control| / control of detections per 1000 frames. */
  maxDetectionChange: z.number().min(0).default(0.4),
  /** Population stability index of the confidence histograms. */
  maxPsi: z.number().min(0).default(0.25),
  /** Shadow stage: candidate against current, IoU-matched. */
  minShadowPrecision: z.number().min(0).max(1).default(0.6),
  minShadowRecall: z.number().min(0).max(1).default(0.6),
});
export type GateSpec = z.infer<typeof GateSpec>;

export const AbortSpec = z.object({
  /** Roll back when this share of devices that got the model failed the update... */
  maxFailureShare: z.number().min(0).max(1).default(0.2),
  /** ...once at least this many failed. */
  minFailures: z.int().min(1).default(3),
});
export type AbortSpec = z.infer<typeof AbortSpec>;

export const MaintenanceWindow = z.object({
  /** Days of week (0 = Sunday) in UTC; all when left out. */
  days: z.array(z.int().min(0).max(6)).max(7).optional(),
  /** `HH:MM` UTC; a window may wrap past midnight. */
  start: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/),
  end: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/),
});
export type MaintenanceWindow = z.infer<typeof MaintenanceWindow>;

export const CanarySpec = z.object({
  /** Devices per (hardware, site) combination in the canary cohort. */
  perGroup: z.int().min(1).default(1),
  /** Lower bound on the canary cohort size (when the target has enough devices). */
  minSize: z.int().min(1).default(3),
  /** Upper bound on the canary cohort size. */
  maxSize: z.int().min(1).default(50),
  /** Label naming the site; the hardware profile comes from reports or the `hardware` label. */
  siteLabel: z.string().default('site'),
});
export type CanarySpec = z.infer<typeof CanarySpec>;

export const RolloutSpec = z.object({
  /** `name@version` of a registered model. */
  modelId: z.string().min(3).max(128),
  /** Target devices: every enrolled device whose labels include all of these. */
  selector: z.object({ labels: z.record(z.string(), z.string()).default({}) }).prefault({}),
  stages: z
    .array(StageSpec)
    .min(1)
    .max(16)
    .default([...DEFAULT_STAGES]),
  canary: CanarySpec.prefault({}),
  evidence: EvidenceSpec.prefault({}),
  gates: GateSpec.prefault({}),
  abort: AbortSpec.prefault({}),
  maintenanceWindows: z.array(MaintenanceWindow).max(16).default([]),
  /** Each device's start is spread uniformly over this many seconds (from a stable hash). */
  jitterS: z.number().min(0).max(86_400).default(0),
});
export type RolloutSpec = z.infer<typeof RolloutSpec>;
export type RolloutSpecInput = z.input<typeof RolloutSpec>;

/* ---------------------------------------------- rollouts -------------------------------------- */

/** `POST /api/v1/rollouts`: a rollout spec; `dryRun: true` returns the plan and creates nothing. */
export const CreateRolloutRequest = RolloutSpec.extend({ dryRun: z.boolean().default(false) });
export type CreateRolloutRequest = z.infer<typeof CreateRolloutRequest>;

export const ROLLOUT_STATUSES = ['running', 'paused', 'completed', 'rolled_back', 'aborted'] as const;
export const RolloutStatus = z.enum(ROLLOUT_STATUSES);
export type RolloutStatus = z.infer<typeof RolloutStatus>;

/**
 * assigned:    desired state names the candidate; the device has not confirmed yet
 * active:      the device runs the candidate (or shadows it, for a shadow assignment)
 * failed:      the device reported a failed update or reverted locally
 * reverting:   desired state names the previous model again; not confirmed yet
 * rolled_back: the device is back on the previous model
 */
export const ASSIGNMENT_STATES = ['assigned', 'active', 'failed', 'reverting', 'rolled_back'] as const;
export const AssignmentState = z.enum(ASSIGNMENT_STATES);
export type AssignmentState = z.infer<typeof AssignmentState>;

export const GATE_VERDICTS = ['pass', 'fail', 'inconclusive', 'not-applicable'] as const;

/** One cohort's side of a gate: the per-device window values summarised. */
export const CohortMeasure = z.object({
  /** Median over the cohort's devices of their window value; null without data. */
  median: z.number().nullable(),
  /** Lower and upper bound of the interval around the median (per-device spread); null without data. */
  lo: z.number().nullable(),
  hi: z.number().nullable(),
  /** Devices that contributed a value. */
  devices: z.int(),
  /** Frames behind the value. */
  frames: z.number(),
});
export type CohortMeasure = z.infer<typeof CohortMeasure>;

export const GateResultView = z.object({
  gate: z.string(),
  /** not-applicable: the gate cannot be judged in this stage (the reason is in `detail`); never blocks. */
  verdict: z.enum(GATE_VERDICTS),
  canary: CohortMeasure.nullable(),
  control: CohortMeasure.nullable(),
  /** Canary compared with control: the estimate and its confidence interval. */
  comparison: z
    .object({
      kind: z.enum(['ratio', 'difference', 'value']),
      estimate: z.number().nullable(),
      lo: z.number().nullable(),
      hi: z.number().nullable(),
      /** Confidence level of [lo, hi], e.g. 0.95. */
      confidence: z.number(),
    })
    .nullable(),
  threshold: z.number(),
  detail: z.string(),
  /** One sentence: why this verdict (evidence short, interval past the threshold, ...). */
  decision: z.string(),
});
export type GateResultView = z.infer<typeof GateResultView>;

/** One gate evaluation with the numbers behind it. */
export const VerdictView = z.object({
  at: EpochMs,
  stage: z.string(),
  stageIndex: z.int(),
  verdict: z.enum(['pass', 'fail', 'inconclusive']),
  reason: z.string(),
  failingWindows: z.int(),
  /** The non-overlapping slice of device time this verdict judged; index counts from 0 per stage. */
  window: z.object({ index: z.int(), from: EpochMs, to: EpochMs }),
  /** True when this verdict was taken at the stage deadline (maxDurationS). */
  timedOut: z.boolean(),
  /** The onTimeout action taken, when timedOut. */
  action: z.enum(['pause', 'abort', 'promote']).nullable(),
  gates: z.array(GateResultView),
  evidence: z.object({
    stageDevices: z.int(),
    reporting: z.int(),
    frames: z.number(),
    soakedS: z.number(),
    failed: z.int(),
    controlDevices: z.int(),
    controlFrames: z.number(),
  }),
});
export type VerdictView = z.infer<typeof VerdictView>;

export const RolloutView = z.object({
  id: z.string(),
  modelId: z.string(),
  model: ModelRef,
  spec: RolloutSpec,
  status: RolloutStatus,
  stageIndex: z.int(),
  /** The current stage's name; null once past the last stage. */
  stage: z.string().nullable(),
  stageStartedAt: EpochMs,
  failingWindows: z.int(),
  lastEvaluatedAt: EpochMs.nullable(),
  reason: z.string().nullable(),
  cohorts: z.object({ canary: z.array(z.string()), control: z.array(z.string()), targetDevices: z.int() }),
  /** Assignments by state. */
  counts: z.partialRecord(AssignmentState, z.int()),
  lastVerdict: VerdictView.nullable(),
  createdAt: EpochMs,
  updatedAt: EpochMs,
  createdBy: z.string().nullable(),
});
export type RolloutView = z.infer<typeof RolloutView>;

export const RolloutListQuery = z.object({
  status: RolloutStatus.optional(),
  modelId: z.string().max(128).optional(),
  limit: limitParam(500, 100),
  cursor: z.string().max(256).optional(),
});
export type RolloutListQuery = z.infer<typeof RolloutListQuery>;

export const RolloutList = z.object({ items: z.array(RolloutView), nextCursor: z.string().nullable() });
export type RolloutList = z.infer<typeof RolloutList>;

/** What `dryRun: true` answers. */
export const RolloutDryRun = z.object({
  dryRun: z.literal(true),
  modelId: z.string(),
  targetDevices: z.int(),
  /** Devices the selector matched whose hardware profile the release does not allow (left out). */
  incompatibleDevices: z.int(),
  canary: z.array(z.string()),
  control: z.array(z.string()),
  stages: z.array(
    z.object({
      name: z.string(),
      kind: z.string(),
      devices: z.int(),
      newDevices: z.int(),
      /** Control devices the stage's gates compare against. */
      controlDevices: z.int(),
      maxDurationS: z.number(),
      /** Whether each gate can collect its minimum evidence within one window of this stage. */
      gates: z.array(z.object({ gate: z.string(), feasible: z.boolean(), reason: z.string() })),
    }),
  ),
  /** Everything that would make a stage stall or end at its deadline, in words. */
  warnings: z.array(z.string()),
  /** Fastest possible time to the last stage's verdict if every gate passes at its first chance. */
  earliestDurationS: z.number(),
  /** Bytes the devices will download (each device fetches the model once). */
  bytesToDownload: z.number(),
});
export type RolloutDryRun = z.infer<typeof RolloutDryRun>;

/** `POST /api/v1/rollouts/:id/{pause,resume,abort,promote}`: an optional reason for the record. */
export const RolloutActionRequest = z.strictObject({ reason: z.string().max(1024).optional() });
export type RolloutActionRequest = z.infer<typeof RolloutActionRequest>;

export const RolloutEventView = z.object({
  id: z.int(),
  rolloutId: z.string(),
  at: EpochMs,
  /** created, assigned, devices, verdict, advanced, completed, rolled-back, aborted, paused, ... */
  type: z.string(),
  stage: z.string().nullable(),
  data: JsonObject,
});
export type RolloutEventView = z.infer<typeof RolloutEventView>;

export const RolloutEventQuery = z.object({
  type: z.string().max(32).optional(),
  limit: limitParam(1000, 100),
  /** Opaque, from the previous page; events come oldest first. */
  cursor: z.string().max(256).optional(),
});
export type RolloutEventQuery = z.infer<typeof RolloutEventQuery>;

export const RolloutEventList = z.object({ items: z.array(RolloutEventView), nextCursor: z.string().nullable() });
export type RolloutEventList = z.infer<typeof RolloutEventList>;

export const RolloutDeviceView = z.object({
  deviceId: z.string(),
  mode: z.enum(['shadow', 'active']),
  stageIndex: z.int(),
  state: AssignmentState,
  /** Why the device failed or was reverted (a refusal reason such as bad_signature). */
  reason: z.string().nullable(),
  previous: ModelRef.nullable(),
  assignedAt: EpochMs,
  updatedAt: EpochMs,
  /** The device's model-update state machine as it last reported it. */
  update: z.object({ rolloutId: z.string().nullable(), state: z.string(), reason: z.string().optional() }).nullable(),
});
export type RolloutDeviceView = z.infer<typeof RolloutDeviceView>;

export const RolloutDeviceQuery = z.object({
  state: AssignmentState.optional(),
  limit: limitParam(1000, 200),
  cursor: z.string().max(256).optional(),
});
export type RolloutDeviceQuery = z.infer<typeof RolloutDeviceQuery>;

export const RolloutDeviceList = z.object({ items: z.array(RolloutDeviceView), nextCursor: z.string().nullable() });
export type RolloutDeviceList = z.infer<typeof RolloutDeviceList>;

/* ------------------------------------------ server, events ------------------------------------ */

export const HealthzResponse = z.object({
  status: z.literal('ok'),
  version: z.string(),
  uptimeS: z.number(),
  mqtt: z.object({ connectedClients: z.int() }),
  ingest: z.object({ queueDepth: z.int() }),
});
export type HealthzResponse = z.infer<typeof HealthzResponse>;

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
] as const;
export const ServerEventType = z.enum(SERVER_EVENT_TYPES);
export type ServerEventType = z.infer<typeof ServerEventType>;

/** The `data` of every server event: `{ type, at, data }`, `data` depending on the type. */
export const ServerEvent = z.object({ type: ServerEventType, at: EpochMs, data: JsonObject });
export type ServerEvent = z.infer<typeof ServerEvent>;
