import type { DeviceStatus, HealthState } from '@edgeloop/protocol';
import type { DeviceLiveState } from './repositories.ts';

/*
 * The live-state columns of a device row, as the ingest commits read them back to reconcile with
 * other writers (LiveReconcile): both dialects pick the same keys from their twin `devices` table.
 */

/** Every live-state column (what a device row holds of its DeviceLiveState). */
export const LIVE_KEYS = [
  'id',
  'enrolledAt',
  'status',
  'statusChangedAt',
  'statusBootId',
  'statusSeq',
  'statusSession',
  'bootIds',
  'lastSeen',
  'agentVersion',
  'keepaliveS',
  'telemetryIntervalS',
  'health',
  'healthReasons',
  'telemetryBootId',
  'telemetrySeq',
  'telemetryAt',
  'reportedBootId',
  'reportedSeq',
  'reportedAt',
] as const satisfies readonly (keyof DeviceLiveState)[];

type LiveKey = (typeof LIVE_KEYS)[number];

/** The live-state columns of a dialect's devices table, for a select(). */
export function liveColumnsOf<T extends Record<LiveKey, unknown>>(table: T): Pick<T, LiveKey> {
  const picked = {} as Pick<T, LiveKey>;
  for (const key of LIVE_KEYS) picked[key] = table[key];
  return picked;
}

/** A selected live-state row as DeviceLiveState (status and health are text columns). */
export function liveStateOf(row: Omit<DeviceLiveState, 'status' | 'health'> & { status: string; health: string }) {
  return { ...row, status: row.status as DeviceStatus, health: row.health as HealthState } satisfies DeviceLiveState;
}
