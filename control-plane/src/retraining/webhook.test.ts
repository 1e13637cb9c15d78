import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RetrainingWebhookPayload } from '@edgeloop/protocol';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RetrainingRunRecord } from '../db/repositories.ts';
import { createSqliteStore, type SqliteStore } from '../db/sqlite/store.ts';
import { createMetricsRegistry } from '../metrics.ts';
import { createWebhookDeliverer, retryDelayMs, signatureOf } from './webhook.ts';

/*
 * Webhook deliveries against a real node:http receiver that checks the signature as a receiver
 * would (HMAC-SHA256 of the raw body with Node's crypto, compared in constant time), and against a
 * port where nothing listens. Runs live in a real SQLite store; the clock is the test's.
 */

const SECRET = 'receiver-shared-secret-0123456789';
const T = 1_800_000_000_000;

type Received = { headers: IncomingMessage['headers']; body: Buffer; valid: boolean };

/** A receiver that verifies X-Edgeloop-Signature-256 under `secret` and answers `status(n)` to the n-th request. */
async function startReceiver(
  secret: string,
  status: (n: number, valid: boolean) => number = (_, valid) => (valid ? 204 : 401),
) {
  const received: Received[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
      const got = Buffer.from(String(req.headers['x-edgeloop-signature-256'] ?? ''));
      const valid = got.length === expected.length && timingSafeEqual(got, expected);
      received.push({ headers: req.headers, body, valid });
      res.statusCode = status(received.length, valid);
      res.end(valid ? 'ok' : 'bad signature');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}/hooks/retrain`,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A URL on which nothing listens (a port taken and released). */
async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/hook`;
}

function run(runId: string, webhookUrl: string): RetrainingRunRecord {
  return {
    runId,
    modelName: 'det',
    parentModel: { id: 'det@1.0.0', sha256: 'a'.repeat(64) },
    reason: { kind: 'drift', numbers: { site: 'b', band: 'major', windows: 3 }, detail: 'site b drifted' },
    datasetId: 'retrain-det@4',
    exportUrls: {
      coco: 'http://cp.test/api/v1/datasets/retrain-det%404/export?format=coco',
      yolo: 'http://cp.test/api/v1/datasets/retrain-det%404/export?format=yolo',
    },
    webhookUrl,
    status: 'delivering',
    attempts: 0,
    lastStatusCode: null,
    lastError: null,
    nextAttemptAt: T,
    deliveries: [],
    claimedBy: null,
    claimedAt: null,
    resultModelId: null,
    createdAt: T,
    updatedAt: T,
    createdBy: 'system:retraining',
  };
}

describe('retraining webhook', () => {
  let dir: string;
  let store: SqliteStore;
  let now: number;
  const closers: (() => Promise<void>)[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'edgeloop-webhook-'));
    store = createSqliteStore({ dataDir: dir });
    now = T;
  });
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const deliverer = (options: { secret?: string; maxAttempts?: number } = {}) =>
    createWebhookDeliverer({
      runs: store.retrainingRuns,
      secretOf: async () => options.secret ?? SECRET,
      fetch,
      clock: { now: () => now },
      random: () => 0.5,
      baseUrl: () => 'http://cp.test',
      maxAttempts: options.maxAttempts ?? 5,
      backoff: { baseMs: 1_000, maxMs: 4_000 },
      timeoutMs: 2_000,
      concurrency: 2,
      metrics: createMetricsRegistry(),
      logger: pino({ level: 'silent' }),
    });

  it('posts the run signed so that the receiver verifies the HMAC of the raw body with Node crypto', async () => {
    const receiver = await startReceiver(SECRET);
    closers.push(receiver.close);
    await store.retrainingRuns.create(run('rt-1', receiver.url));
    expect(await deliverer().deliverDue()).toBe(1);

    expect(receiver.received).toHaveLength(1);
    const [got] = receiver.received;
    expect(got?.valid).toBe(true);
    expect(got?.headers['x-edgeloop-event']).toBe('retraining.run');
    expect(got?.headers['x-edgeloop-delivery']).toBe('rt-1.1');
    expect(got?.headers['content-type']).toBe('application/json');
    const payload = RetrainingWebhookPayload.parse(JSON.parse(got!.body.toString('utf8')));
    expect(payload).toMatchObject({
      runId: 'rt-1',
      modelName: 'det',
      reason: { kind: 'drift', numbers: { site: 'b', band: 'major', windows: 3 } },
      dataset: { id: 'retrain-det@4', name: 'retrain-det', version: 4 },
      parentModel: { id: 'det@1.0.0', sha256: 'a'.repeat(64) },
      exportUrls: { coco: 'http://cp.test/api/v1/datasets/retrain-det%404/export?format=coco' },
      links: { claim: 'http://cp.test/api/v1/retraining/runs/rt-1/claim' },
    });
    const stored = await store.retrainingRuns.get('rt-1');
    expect(stored).toMatchObject({
      status: 'delivered',
      attempts: 1,
      lastStatusCode: 204,
      lastError: null,
      nextAttemptAt: null,
    });
    expect(stored?.deliveries).toEqual([{ at: T, statusCode: 204, error: null, durationMs: expect.any(Number) }]);
  });

  it('lets the receiver detect a wrong signature: a body signed with another secret does not verify, and the refusal fails the run', async () => {
    const receiver = await startReceiver(SECRET);
    closers.push(receiver.close);
    await store.retrainingRuns.create(run('rt-1', receiver.url));
    await deliverer({ secret: 'not-the-receiver-secret-000000' }).deliverDue();

    const [got] = receiver.received;
    expect(got?.valid).toBe(false);
    // The same check by hand: the header is an HMAC, just not under the receiver's secret.
    expect(got?.headers['x-edgeloop-signature-256']).toBe(signatureOf('not-the-receiver-secret-000000', got!.body));
    expect(got?.headers['x-edgeloop-signature-256']).not.toBe(signatureOf(SECRET, got!.body));
    // A 401 is a refusal the same bytes cannot change: no retry.
    expect(await store.retrainingRuns.get('rt-1')).toMatchObject({
      status: 'failed',
      attempts: 1,
      lastStatusCode: 401,
      lastError: 'HTTP 401: bad signature',
      nextAttemptAt: null,
    });
  });

  it('retries a receiver that is down with capped exponential backoff, attempt by attempt, then logs the run failed', async () => {
    const url = await deadUrl();
    await store.retrainingRuns.create(run('rt-1', url));
    const hooks = deliverer({ maxAttempts: 5 });
    const gaps: number[] = [];
    for (let attempt = 1; attempt <= 5; attempt++) {
      expect(await hooks.deliverDue()).toBe(1);
      const stored = (await store.retrainingRuns.get('rt-1'))!;
      expect(stored.attempts).toBe(attempt);
      expect(stored.lastStatusCode).toBeNull();
      expect(stored.lastError).toMatch(/ECONNREFUSED/);
      if (attempt === 5) break;
      const wait = stored.nextAttemptAt! - now;
      gaps.push(wait);
      // Nothing is sent before the retry is due.
      now += wait - 1;
      expect(await hooks.deliverDue()).toBe(0);
      now += 1;
    }
    // base 1 s doubling, capped at 4 s, with equal jitter at random 0.5: 3/4 of each ceiling.
    expect(gaps).toEqual([750, 1500, 3000, 3000]);
    const failed = (await store.retrainingRuns.get('rt-1'))!;
    expect(failed).toMatchObject({ status: 'failed', attempts: 5, nextAttemptAt: null });
    expect(failed.deliveries).toHaveLength(5);
    expect(failed.deliveries.every((d) => d.statusCode === null && /ECONNREFUSED/.test(d.error ?? ''))).toBe(true);
    now += 60_000;
    expect(await hooks.deliverDue()).toBe(0);
  });

  it('retries a 503 and delivers the same signed bytes once the receiver answers 2xx', async () => {
    const receiver = await startReceiver(SECRET, (n) => (n < 3 ? 503 : 200));
    closers.push(receiver.close);
    await store.retrainingRuns.create(run('rt-1', receiver.url));
    const hooks = deliverer();
    for (let i = 0; i < 3; i++) {
      await hooks.deliverDue();
      const stored = (await store.retrainingRuns.get('rt-1'))!;
      if (stored.nextAttemptAt !== null) now = stored.nextAttemptAt;
    }
    expect(receiver.received.map((r) => r.headers['x-edgeloop-delivery'])).toEqual(['rt-1.1', 'rt-1.2', 'rt-1.3']);
    expect(receiver.received.every((r) => r.valid)).toBe(true);
    expect(new Set(receiver.received.map((r) => r.body.toString('utf8'))).size).toBe(1);
    const stored = (await store.retrainingRuns.get('rt-1'))!;
    expect(stored).toMatchObject({ status: 'delivered', attempts: 3, lastStatusCode: 200, lastError: null });
    expect(stored.deliveries.map((d) => d.statusCode)).toEqual([503, 503, 200]);
    expect(stored.deliveries[0]?.error).toBe('HTTP 503: ok');
  });

  it('drops an attempt in flight unrecorded when the control plane stops, so the run is sent again later', async () => {
    const hanging = createServer(() => {});
    const url = `http://127.0.0.1:${await new Promise<number>((resolve) =>
      hanging.listen(0, '127.0.0.1', () => {
        const address = hanging.address();
        resolve(typeof address === 'object' && address ? address.port : 0);
      }),
    )}/hook`;
    closers.push(async () => {
      hanging.closeAllConnections();
      await new Promise<void>((resolve) => hanging.close(() => resolve()));
    });
    await store.retrainingRuns.create(run('rt-1', url));
    const stop = new AbortController();
    const hooks = createWebhookDeliverer({
      runs: store.retrainingRuns,
      secretOf: async () => SECRET,
      fetch,
      clock: { now: () => now },
      baseUrl: () => 'http://cp.test',
      maxAttempts: 5,
      backoff: { baseMs: 1_000, maxMs: 4_000 },
      timeoutMs: 30_000,
      concurrency: 1,
      metrics: createMetricsRegistry(),
      logger: pino({ level: 'silent' }),
      signal: stop.signal,
    });
    hooks.kick();
    await new Promise((resolve) => setTimeout(resolve, 100));
    stop.abort();
    await hooks.idle();
    expect(await store.retrainingRuns.get('rt-1')).toMatchObject({
      status: 'delivering',
      attempts: 0,
      deliveries: [],
      nextAttemptAt: T,
    });
  });

  it('stops retrying a run a trainer claimed meanwhile', async () => {
    const url = await deadUrl();
    await store.retrainingRuns.create(run('rt-1', url));
    const hooks = deliverer();
    await hooks.deliverDue();
    await store.retrainingRuns.claim('rt-1', 'trainer-1', now, ['delivering']);
    now += 60_000;
    expect(await hooks.deliverDue()).toBe(0);
    expect(await store.retrainingRuns.get('rt-1')).toMatchObject({
      status: 'claimed',
      attempts: 1,
      nextAttemptAt: null,
    });
  });
});

describe('retryDelayMs', () => {
  it('doubles from the base, stops at the cap, and spreads each wait over its upper half', () => {
    const backoff = { baseMs: 5_000, maxMs: 60_000 };
    expect([1, 2, 3, 4, 5, 6].map((n) => retryDelayMs(n, backoff, () => 0))).toEqual([
      2_500, 5_000, 10_000, 20_000, 30_000, 30_000,
    ]);
    expect([1, 2, 5].map((n) => retryDelayMs(n, backoff, () => 0.999_999))).toEqual([5_000, 10_000, 60_000]);
  });
});
