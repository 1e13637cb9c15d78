import type { Reported, Status, Telemetry } from '@edgeloop/protocol';
import type { DeviceLiveState } from './db/repositories.ts';

/*
 * How one device's live state follows its messages: pure functions over DeviceLiveState.
 *
 * ORDERING RULE (status, latest telemetry, reported state)
 *  1. Boots are ordered by first sight. `bootIds` is a short ring of the boots seen, oldest
 *     first; its last element is the current boot. bootIds are random, so nothing else orders
 *     them.
 *  2. Only a birth (status online, reason birth: the first thing an agent publishes on every
 *     connect) or a will with no live session of the device (see 5) makes an unseen boot
 *     current. Any other message from an unseen boot makes it current only when no boot is
 *     known yet. Otherwise messages of unseen boots are treated like those of older boots. This
 *     keeps an outbox replay of a previous boot, arriving after the new boot's birth, from
 *     rolling the device back. Telemetry and reported state of a boot stored before its birth
 *     (with replicas, the birth can land last) are applied when a birth or will makes the boot
 *     current: the commit looks up that boot's newest stored ones and they go through these
 *     functions again (apply-batch.ts applyStoredOfBoots, BootCatchUp in db/repositories.ts).
 *  3. A message from an older boot (in the ring, not last) never changes status, latest
 *     telemetry or reported state. It is still stored, and still counts as a sign of life.
 *  4. Within the current boot, telemetry and reported state replace the latest only with a
 *     greater seq.
 *  5. Status within the current boot is ordered by (session, seq), where session is the
 *     connection number the agent puts in every Status and a will (seq 0, published by the
 *     broker outside the sequence) sorts after everything else of its session. So the will of
 *     connection n arriving after the birth of connection n+1 is ignored, and a birth never
 *     undoes the will of its own connection. A status without a session (older agents) falls
 *     back to seq for births and shutdowns, and a will then applies whenever it comes from the
 *     current boot. In both cases a will that arrives while the device has a live session on
 *     the broker (it reconnected first) is ignored.
 *  6. The embedded broker's connect / disconnect events set online / offline directly; they
 *     travel through the same ingest queue as messages, so they apply in arrival order.
 *  7. The sweeper sets offline a device that is online, has no live session and has been silent
 *     for max(1.5 x keepalive, 3 x telemetry interval) + grace.
 * last_seen moves on every accepted device message and on connect, never on a will (a will is
 * the broker saying the device is gone).
 *
 * SEVERAL WRITERS. These rules depend on the state they start from (the ring of boots above all),
 * so with replicas sharing one database they must start from the stored row, not from a
 * replica's memory: each commit locks its devices' rows and, where another writer changed one,
 * applies the batch's messages again on it (apply-batch.ts refoldOnto, LiveReconcile in
 * db/repositories.ts). These functions stay the one statement of the rules.
 */

/** statusSeq recorded for an applied will: it sorts after every birth / shutdown of its session. */
export const WILL_SEQ = Number.MAX_SAFE_INTEGER;

export const BOOT_RING_SIZE = 8;

export type BootRank = 'current' | 'older' | 'unseen';

export function rankBoot(state: DeviceLiveState, bootId: string): BootRank {
  const ring = state.bootIds;
  if (ring.length > 0 && ring[ring.length - 1] === bootId) return 'current';
  return ring.includes(bootId) ? 'older' : 'unseen';
}

function promoteBoot(state: DeviceLiveState, bootId: string): void {
  const ring = state.bootIds.filter((id) => id !== bootId);
  ring.push(bootId);
  state.bootIds = ring.slice(-BOOT_RING_SIZE);
}

/** Whether a message of this boot may change the latest state, promoting its boot when rule 2 allows. */
function admitBoot(state: DeviceLiveState, bootId: string, mayPromote: boolean): boolean {
  const rank = rankBoot(state, bootId);
  if (rank === 'current') return true;
  if (rank === 'older') return false;
  if (mayPromote || state.bootIds.length === 0) {
    promoteBoot(state, bootId);
    return true;
  }
  return false;
}

export function isWill(status: Status): boolean {
  return status.state === 'offline' && status.reason === 'connection-lost';
}

export type StatusChange = { readonly from: DeviceLiveState['status']; readonly to: DeviceLiveState['status'] };

function setStatus(state: DeviceLiveState, to: DeviceLiveState['status'], at: number): StatusChange | null {
  if (state.status === to) return null;
  const change = { from: state.status, to };
  state.status = to;
  state.statusChangedAt = at;
  return change;
}

/** Applies a status message (rules 1-5). Mutates `state`; returns the status change, if any. */
export function applyStatus(
  state: DeviceLiveState,
  status: Status,
  context: { readonly receivedAt: number; readonly liveSession: boolean },
): StatusChange | null {
  const will = isWill(status);
  if (!will) state.lastSeen = Math.max(state.lastSeen ?? 0, context.receivedAt);
  if (will && context.liveSession) return null;
  const birth = status.state === 'online' && status.reason === 'birth';
  if (!admitBoot(state, status.bootId, birth || will)) return null;
  const sameBoot = state.statusBootId === status.bootId;
  const session = status.session ?? null;
  if (sameBoot && session !== null && state.statusSession !== null) {
    // (session, seq) with a will last in its session.
    const seq = will ? WILL_SEQ : status.seq;
    const appliedSeq = state.statusSeq ?? 0;
    if (session < state.statusSession || (session === state.statusSession && seq <= appliedSeq)) return null;
  } else if (sameBoot && !will && state.statusSeq !== null && status.seq <= state.statusSeq) {
    return null;
  }
  if (will) {
    // Without a session a will cannot be placed in the sequence: it leaves statusSeq alone, so
    // the next birth of the boot applies.
    if (session !== null) {
      state.statusSession = session;
      state.statusSeq = WILL_SEQ;
    } else if (!sameBoot) {
      state.statusSession = null;
      state.statusSeq = null;
    }
    state.statusBootId = status.bootId;
    return setStatus(state, 'offline', context.receivedAt);
  }
  state.statusBootId = status.bootId;
  state.statusSeq = status.seq;
  state.statusSession = session;
  if (status.agentVersion !== undefined) state.agentVersion = status.agentVersion;
  if (status.keepaliveS !== undefined) state.keepaliveS = status.keepaliveS;
  if (status.telemetryIntervalS !== undefined) state.telemetryIntervalS = status.telemetryIntervalS;
  return setStatus(state, status.state, context.receivedAt);
}

/** Applies telemetry (rules 1-4). Returns true when it became the latest telemetry. */
export function applyTelemetry(state: DeviceLiveState, telemetry: Telemetry, receivedAt: number): boolean {
  state.lastSeen = Math.max(state.lastSeen ?? 0, receivedAt);
  if (!admitBoot(state, telemetry.bootId, false)) return false;
  if (
    state.telemetryBootId === telemetry.bootId &&
    state.telemetrySeq !== null &&
    telemetry.seq <= state.telemetrySeq
  ) {
    return false;
  }
  state.telemetryBootId = telemetry.bootId;
  state.telemetrySeq = telemetry.seq;
  state.telemetryAt = receivedAt;
  state.telemetryIntervalS = telemetry.intervalS;
  return true;
}

/** Applies reported state (rules 1-4). Returns true when it became the latest reported state. */
export function applyReported(state: DeviceLiveState, reported: Reported, receivedAt: number): boolean {
  state.lastSeen = Math.max(state.lastSeen ?? 0, receivedAt);
  if (!admitBoot(state, reported.bootId, false)) return false;
  if (state.reportedBootId === reported.bootId && state.reportedSeq !== null && reported.seq <= state.reportedSeq) {
    return false;
  }
  state.reportedBootId = reported.bootId;
  state.reportedSeq = reported.seq;
  state.reportedAt = receivedAt;
  state.agentVersion = reported.agentVersion;
  state.telemetryIntervalS = reported.telemetryIntervalS;
  return true;
}

/** Any other accepted message (events, replies): a sign of life only. */
export function applySignOfLife(state: DeviceLiveState, receivedAt: number): void {
  state.lastSeen = Math.max(state.lastSeen ?? 0, receivedAt);
}

/** Rule 6: the broker saw the device connect or disconnect. */
export function applyConnection(state: DeviceLiveState, connected: boolean, at: number): StatusChange | null {
  if (connected) {
    state.lastSeen = Math.max(state.lastSeen ?? 0, at);
    return setStatus(state, 'online', at);
  }
  return state.status === 'online' ? setStatus(state, 'offline', at) : null;
}

/** Rule 7: silence. */
export function applySilence(state: DeviceLiveState, at: number): StatusChange | null {
  return state.status === 'online' ? setStatus(state, 'offline', at) : null;
}

/** A fresh live state for a newly enrolled device. */
export function initialLiveState(id: string, enrolledAt: number): DeviceLiveState {
  return {
    id,
    enrolledAt,
    status: 'unknown',
    statusChangedAt: null,
    statusBootId: null,
    statusSeq: null,
    statusSession: null,
    bootIds: [],
    lastSeen: null,
    agentVersion: null,
    keepaliveS: null,
    telemetryIntervalS: null,
    health: 'unknown',
    healthReasons: [],
    telemetryBootId: null,
    telemetrySeq: null,
    telemetryAt: null,
    reportedBootId: null,
    reportedSeq: null,
    reportedAt: null,
  };
}
