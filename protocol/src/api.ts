import { z } from 'zod';
import { DEVICE_ID_PATTERN } from './device-id.ts';
import { JsonObject } from './json-value.ts';
import { CommandName, Desired, EpochMs, Reply, Reported, Telemetry } from './messages.ts';

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

export const FleetSummary = z.object({
  total: z.int(),
  online: z.int(),
  offline: z.int(),
  unknown: z.int(),
  healthy: z.int(),
  degraded: z.int(),
  byHealthReason: z.record(z.string(), z.int()),
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
] as const;
export const ServerEventType = z.enum(SERVER_EVENT_TYPES);
export type ServerEventType = z.infer<typeof ServerEventType>;

/** The `data` of every server event: `{ type, at, data }`, `data` depending on the type. */
export const ServerEvent = z.object({ type: ServerEventType, at: EpochMs, data: JsonObject });
export type ServerEvent = z.infer<typeof ServerEvent>;
