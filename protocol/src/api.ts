import { z } from 'zod';
import { DEVICE_ID_PATTERN } from './device-id.ts';
import { EpochMs } from './messages.ts';

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
  internal: 500,
} as const;
export type ApiErrorCode = keyof typeof API_ERROR_CODES;

export const ApiError = z.object({ error: z.object({ code: z.string(), message: z.string() }) });
export type ApiError = z.infer<typeof ApiError>;
