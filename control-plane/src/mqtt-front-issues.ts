import type { ConnectionHealthReason } from './health.ts';

/*
 * What the MQTT front learns about an enrolled device that its messages cannot say, as health
 * reasons:
 *
 *   auth-failing        its credential failed `authFailingAfter` times in a row (no login in
 *                       between), the last within `windowMs`: a device with a stale or wrong secret,
 *                       or someone guessing one. A login clears it.
 *   client-id-flapping  two sessions fight over its id: `flappingAfter` takeovers (a login while
 *                       the id has a live session) within `windowMs`. From then on, while the
 *                       conflict lasts, a login that would take over a live session is refused
 *                       (CONNACK 2, identifier rejected) instead of kicking it, so the pair stops
 *                       kicking each other in a reconnect storm; the session that holds the id keeps
 *                       it. It clears `windowMs` after the last conflict.
 *
 * Only enrolled ids are counted (the broker asks only after it found the device), and the map holds
 * at most `maxDevices` entries (least recently touched goes first), so unknown ids cannot grow it.
 * Pure apart from the injected clock.
 */

export type DeviceIssuesOptions = {
  readonly now: () => number;
  readonly authFailingAfter?: number;
  readonly flappingAfter?: number;
  readonly windowMs?: number;
  readonly maxDevices?: number;
};

export type TakeoverVerdict = 'allow' | 'refuse';

export type DeviceIssues = {
  /** An enrolled device's credential failed. */
  noteAuthFailure(deviceId: string): void;
  /**
   * A device with a good credential logs in; `takesOver` when its id has a live session. Says
   * whether the login may go ahead ('refuse' while the id is flapping and a session holds it).
   */
  noteLogin(deviceId: string, takesOver: boolean): TakeoverVerdict;
  /** The device's current reasons, in the order of HEALTH_REASONS. */
  reasons(deviceId: string): readonly ConnectionHealthReason[];
  readonly size: number;
};

type DeviceRecord = {
  failures: number;
  lastFailureAt: number;
  takeovers: number[];
  flappingUntil: number;
};

const NONE: readonly ConnectionHealthReason[] = Object.freeze([]);

export function createDeviceIssues(options: DeviceIssuesOptions): DeviceIssues {
  const { now } = options;
  const authFailingAfter = options.authFailingAfter ?? 3;
  const flappingAfter = options.flappingAfter ?? 3;
  const windowMs = options.windowMs ?? 5 * 60_000;
  const maxDevices = options.maxDevices ?? 50_000;
  const records = new Map<string, DeviceRecord>();

  const touch = (deviceId: string): DeviceRecord => {
    let record = records.get(deviceId);
    if (record) {
      records.delete(deviceId);
    } else {
      record = { failures: 0, lastFailureAt: 0, takeovers: [], flappingUntil: 0 };
      if (records.size >= maxDevices) {
        const oldest = records.keys().next();
        if (!oldest.done) records.delete(oldest.value);
      }
    }
    records.set(deviceId, record);
    return record;
  };

  const settle = (deviceId: string, record: DeviceRecord, at: number) => {
    if (record.failures > 0 && at - record.lastFailureAt > windowMs) record.failures = 0;
    record.takeovers = record.takeovers.filter((t) => at - t <= windowMs);
    if (record.failures === 0 && record.takeovers.length === 0 && record.flappingUntil <= at) {
      records.delete(deviceId);
    }
  };

  return {
    noteAuthFailure(deviceId) {
      const record = touch(deviceId);
      const at = now();
      if (at - record.lastFailureAt > windowMs) record.failures = 0;
      record.failures += 1;
      record.lastFailureAt = at;
    },

    noteLogin(deviceId, takesOver) {
      const at = now();
      if (!takesOver) {
        const record = records.get(deviceId);
        if (record) {
          record.failures = 0;
          settle(deviceId, record, at);
        }
        return 'allow';
      }
      const record = touch(deviceId);
      record.failures = 0;
      const wasFlapping = record.flappingUntil > at;
      record.takeovers = record.takeovers.filter((t) => at - t <= windowMs);
      record.takeovers.push(at);
      if (record.takeovers.length > flappingAfter) record.takeovers.shift();
      if (wasFlapping) {
        record.flappingUntil = at + windowMs;
        return 'refuse';
      }
      // The takeover that reaches the threshold still goes ahead (the newest login may be the
      // device itself coming back); the ones after it, while the conflict lasts, do not.
      if (record.takeovers.length >= flappingAfter) record.flappingUntil = at + windowMs;
      return 'allow';
    },

    reasons(deviceId) {
      const record = records.get(deviceId);
      if (!record) return NONE;
      const at = now();
      settle(deviceId, record, at);
      const reasons: ConnectionHealthReason[] = [];
      if (record.failures >= authFailingAfter) reasons.push('auth-failing');
      if (record.flappingUntil > at) reasons.push('client-id-flapping');
      return reasons.length === 0 ? NONE : reasons;
    },

    get size() {
      return records.size;
    },
  };
}
