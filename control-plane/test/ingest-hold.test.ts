import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encode, messageId, topicFor } from '@edgeloop/protocol';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import type { IngestBatch } from '../src/db/repositories.ts';
import { createSqliteStore, type SqliteStore } from '../src/db/sqlite/store.ts';
import { isStorageFull } from '../src/disk-monitor.ts';
import { createEventBus } from '../src/events.ts';
import { createIngestWriter, type IngestWriter } from '../src/ingest.ts';
import { createMetricsRegistry } from '../src/metrics.ts';
import { eventually, SYSTEM } from './harness.ts';

/*
 * The ingest writer's hold (holdWrites): while the disk is low no batch commits and no publisher
 * is acked; a batch whose commit fails with a full disk goes back to the queue instead of failing.
 * Real SQLite; the full disk enters through the store's commit (deps).
 */

const DEVICE = 'hold-cam';
let dataDir: string;
let store: SqliteStore;
let ingest: IngestWriter;
let low: boolean;
let failNextCommit: Error | null;
let commits: number;
let flushErrors: Error[];

beforeEach(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-hold-'));
  store = createSqliteStore({ dataDir });
  low = false;
  failNextCommit = null;
  commits = 0;
  flushErrors = [];
  const config = loadConfig();
  ingest = createIngestWriter({
    store: {
      commit: (batch: IngestBatch) => {
        commits++;
        const failure = failNextCommit;
        failNextCommit = null;
        return failure ? Promise.reject(failure) : store.ingest.commit(batch);
      },
      loadLiveStates: store.devices.loadLiveStates,
      loadLiveState: store.devices.loadLiveState,
    },
    bus: createEventBus({ clock: { now: () => Date.now() } }),
    metrics: createMetricsRegistry(),
    clock: { now: () => Date.now() },
    config: config.ingest,
    health: config.health,
    logger: pino({ level: 'silent' }),
    holdWrites: () => low,
    onFlushError: (error) => {
      flushErrors.push(error);
      if (isStorageFull(error)) low = true; // what the disk monitor does
    },
  });
  await ingest.start();
  const enrolled = await store.devices.enroll({ id: DEVICE, labels: {}, secretHash: 'x', now: Date.now() });
  if (!enrolled.ok) throw new Error(enrolled.error.message);
  ingest.addDevice(DEVICE, Date.now());
});

afterEach(async () => {
  low = false;
  await ingest.stop();
  await store.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Offers one telemetry message; `acked` settles when its done callback runs (the broker's PUBACK). */
function offer(seq: number) {
  const msgId = messageId('boot-hold', seq);
  const payload = Buffer.from(
    encode('telemetry', { msgId, bootId: 'boot-hold', seq, ts: Date.now(), intervalS: 10, system: SYSTEM }),
  );
  let result: Error | null | undefined;
  const acked = new Promise<Error | null>((resolve) => {
    ingest.offer(
      {
        deviceId: DEVICE,
        channel: 'telemetry',
        topic: topicFor(DEVICE, 'telemetry'),
        payload,
        qos: 1,
        will: false,
        liveSession: true,
      },
      (error) => {
        result = error ?? null;
        resolve(result);
      },
    );
  });
  return { msgId, acked, settled: () => result !== undefined };
}

function stored(msgId: string): number {
  return (
    store.db.$client
      .prepare('SELECT count(*) AS n FROM messages WHERE device_id = ? AND msg_id = ?')
      .get(DEVICE, msgId) as {
      n: number;
    }
  ).n;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('the ingest hold (disk below its watermark)', () => {
  it('commits nothing and acks nobody while held, then commits and acks once released', async () => {
    low = true;
    const message = offer(1);
    await pause(500);
    expect(commits).toBe(0);
    expect(message.settled()).toBe(false);
    expect(ingest.stats().queueDepth).toBe(1);
    low = false;
    expect(await message.acked).toBeNull();
    expect(stored(message.msgId)).toBe(1);
  });

  it('puts a batch whose commit failed with a full disk back in the queue, unacked, and stores it once later', async () => {
    failNextCommit = Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    const message = offer(2);
    await eventually(() => commits === 1, 10_000);
    expect(flushErrors).toHaveLength(1);
    expect(low).toBe(true);
    await pause(500);
    expect(message.settled()).toBe(false);
    expect(stored(message.msgId)).toBe(0);
    expect(ingest.stats().queueDepth).toBe(1);
    low = false;
    expect(await message.acked).toBeNull();
    expect(stored(message.msgId)).toBe(1);
    expect(commits).toBe(2);
  });

  it('fails the batch (no ack) on any other commit error, as before', async () => {
    failNextCommit = new Error('disk I/O error');
    const message = offer(3);
    const outcome = await message.acked;
    expect(outcome?.message).toBe('disk I/O error');
    expect(low).toBe(false);
    expect(stored(message.msgId)).toBe(0);
  });

  it('writes what is queued at stop, held or not', async () => {
    low = true;
    const message = offer(4);
    await pause(300);
    expect(message.settled()).toBe(false);
    await ingest.stop();
    expect(await message.acked).toBeNull();
    expect(stored(message.msgId)).toBe(1);
  });
});
