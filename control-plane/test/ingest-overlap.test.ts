import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encode, messageId, topicFor } from '@edgeloop/protocol';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import type { IngestBatch } from '../src/db/repositories.ts';
import { createSqliteStore, type SqliteStore } from '../src/db/sqlite/store.ts';
import { createEventBus } from '../src/events.ts';
import { createIngestWriter, type IngestWriter } from '../src/ingest.ts';
import { createMetricsRegistry, type MetricsRegistry } from '../src/metrics.ts';
import { eventually, SYSTEM } from './harness.ts';

/*
 * The ingest writer decodes the next batch while the previous one commits (a store that commits
 * asynchronously: PostgreSQL). What a message does to its device is still decided at flush time,
 * in queue order: a device removed after its message was decoded ahead gets nothing stored.
 * Real SQLite underneath; the commit is held open through the store (deps), as a slow server's is.
 */

const DEVICE = 'overlap-cam';
const OTHER = 'overlap-other';
let dataDir: string;
let store: SqliteStore;
let ingest: IngestWriter;
let metrics: MetricsRegistry;
let gate: Promise<void>;
let open: () => void;
let commits: number;

beforeEach(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-overlap-'));
  store = createSqliteStore({ dataDir });
  metrics = createMetricsRegistry();
  commits = 0;
  gate = new Promise((resolve) => (open = resolve));
  const config = loadConfig();
  ingest = createIngestWriter({
    store: {
      commit: async (batch: IngestBatch) => {
        commits++;
        await gate;
        return store.ingest.commit(batch);
      },
      loadLiveStates: store.devices.loadLiveStates,
      loadLiveState: store.devices.loadLiveState,
    },
    bus: createEventBus({ clock: { now: () => Date.now() } }),
    metrics,
    clock: { now: () => Date.now() },
    config: config.ingest,
    health: config.health,
    logger: pino({ level: 'silent' }),
  });
  await ingest.start();
  for (const id of [DEVICE, OTHER]) {
    const enrolled = await store.devices.enroll({ id, labels: {}, secretHash: 'x', now: Date.now() });
    if (!enrolled.ok) throw new Error(enrolled.error.message);
    ingest.addDevice(id, Date.now());
  }
});

afterEach(async () => {
  open();
  await ingest.stop();
  await store.close();
  rmSync(dataDir, { recursive: true, force: true });
});

function offer(deviceId: string, payload: Buffer) {
  return new Promise<Error | null>((resolve) => {
    ingest.offer(
      {
        deviceId,
        channel: 'telemetry',
        topic: topicFor(deviceId, 'telemetry'),
        payload,
        qos: 1,
        will: false,
        liveSession: true,
      },
      (error) => resolve(error ?? null),
    );
  });
}

const telemetry = (bootId: string, seq: number) =>
  Buffer.from(
    encode('telemetry', { msgId: messageId(bootId, seq), bootId, seq, ts: Date.now(), intervalS: 10, system: SYSTEM }),
  );

const count = (sql: string, ...args: unknown[]) => (store.db.$client.prepare(sql).get(...args) as { n: number }).n;

describe('the ingest writer while a commit is under way', () => {
  it('stores the batch decoded meanwhile as if decoded at flush time: valid stored, invalid dead-lettered, a removed device dropped', async () => {
    const first = offer(DEVICE, telemetry('boot-overlap', 1));
    await eventually(() => expect(commits).toBe(1));
    // Offered while the first batch commits: decoded ahead, applied only after that commit.
    const later = [
      offer(DEVICE, telemetry('boot-overlap', 2)),
      offer(DEVICE, Buffer.from('{"msgId": "not json')),
      offer(OTHER, telemetry('boot-other', 1)),
      offer(DEVICE, telemetry('boot-overlap', 2)), // a resend: stored once
    ];
    await new Promise((resolve) => setTimeout(resolve, 50));
    ingest.removeDevice(OTHER);
    expect(count('SELECT count(*) AS n FROM messages')).toBe(0);
    open();
    expect(await first).toBeNull();
    expect(await Promise.all(later)).toEqual([null, null, null, null]);
    await ingest.flush();
    expect(count('SELECT count(*) AS n FROM messages WHERE device_id = ?', DEVICE)).toBe(2);
    expect(count('SELECT count(*) AS n FROM messages WHERE device_id = ?', OTHER)).toBe(0);
    expect(count("SELECT count(*) AS n FROM dead_letters WHERE reason = 'invalid_json'")).toBe(1);
    expect(ingest.stats()).toMatchObject({ accepted: 2, duplicates: 1, rejected: 1, dropped: 1 });
    expect(ingest.liveState(DEVICE)?.telemetrySeq).toBe(2);
  });
});
