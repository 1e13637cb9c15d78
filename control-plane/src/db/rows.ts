import type { DeviceStatus, HealthState, Labels } from '@edgeloop/protocol';
import type { DeviceRecord, LoadedLiveState } from './repositories.ts';
import type { devices } from './schema.ts';

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
  };
}
