import type { DeviceStatus, HealthState, Labels } from '@edgeloop/protocol';
import type {
  AssignmentRecord,
  DeviceRecord,
  LoadedLiveState,
  ModelRecord,
  RolloutEventRecord,
  RolloutRecord,
} from './repositories.ts';
import type { devices } from './sqlite/schema.ts';

/*
 * Row <-> record mapping shared by the SQLite and PostgreSQL repositories (their device rows
 * have the same shape: the PostgreSQL schema is a twin of the SQLite one).
 */

export type DeviceRow = typeof devices.$inferSelect;
type DeviceInsert = typeof devices.$inferInsert;

export function toRecord(row: DeviceRow): DeviceRecord {
  return {
    id: row.id,
    labels: row.labels,
    enrolledAt: row.enrolledAt,
    status: row.status as DeviceStatus,
    statusChangedAt: row.statusChangedAt,
    health: row.health as HealthState,
    healthReasons: row.healthReasons,
    lastSeen: row.lastSeen,
    bootId: row.bootId,
    agentVersion: row.agentVersion,
    keepaliveS: row.keepaliveS,
    telemetryIntervalS: row.telemetryIntervalS,
    desiredVersion: row.desiredVersion,
  };
}

export function toLiveState(row: DeviceRow): LoadedLiveState {
  return {
    id: row.id,
    enrolledAt: row.enrolledAt,
    status: row.status as DeviceStatus,
    statusChangedAt: row.statusChangedAt,
    statusBootId: row.statusBootId,
    statusSeq: row.statusSeq,
    statusSession: row.statusSession,
    bootIds: row.bootIds,
    lastSeen: row.lastSeen,
    agentVersion: row.agentVersion,
    keepaliveS: row.keepaliveS,
    telemetryIntervalS: row.telemetryIntervalS,
    health: row.health as HealthState,
    healthReasons: row.healthReasons,
    telemetryBootId: row.telemetryBootId,
    telemetrySeq: row.telemetrySeq,
    telemetryAt: row.telemetryAt,
    reportedBootId: row.reportedBootId,
    reportedSeq: row.reportedSeq,
    reportedAt: row.reportedAt,
    telemetry: row.telemetry ?? null,
  };
}

/** A fresh device row: credentials and labels, every live field reset. */
export function freshRow(id: string, labels: Labels, secretHash: string, now: number): DeviceInsert {
  return {
    id,
    labels,
    secretHash,
    enrolledAt: now,
    revokedAt: null,
    status: 'unknown',
    statusChangedAt: null,
    statusBootId: null,
    statusSeq: null,
    statusSession: null,
    bootIds: [],
    bootId: null,
    lastSeen: null,
    agentVersion: null,
    keepaliveS: null,
    telemetryIntervalS: null,
    health: 'unknown',
    healthReasons: [],
    telemetry: null,
    telemetryBootId: null,
    telemetrySeq: null,
    telemetryAt: null,
    reported: null,
    reportedBootId: null,
    reportedSeq: null,
    reportedAt: null,
    desired: null,
    desiredVersion: 0,
    // A re-enrollment forgets a pending rotation of the revoked credential.
    secretHashNext: null,
    secretNextDeadline: null,
    // A re-enrollment starts from the password; enroll() sets a certificate identity after this.
    authMethod: 'secret',
    certFingerprint: null,
  };
}

/* Model and rollout rows: the same columns in both dialects (JSON as text in SQLite, jsonb in
 * PostgreSQL, both read back as values), so one mapping serves both. */

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Drops columns a record does not have (drizzle rows may carry more in the future). */
export function toModelRecord(row: Mutable<ModelRecord>): ModelRecord {
  return {
    id: row.id,
    name: row.name,
    version: row.version,
    sha256: row.sha256,
    sizeBytes: row.sizeBytes,
    releaseCounter: row.releaseCounter,
    adapter: row.adapter,
    keyId: row.keyId,
    issuedAt: row.issuedAt,
    expiresAt: row.expiresAt,
    signed: row.signed,
    manifest: row.manifest,
    createdAt: row.createdAt,
    uploadedBy: row.uploadedBy,
  };
}

export function toRolloutRecord(row: Mutable<RolloutRecord>): RolloutRecord {
  return {
    id: row.id,
    modelId: row.modelId,
    spec: row.spec,
    status: row.status,
    stageIndex: row.stageIndex,
    stageStartedAt: row.stageStartedAt,
    failingWindows: row.failingWindows,
    lastEvaluatedAt: row.lastEvaluatedAt,
    cohorts: row.cohorts,
    reason: row.reason,
    version: row.version,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    createdBy: row.createdBy,
  };
}

export function toAssignmentRecord(row: Mutable<AssignmentRecord>): AssignmentRecord {
  return {
    rolloutId: row.rolloutId,
    deviceId: row.deviceId,
    mode: row.mode,
    stageIndex: row.stageIndex,
    state: row.state,
    previous: row.previous ?? null,
    assignedAt: row.assignedAt,
    updatedAt: row.updatedAt,
    reason: row.reason,
  };
}

export function toRolloutEventRecord(row: {
  id: number;
  rolloutId: string;
  at: number;
  type: string;
  stage: string | null;
  data: unknown;
}): RolloutEventRecord {
  return {
    id: row.id,
    rolloutId: row.rolloutId,
    at: row.at,
    type: row.type,
    stage: row.stage,
    data: (row.data ?? {}) as Record<string, unknown>,
  };
}

/** Assignment states in which a device still has (or is about to get) the candidate. */
export const HOLDING_STATES: readonly string[] = ['assigned', 'active'];
/** Assignment states a rolled-back rollout still has to bring home. */
export const UNCONVERGED_STATES: readonly string[] = ['assigned', 'active', 'failed', 'reverting'];

/** Splits ids into chunks a single IN (...) list can take on every dialect. */
export function chunk<T>(items: readonly T[], size = 1000): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}
