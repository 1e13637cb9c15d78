import type { Reported, Status, Telemetry } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import {
  applyConnection,
  applyReported,
  applySilence,
  applyStatus,
  applyTelemetry,
  BOOT_RING_SIZE,
  initialLiveState,
} from './device-state.ts';

const T = 1_700_000_000_000;

function status(bootId: string, seq: number, state: 'online' | 'offline', reason: Status['reason']): Status {
  return { msgId: `${bootId}-${reason}-${seq}`, bootId, seq, ts: T, state, reason };
}
const birth = (bootId: string, seq = 1) => status(bootId, seq, 'online', 'birth');
const will = (bootId: string) => status(bootId, 0, 'offline', 'connection-lost');
const shutdown = (bootId: string, seq: number) => status(bootId, seq, 'offline', 'shutdown');

function telemetry(bootId: string, seq: number): Telemetry {
  return {
    msgId: `${bootId}-${seq}`,
    bootId,
    seq,
    ts: T,
    intervalS: 10,
    system: {
      cpu: { loadPct: 1, cores: 1 },
      memory: { usedBytes: 1, totalBytes: 2 },
      disk: { usedBytes: 1, totalBytes: 2 },
      temperatures: { cpuC: 40, gpuC: null, zones: {} },
      uptimeS: 1,
    },
  };
}

function reported(bootId: string, seq: number, desiredVersion: number): Reported {
  return {
    msgId: `${bootId}-${seq}`,
    bootId,
    seq,
    ts: T,
    agentVersion: '1.2.3',
    desiredVersion,
    telemetryIntervalS: 5,
    config: {},
    hardware: {},
  };
}

const quiet = { receivedAt: T, liveSession: false };

describe('status ordering', () => {
  it('goes online on a birth and offline on a will of the same boot', () => {
    const state = initialLiveState('cam-1', T);
    expect(applyStatus(state, birth('bootA'), quiet)).toEqual({ from: 'unknown', to: 'online' });
    expect(applyStatus(state, will('bootA'), quiet)).toEqual({ from: 'online', to: 'offline' });
    expect(state.bootIds).toEqual(['bootA']);
  });

  it('ignores a will of an older boot that arrives after the new boot birth', () => {
    const state = initialLiveState('cam-1', T);
    applyStatus(state, birth('bootA'), quiet);
    applyStatus(state, birth('bootB'), quiet);
    expect(applyStatus(state, will('bootA'), quiet)).toBeNull();
    expect(state.status).toBe('online');
    expect(state.bootIds).toEqual(['bootA', 'bootB']);
  });

  it('ignores a will while the device has a live session (a reconnect overtook it)', () => {
    const state = initialLiveState('cam-1', T);
    applyStatus(state, birth('bootA'), quiet);
    expect(applyStatus(state, will('bootA'), { receivedAt: T, liveSession: true })).toBeNull();
    expect(state.status).toBe('online');
  });

  it('ignores an older status within a boot and always applies the birth after a will', () => {
    const state = initialLiveState('cam-1', T);
    applyStatus(state, birth('bootA', 5), quiet);
    expect(applyStatus(state, shutdown('bootA', 3), quiet)).toBeNull();
    expect(applyStatus(state, will('bootA'), quiet)?.to).toBe('offline');
    expect(applyStatus(state, birth('bootA', 9), quiet)?.to).toBe('online');
    expect(state.statusSeq).toBe(9);
  });

  it('does not let a non-birth message of an unseen boot take over once a boot is known', () => {
    const state = initialLiveState('cam-1', T);
    applyStatus(state, birth('bootB'), quiet);
    expect(applyStatus(state, shutdown('bootZ', 50), quiet)).toBeNull();
    expect(state.status).toBe('online');
    expect(state.bootIds).toEqual(['bootB']);
  });

  it('keeps a bounded ring of boots', () => {
    const state = initialLiveState('cam-1', T);
    for (let i = 0; i < BOOT_RING_SIZE + 5; i++) applyStatus(state, birth(`boot${i}`), quiet);
    expect(state.bootIds).toHaveLength(BOOT_RING_SIZE);
    expect(state.bootIds.at(-1)).toBe(`boot${BOOT_RING_SIZE + 4}`);
  });

  it('records agent version, keepalive and interval from a birth', () => {
    const state = initialLiveState('cam-1', T);
    applyStatus(state, { ...birth('bootA'), agentVersion: '0.9.0', keepaliveS: 30, telemetryIntervalS: 5 }, quiet);
    expect(state).toMatchObject({ agentVersion: '0.9.0', keepaliveS: 30, telemetryIntervalS: 5 });
  });

  it('moves last seen on device messages but not on a will', () => {
    const state = initialLiveState('cam-1', T);
    applyStatus(state, birth('bootA'), { receivedAt: T + 10, liveSession: true });
    applyStatus(state, will('bootA'), { receivedAt: T + 99, liveSession: false });
    expect(state.lastSeen).toBe(T + 10);
  });
});

describe('status ordering with sessions (connection numbers)', () => {
  const inSession = (message: Status, session: number): Status => ({ ...message, session });

  it('ignores the will of connection n that arrives after the birth of connection n+1', () => {
    const state = initialLiveState('cam-1', T);
    applyStatus(state, inSession(birth('bootA', 1), 1), quiet);
    applyStatus(state, inSession(birth('bootA', 7), 2), quiet);
    expect(applyStatus(state, inSession(will('bootA'), 1), quiet)).toBeNull();
    expect(state.status).toBe('online');
    expect(state.statusSession).toBe(2);
  });

  it('applies the will after the birth of its own connection, and a late birth of that connection cannot undo it', () => {
    const state = initialLiveState('cam-1', T);
    applyStatus(state, inSession(birth('bootA', 4), 2), quiet);
    expect(applyStatus(state, inSession(will('bootA'), 2), quiet)).toEqual({ from: 'online', to: 'offline' });
    expect(applyStatus(state, inSession(birth('bootA', 4), 2), quiet)).toBeNull();
    expect(state.status).toBe('offline');
    expect(applyStatus(state, inSession(birth('bootA', 9), 3), quiet)).toEqual({ from: 'offline', to: 'online' });
  });

  it('orders births and shutdowns of one connection by seq', () => {
    const state = initialLiveState('cam-1', T);
    applyStatus(state, inSession(birth('bootA', 5), 1), quiet);
    expect(applyStatus(state, inSession(shutdown('bootA', 10), 1), quiet)?.to).toBe('offline');
    expect(applyStatus(state, inSession(birth('bootA', 7), 1), quiet)).toBeNull();
    expect(state.status).toBe('offline');
  });
});

describe('latest telemetry and reported state', () => {
  it('only moves forward within a boot', () => {
    const state = initialLiveState('cam-1', T);
    applyStatus(state, birth('bootA'), quiet);
    expect(applyTelemetry(state, telemetry('bootA', 5), T)).toBe(true);
    expect(applyTelemetry(state, telemetry('bootA', 3), T)).toBe(false);
    expect(applyTelemetry(state, telemetry('bootA', 5), T)).toBe(false);
    expect(state.telemetrySeq).toBe(5);
    expect(applyReported(state, reported('bootA', 8, 2), T)).toBe(true);
    expect(applyReported(state, reported('bootA', 7, 1), T)).toBe(false);
    expect(state).toMatchObject({ reportedSeq: 8, agentVersion: '1.2.3', telemetryIntervalS: 5 });
  });

  it('takes a newer boot and never goes back to an older one', () => {
    const state = initialLiveState('cam-1', T);
    applyStatus(state, birth('bootA'), quiet);
    applyTelemetry(state, telemetry('bootA', 100), T);
    applyStatus(state, birth('bootB'), quiet);
    expect(applyTelemetry(state, telemetry('bootB', 2), T)).toBe(true);
    expect(applyTelemetry(state, telemetry('bootA', 101), T)).toBe(false);
    expect(state.telemetryBootId).toBe('bootB');
  });

  it('accepts the first boot it ever sees even without a birth', () => {
    const state = initialLiveState('cam-1', T);
    expect(applyTelemetry(state, telemetry('bootA', 3), T)).toBe(true);
    expect(state.bootIds).toEqual(['bootA']);
  });
});

describe('connection events and silence', () => {
  it('sets online on connect and offline on disconnect or silence', () => {
    const state = initialLiveState('cam-1', T);
    expect(applyConnection(state, true, T + 1)).toEqual({ from: 'unknown', to: 'online' });
    expect(state.lastSeen).toBe(T + 1);
    expect(applyConnection(state, false, T + 2)).toEqual({ from: 'online', to: 'offline' });
    expect(applyConnection(state, false, T + 3)).toBeNull();
    applyConnection(state, true, T + 4);
    expect(applySilence(state, T + 5)).toEqual({ from: 'online', to: 'offline' });
    expect(state.statusChangedAt).toBe(T + 5);
  });
});
