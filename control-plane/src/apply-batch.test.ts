import { type DeviceToCloudChannel, decode, encode, type MessageInputOf } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import {
  applyBatch,
  applyStoredOfBoots,
  type FoldEntry,
  type FoldThresholds,
  type LiveDevice,
  type LiveView,
  promotedBoots,
  refoldOnto,
  sameLiveState,
  staleDevices,
} from './apply-batch.ts';
import { HealthConfig } from './config.ts';
import type { LoadedLiveState, NewDeadLetter } from './db/repositories.ts';
import { initialLiveState } from './device-state.ts';

/*
 * The ingest fold on plain data: no database, no queue, no clock. What goes in is a fleet's live
 * state and decoded entries; what comes out is the writes, rows, events and announcements.
 */

const T = Date.UTC(2026, 11, 4, 12);
const BOOT = 'bootaaaa1';
const thresholds: FoldThresholds = { health: HealthConfig.parse({}), clockSkewMaxMs: 86_400_000, sweepLimit: 100 };
const SYSTEM = {
  cpu: { loadPct: 10, cores: 4 },
  memory: { usedBytes: 1e9, totalBytes: 8e9 },
  disk: { usedBytes: 5e9, totalBytes: 64e9 },
  temperatures: { cpuC: 50, gpuC: null },
  uptimeS: 10,
};

function view(...devices: LiveDevice[]): LiveView {
  return {
    devices: new Map(devices.map((device) => [device.state.id, device])),
    isConnected: () => false,
    connectionReasons: () => [],
  };
}

const fresh = (id: string): LiveDevice => ({ state: initialLiveState(id, T - 60_000), digest: null });

function message<C extends DeviceToCloudChannel>(
  deviceId: string,
  channel: C,
  input: Omit<MessageInputOf<C>, 'msgId' | 'bootId' | 'ts'> & { seq: number },
  options: { receivedAt?: number; ts?: number; resent?: boolean } = {},
): FoldEntry {
  const body = encode(channel, {
    msgId: `${BOOT}-${channel}-${input.seq}`,
    bootId: BOOT,
    ts: options.ts ?? T,
    ...input,
  } as MessageInputOf<C>);
  const decoded = decode(channel, body);
  if (!decoded.ok) throw new Error(decoded.error.message);
  return {
    kind: 'message',
    deviceId,
    channel,
    receivedAt: options.receivedAt ?? T,
    liveSession: true,
    decoded: { ok: true, message: decoded.value, body },
    resent: options.resent ?? false,
  };
}

const birth = (id: string, seq: number, session = 1) =>
  message(id, 'status', { seq, state: 'online', reason: 'birth', session });
const telemetry = (id: string, seq: number, options?: { receivedAt?: number; ts?: number; resent?: boolean }) =>
  message(id, 'telemetry', { seq, intervalS: 10, system: SYSTEM }, options);

describe('applyBatch', () => {
  it('folds a birth and telemetry into a new state, rows, events and announcements, leaving its input as it was', () => {
    const before = fresh('cam-1');
    const snapshot = structuredClone(before);
    const result = applyBatch(view(before), [birth('cam-1', 1), telemetry('cam-1', 2)], T, thresholds);

    expect(before).toEqual(snapshot);
    const next = result.next.get('cam-1');
    expect(next?.state).toMatchObject({ status: 'online', bootIds: [BOOT], telemetrySeq: 2, health: 'healthy' });
    expect(next?.digest).not.toBeNull();
    expect(result.writes).toHaveLength(1);
    expect(result.writes[0]?.telemetry).toMatchObject({ seq: 2, intervalS: 10 });
    expect(result.messages.map((row) => [row.channel, row.seq, row.clockSkew])).toEqual([
      ['status', 1, false],
      ['telemetry', 2, false],
    ]);
    expect(result.stored.map((stored) => stored.announce?.kind ?? null)).toEqual([null, 'telemetry']);
    expect(result.events.map((event) => event.type)).toEqual(['device.online', 'device.health']);
  });

  it('keeps the newest telemetry when an older seq follows, and still stores the older message', () => {
    const result = applyBatch(
      view(fresh('cam-1')),
      [birth('cam-1', 1), telemetry('cam-1', 5), telemetry('cam-1', 3)],
      T,
      thresholds,
    );
    expect(result.next.get('cam-1')?.state.telemetrySeq).toBe(5);
    expect(result.writes[0]?.telemetry).toMatchObject({ seq: 5 });
    expect(result.messages).toHaveLength(3);
  });

  it('turns a payload that failed validation into a dead letter with its reason, and touches no device', () => {
    const letter: NewDeadLetter = {
      receivedAt: T,
      deviceId: 'cam-1',
      topic: 'fleet/v1/devices/cam-1/telemetry',
      reason: 'invalid_json',
      detail: 'x',
      payloadSize: 1,
      payloadExcerpt: 'eA==',
    };
    const result = applyBatch(
      view(fresh('cam-1')),
      [
        {
          kind: 'message',
          deviceId: 'cam-1',
          channel: 'telemetry',
          receivedAt: T,
          liveSession: true,
          decoded: { ok: false, letter },
          resent: false,
        },
      ],
      T,
      thresholds,
    );
    expect(result.deadLetters).toEqual([letter]);
    expect(result.rejected).toEqual(['invalid_json']);
    expect(result.writes).toEqual([]);
    expect(result.messages).toEqual([]);
  });

  it('counts a resend as a sign of life only, and a message of a device it does not know as unknown', () => {
    const result = applyBatch(
      view(fresh('cam-1')),
      [telemetry('cam-1', 2, { resent: true, receivedAt: T + 5 }), telemetry('cam-9', 1)],
      T,
      thresholds,
    );
    expect(result.resent).toEqual(['telemetry']);
    expect(result.messages).toEqual([]);
    expect(result.next.get('cam-1')?.state).toMatchObject({ lastSeen: T + 5, telemetrySeq: null });
    expect(result.unknownDevice).toBe(1);
  });

  it('marks a row whose device clock is beyond the allowed skew', () => {
    const result = applyBatch(view(fresh('cam-1')), [telemetry('cam-1', 1, { ts: T + 2 * 86_400_000 })], T, thresholds);
    expect(result.messages[0]?.clockSkew).toBe(true);
  });

  it('sets a silent online device offline on a sweep, at most sweepLimit devices per sweep', () => {
    const silent = (id: string): LiveDevice => ({
      state: { ...initialLiveState(id, T - 3_600_000), status: 'online', lastSeen: T - 3_600_000 },
      digest: null,
    });
    const result = applyBatch(view(silent('cam-1'), silent('cam-2'), silent('cam-3')), [{ kind: 'sweep' }], T, {
      ...thresholds,
      sweepLimit: 2,
    });
    expect([...result.next.keys()]).toEqual(['cam-1', 'cam-2']);
    expect(result.next.get('cam-1')?.state.status).toBe('offline');
    expect(result.events).toContainEqual({
      type: 'device.offline',
      data: { deviceId: 'cam-1', bootId: null, cause: 'silence' },
    });
  });
});

describe('reconciling with another writer', () => {
  const loaded = (device: LiveDevice): LoadedLiveState => ({ ...device.state, telemetry: null });

  it('finds the rows that differ from the states the batch was folded from', () => {
    const a = fresh('cam-1');
    const b = fresh('cam-2');
    const changed = { ...b.state, bootIds: ['bootother1'] };
    expect(sameLiveState(a.state, { ...a.state, bootIds: [] })).toBe(true);
    expect(staleDevices(view(a, b), [a.state, changed])).toEqual(['cam-2']);
  });

  it('folds the batch again on a stale row: its writes and events replace those folded on the old state', () => {
    // This writer believes cam-1 was never seen; another writer stored telemetry seq 5 of the boot.
    const believed = fresh('cam-1');
    const other = fresh('cam-2');
    const entries = [birth('cam-1', 1), telemetry('cam-1', 3), telemetry('cam-2', 7)];
    const live = view(believed, other);
    const first = applyBatch(live, entries, T, thresholds);
    expect(first.next.get('cam-1')?.state.telemetrySeq).toBe(3);

    const storedRow = applyBatch(
      view(believed),
      [message('cam-1', 'status', { seq: 4, state: 'online', reason: 'birth', session: 2 }), telemetry('cam-1', 5)],
      T,
      thresholds,
    ).next.get('cam-1') as LiveDevice;
    const result = refoldOnto(first, live, [loaded(storedRow)], entries, T, thresholds);

    expect(result.next.get('cam-1')?.state).toMatchObject({ telemetrySeq: 5, statusSession: 2, statusSeq: 4 });
    expect(result.next.get('cam-2')).toBe(first.next.get('cam-2'));
    // The stale device's write is the refolded one; no telemetry document (seq 3 is older than 5).
    const write = result.writes.find((w) => w.state.id === 'cam-1');
    expect(write?.state.telemetrySeq).toBe(5);
    expect(write?.telemetry).toBeUndefined();
    // Already online on the stored row: no device.online event for cam-1 this time.
    expect(result.events.filter((e) => e.data.deviceId === 'cam-1' && e.type === 'device.online')).toEqual([]);
    // Rows and counts do not depend on states.
    expect(result.messages).toBe(first.messages);
  });
});

describe('a boot whose messages were stored before its birth', () => {
  // The device runs an older boot, with that boot's telemetry seq 9 as the latest.
  const onOldBoot = (): LiveDevice => ({
    state: {
      ...initialLiveState('cam-1', T - 60_000),
      bootIds: ['bootold01'],
      telemetryBootId: 'bootold01',
      telemetrySeq: 9,
    },
    digest: null,
  });
  const stored = (entry: FoldEntry, receivedAt: number) => {
    if (entry.kind !== 'message' || !entry.decoded.ok) throw new Error('not a message');
    return {
      deviceId: entry.deviceId,
      channel: entry.channel as 'telemetry' | 'reported',
      body: entry.decoded.body,
      receivedAt,
    };
  };

  it('names no promoted boot for messages of an unseen boot without its birth (rule 2 holds)', () => {
    const result = applyBatch(view(onOldBoot()), [telemetry('cam-1', 7)], T, thresholds);
    expect(result.next.get('cam-1')?.state).toMatchObject({ bootIds: ['bootold01'], telemetrySeq: 9 });
    expect(promotedBoots(result)).toEqual([]);
  });

  it('names the boot a birth promotes, and applies its stored telemetry and reported on top', () => {
    const live = view(onOldBoot());
    const first = applyBatch(live, [birth('cam-1', 1)], T, thresholds);
    expect(promotedBoots(first)).toEqual([{ deviceId: 'cam-1', bootId: BOOT, telemetrySeq: null, reportedSeq: null }]);

    const late = [
      stored(telemetry('cam-1', 7), T - 1_000),
      stored(
        message('cam-1', 'reported', { seq: 6, agentVersion: '1.2.0', desiredVersion: 3, telemetryIntervalS: 10 }),
        T - 2_000,
      ),
      { deviceId: 'cam-1', channel: 'telemetry' as const, body: '{not json', receivedAt: T },
    ];
    const result = applyStoredOfBoots(first, live, late, T, thresholds);
    expect(result.next.get('cam-1')?.state).toMatchObject({
      bootIds: ['bootold01', BOOT],
      telemetryBootId: BOOT,
      telemetrySeq: 7,
      telemetryAt: T - 1_000,
      reportedBootId: BOOT,
      reportedSeq: 6,
      agentVersion: '1.2.0',
    });
    expect(result.next.get('cam-1')?.digest).not.toBeNull();
    expect(result.writes).toHaveLength(1);
    expect(result.writes[0]?.telemetry).toMatchObject({ seq: 7 });
    expect(result.writes[0]?.reported).toMatchObject({ seq: 6, desiredVersion: 3 });
    expect(result.events.map((event) => event.type)).toEqual([
      ...first.events.map((e) => e.type),
      'device.health',
      'device.reported',
    ]);
    // Not stored or announced again.
    expect(result.messages).toBe(first.messages);
    expect(result.stored).toBe(first.stored);
    // Nothing found: the result as it was.
    expect(applyStoredOfBoots(first, live, [], T, thresholds)).toBe(first);
  });
});
