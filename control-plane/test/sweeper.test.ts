import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encode, messageId, topicFor } from '@edgeloop/protocol';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createGovernancePruner } from '../src/audit/audit.ts';
import { loadConfig } from '../src/config.ts';
import { createSqliteStore, type SqliteStore } from '../src/db/sqlite/store.ts';
import { type BusMessage, createEventBus } from '../src/events.ts';
import { createIngestWriter, type IngestWriter } from '../src/ingest.ts';
import { createMetricsRegistry } from '../src/metrics.ts';
import { createHealthSweeper, createPeriodicTask, createRetentionPruner } from '../src/sweeper.ts';
import type { Timers } from '../src/time.ts';
import { SYSTEM } from './harness.ts';

const T0 = 1_800_000_000_000;

/** Timers the test fires by hand. */
function manualTimers() {
  const callbacks = new Map<number, () => void>();
  let next = 1;
  const timers: Timers = {
    setInterval: (callback) => {
      callbacks.set(next, callback);
      return next++;
    },
    clearInterval: (handle) => {
      callbacks.delete(handle as number);
    },
  };
  return {
    timers,
    fire: () => {
      for (const callback of callbacks.values()) callback();
    },
    get count() {
      return callbacks.size;
    },
  };
}

let dataDir: string;
let store: SqliteStore;
let now: number;
let connected: Set<string>;
let ingest: IngestWriter;
let events: BusMessage[];

beforeEach(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-sweeper-'));
  store = createSqliteStore({ dataDir });
  now = T0;
  connected = new Set();
  events = [];
  const clock = { now: () => now };
  const bus = createEventBus({ clock });
  bus.subscribe((message) => events.push(message));
  const config = loadConfig();
  ingest = createIngestWriter({
    store: {
      ...store.ingest,
      loadLiveStates: store.devices.loadLiveStates,
      loadLiveState: store.devices.loadLiveState,
    },
    bus,
    metrics: createMetricsRegistry(),
    clock,
    config: config.ingest,
    health: config.health,
    logger: pino({ level: 'silent' }),
    isConnected: (id) => connected.has(id),
  });
  await ingest.start();
});

afterEach(async () => {
  await ingest.stop();
  await store.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function enroll(id: string) {
  const result = await store.devices.enroll({ id, labels: {}, secretHash: 'x', now });
  if (!result.ok) throw new Error(result.error.message);
  ingest.addDevice(id, now);
}

function offer(id: string, channel: 'status' | 'telemetry', body: Record<string, unknown>) {
  return new Promise<void>((resolve, reject) => {
    ingest.offer(
      {
        deviceId: id,
        channel,
        topic: topicFor(id, channel),
        payload: Buffer.from(encode(channel, body as never)),
        qos: 1,
        will: false,
        liveSession: connected.has(id),
      },
      (error) => (error ? reject(error) : resolve()),
    );
  });
}

async function goOnline(id: string) {
  const bootId = `boot-${id}`;
  await offer(id, 'status', {
    msgId: messageId(bootId, 1),
    bootId,
    seq: 1,
    ts: now,
    state: 'online',
    reason: 'birth',
    keepaliveS: 30,
    telemetryIntervalS: 5,
  });
  await offer(id, 'telemetry', { msgId: messageId(bootId, 2), bootId, seq: 2, ts: now, intervalS: 5, system: SYSTEM });
}

describe('health sweeper', () => {
  it('marks a silent device degraded (telemetry-stale), then offline after max(1.5 keepalive, 3 intervals) + grace', async () => {
    const { timers, fire } = manualTimers();
    const sweeper = createHealthSweeper({ ingest, timers, intervalMs: 1_000 });
    sweeper.start();
    await enroll('quiet-cam');
    await goOnline('quiet-cam');
    expect(await store.devices.get('quiet-cam')).toMatchObject({ status: 'online', health: 'healthy' });

    // Stale after 3 x 5 s + 5 s grace; offline only after max(45, 15) + 5 = 50 s.
    now = T0 + 21_000;
    fire();
    await ingest.flush();
    expect(await store.devices.get('quiet-cam')).toMatchObject({
      status: 'online',
      health: 'degraded',
      healthReasons: ['telemetry-stale'],
    });

    now = T0 + 49_000;
    fire();
    await ingest.flush();
    expect((await store.devices.get('quiet-cam'))?.status).toBe('online');

    now = T0 + 51_000;
    fire();
    await ingest.flush();
    expect(await store.devices.get('quiet-cam')).toMatchObject({ status: 'offline', health: 'offline' });
    const offline = events.find((e) => e.type === 'device.offline');
    expect(offline?.data).toMatchObject({ deviceId: 'quiet-cam', cause: 'silence' });
    expect(events.filter((e) => e.type === 'device.health').map((e) => (e.data as { health: string }).health)).toEqual([
      'healthy',
      'degraded',
      'offline',
    ]);
    sweeper.stop();
  });

  it('leaves online a silent device that still holds a live MQTT session', async () => {
    const { timers, fire } = manualTimers();
    createHealthSweeper({ ingest, timers, intervalMs: 1_000 }).start();
    await enroll('pinging-cam');
    connected.add('pinging-cam');
    await goOnline('pinging-cam');
    now = T0 + 300_000;
    fire();
    await ingest.flush();
    expect(await store.devices.get('pinging-cam')).toMatchObject({
      status: 'online',
      health: 'degraded',
      healthReasons: ['telemetry-stale'],
    });
  });

  it('stops its timer on stop()', () => {
    const manual = manualTimers();
    const sweeper = createHealthSweeper({ ingest, timers: manual.timers, intervalMs: 1_000 });
    sweeper.start();
    sweeper.start();
    expect(manual.count).toBe(1);
    sweeper.stop();
    expect(manual.count).toBe(0);
  });
});

describe('retention pruner', () => {
  it('deletes messages and dead letters past their retention, in chunks, and keeps the rest', async () => {
    await enroll('old-cam');
    const bootId = 'boot-old-cam';
    const day = 86_400_000;
    for (let seq = 1; seq <= 25; seq++) {
      now = T0 + (seq <= 20 ? 0 : 10 * day);
      await offer('old-cam', 'telemetry', {
        msgId: messageId(bootId, seq),
        bootId,
        seq,
        ts: now,
        intervalS: 5,
        system: SYSTEM,
      });
    }
    await new Promise<void>((resolve) =>
      ingest.deadLetter(
        { deviceId: 'old-cam', topic: 't', reason: 'invalid_json', detail: 'x', payload: Buffer.from('{') },
        () => resolve(),
      ),
    );
    now = T0 + 10 * day + 1;
    const pruner = createRetentionPruner({
      messages: store.messages,
      deadLetters: store.deadLetters,
      clock: { now: () => now },
      timers: manualTimers().timers,
      retention: { messagesDays: 5, deadLettersDays: 30, pruneIntervalS: 3600 },
      chunk: 7,
    });
    expect(await pruner.pruneNow()).toEqual({ messages: 20, deadLetters: 0 });
    expect(await store.messages.count('old-cam')).toBe(5);
    expect(await store.deadLetters.list({ limit: 10 })).toHaveLength(1);
  });
});

describe('periodic task', () => {
  it('runs on every tick once started, shares a run under way with runNow, reports a failed tick and stops', async () => {
    const manual = manualTimers();
    const errors: unknown[] = [];
    let runs = 0;
    let release: () => void = () => {};
    let fail = false;
    const task = createPeriodicTask({
      timers: manual.timers,
      intervalMs: 1000,
      onError: (error) => errors.push(error),
      run: async () => {
        runs++;
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        if (fail) throw new Error('boom');
        return runs;
      },
    });
    manual.fire();
    expect(runs).toBe(0); // not started: no timer
    task.start();
    task.start();
    expect(manual.count).toBe(1);
    manual.fire();
    const during = task.runNow();
    manual.fire();
    expect(runs).toBe(1);
    release();
    expect(await during).toBe(1);
    const next = task.runNow();
    expect(runs).toBe(2);
    release();
    expect(await next).toBe(2);
    fail = true;
    manual.fire();
    release();
    await expect.poll(() => errors.length).toBe(1);
    expect(String(errors[0])).toContain('boom');
    task.stop();
    expect(manual.count).toBe(0);
  });
});

describe('governance pruner', () => {
  it('prunes audit entries past auditDays and expired idempotency records in chunks, and keeps the audit for good at 0', async () => {
    const day = 86_400_000;
    const calls: string[] = [];
    const backlog = { audit: 5, idempotency: 3 };
    const take = (kind: keyof typeof backlog, limit: number) => {
      const deleted = Math.min(limit, backlog[kind]);
      backlog[kind] -= deleted;
      return deleted;
    };
    const deps = {
      audit: {
        pruneOlderThan: async (cutoff: number, limit: number) => {
          calls.push(`audit<${cutoff}`);
          return take('audit', limit);
        },
      },
      idempotency: {
        pruneExpired: async (at: number, limit: number) => {
          calls.push(`idempotency@${at}`);
          return take('idempotency', limit);
        },
      },
      clock: { now: () => T0 },
      timers: manualTimers().timers,
      intervalS: 60,
      chunk: 2,
    };
    expect(await createGovernancePruner({ ...deps, auditDays: 30 }).pruneNow()).toEqual({ audit: 5, idempotency: 3 });
    expect(calls).toEqual([...Array(3).fill(`audit<${T0 - 30 * day}`), ...Array(2).fill(`idempotency@${T0}`)]);
    backlog.audit = 4;
    backlog.idempotency = 1;
    calls.length = 0;
    expect(await createGovernancePruner({ ...deps, auditDays: 0 }).pruneNow()).toEqual({ audit: 0, idempotency: 1 });
    expect(calls).toEqual([`idempotency@${T0}`]);
  });
});
