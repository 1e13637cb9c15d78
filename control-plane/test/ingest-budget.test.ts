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
import { createMetricsRegistry } from '../src/metrics.ts';
import { SYSTEM } from './harness.ts';

/*
 * The ingest writer's turn budget (turnBudgetMs): a flush stops taking rows once the budget is
 * spent, the batch size adapts to the measured cost per row, and acks are given in slices.
 * Real SQLite; time is a fake monotonic clock that the work advances: each row's health
 * assessment (connectionReasons, called once per message) costs `rowCostMs`, each committed row
 * `commitCostMs`. A marker scheduled with setImmediate at each commit shows where a turn ends.
 */

const DEVICE = 'budget-cam';
const BUDGET_MS = 20;
let dataDir: string;
let store: SqliteStore;
let ingest: IngestWriter;
let now: number;
let rowCostMs: number;
let commitCostMs: number;
/** 'commit <rows>' per commit and 'turn' where a turn of the event loop ended after one. */
let log: string[];

beforeEach(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-budget-'));
  store = createSqliteStore({ dataDir });
  now = 0;
  rowCostMs = 0;
  commitCostMs = 0;
  log = [];
  const config = loadConfig();
  ingest = createIngestWriter({
    store: {
      commit: (batch: IngestBatch) => {
        log.push(`commit ${batch.messages.length}`);
        now += commitCostMs * batch.messages.length;
        const into = log;
        setImmediate(() => into.push('turn'));
        return store.ingest.commit(batch);
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
    connectionReasons: () => {
      now += rowCostMs;
      return [];
    },
    turnBudgetMs: BUDGET_MS,
    monotonic: () => now,
  });
  await ingest.start();
  const enrolled = await store.devices.enroll({ id: DEVICE, labels: {}, secretHash: 'x', now: Date.now() });
  if (!enrolled.ok) throw new Error(enrolled.error.message);
  ingest.addDevice(DEVICE, Date.now());
});

afterEach(async () => {
  await ingest.stop();
  await store.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Offers telemetry seq from..to-1 at once; resolves when all are acked, with the ack order. */
function offerMany(from: number, to: number, onAck?: (seq: number) => void) {
  const acks: Promise<number>[] = [];
  for (let seq = from; seq < to; seq++) {
    const payload = Buffer.from(
      encode('telemetry', {
        msgId: messageId('boot-budget', seq),
        bootId: 'boot-budget',
        seq,
        ts: Date.now(),
        intervalS: 10,
        system: SYSTEM,
      }),
    );
    acks.push(
      new Promise<number>((resolve, reject) => {
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
            if (error) return reject(error);
            onAck?.(seq);
            resolve(seq);
          },
        );
      }),
    );
  }
  return Promise.all(acks);
}

function storedCount(): number {
  return (
    store.db.$client.prepare('SELECT count(*) AS n FROM messages WHERE device_id = ?').get(DEVICE) as { n: number }
  ).n;
}

const commits = () => log.filter((line) => line.startsWith('commit')).map((line) => Number(line.split(' ')[1]));

describe('the ingest turn budget', () => {
  it('stops taking rows once the budget is spent; the rest follow in the next turns, each stored once', async () => {
    rowCostMs = 1;
    await offerMany(0, 50);
    // 1 ms per row, 20 ms per turn: at most 20 rows a batch, and a turn ends after each commit.
    const sizes = commits();
    expect(sizes.reduce((sum, rows) => sum + rows, 0)).toBe(50);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(BUDGET_MS);
    expect(sizes.length).toBeGreaterThanOrEqual(3);
    expect(log.slice(0, 3)).toEqual([`commit ${sizes[0]}`, 'turn', `commit ${sizes[1]}`]);
    expect(storedCount()).toBe(50);
  });

  it('shrinks the batch to what the budget holds at the measured commit cost per row, and grows it back', async () => {
    commitCostMs = 0.5;
    await offerMany(0, 100);
    // The first batch took everything (nothing measured yet); 0.5 ms a row then fits 40 rows in 20 ms.
    expect(commits()[0]).toBe(100);
    log = [];
    await offerMany(100, 200);
    expect(commits()).toEqual([40, 40, 20]);
    // Rows got cheap: the limit grows back by half per batch (plus one) towards the configured size.
    commitCostMs = 0;
    log = [];
    await offerMany(200, 400);
    expect(commits().slice(0, 3)).toEqual([40, 61, 93]);
    expect(storedCount()).toBe(400);
  });

  it('gives the acks of a commit that spent the budget in later turns, oldest first, none before its commit', async () => {
    commitCostMs = 1;
    const order: number[] = [];
    const acked = offerMany(0, 60, (seq) => {
      order.push(seq);
      log.push(`ack ${seq}`);
    });
    await acked;
    // The commit of 60 rows cost 60 ms: one ack in its own turn, the rest after the turn ended.
    expect(log.slice(0, 4)).toEqual(['commit 60', 'ack 0', 'turn', 'ack 1']);
    expect(order).toEqual(Array.from({ length: 60 }, (_, i) => i));
    expect(storedCount()).toBe(60);
  });
});
