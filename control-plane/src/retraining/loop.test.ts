import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DriftState, RetrainingPolicy, RetrainingWebhookPayload } from '@edgeloop/protocol';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDatasetService } from '../datasets/service.ts';
import { createSqliteStore, type SqliteStore } from '../db/sqlite/store.ts';
import { createMetricsRegistry } from '../metrics.ts';
import { createBlobStore } from '../models/blob-store.ts';
import type { Timers } from '../time.ts';
import { createRetrainingLoop } from './loop.ts';
import { createRetrainingService } from './service.ts';
import { createWebhookDeliverer } from './webhook.ts';
import { createSecretBox } from './webhook-secret.ts';

/*
 * The trigger loop over a real SQLite store (real migrations), the real datasets service and a real
 * node:http receiver; the drift states, the leader flag, the clock and the timers come through deps.
 */

const T = 1_800_000_000_000;
const SECRET = 'loop-test-webhook-secret-01';
const SHA = 'c'.repeat(64);

function drift(key: string, band: DriftState['band'], sustainedWindows: number): DriftState {
  return {
    scope: 'site',
    key,
    modelSha256: SHA,
    modelId: 'det@1.0.0',
    band,
    sustainedWindows,
    since: band === 'stable' ? null : T - 60_000,
    reference: {
      source: 'auto',
      from: T - 7_200_000,
      to: T - 3_600_000,
      frames: 9000,
      complete: true,
      datasetId: null,
    },
    numbers: {
      confidencePsi: band === 'major' ? 0.42 : 0.01,
      classMixPsi: 0.02,
      nearThresholdShare: { reference: 0.1, current: 0.35 },
      sceneChangeRate: { reference: 0, current: 0.3 },
    },
    window: { index: 7, from: T - 60_000, to: T },
    updatedAt: T,
  };
}

describe('retraining loop', () => {
  let dir: string;
  let store: SqliteStore;
  let server: Server;
  let hookUrl: string;
  let now: number;
  let leader: boolean;
  let states: DriftState[];
  const bodies: { body: string; signature: string }[] = [];
  const intervals: { ms: number }[] = [];
  const timers: Timers = {
    setInterval: (_callback, ms) => {
      intervals.push({ ms });
      return intervals.length;
    },
    clearInterval: () => {},
  };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'edgeloop-retraining-loop-'));
    store = createSqliteStore({ dataDir: dir });
    now = T;
    leader = true;
    states = [drift('a', 'stable', 0), drift('b', 'major', 1)];
    bodies.length = 0;
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        bodies.push({
          body: Buffer.concat(chunks).toString('utf8'),
          signature: String(req.headers['x-edgeloop-signature-256']),
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    hookUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/hook`;
    await store.models.create({
      id: 'det@1.0.0',
      name: 'det',
      version: '1.0.0',
      sha256: SHA,
      sizeBytes: 10,
      releaseCounter: 1,
      adapter: 'yolo',
      keyId: 'abcdef0123456789',
      issuedAt: T,
      expiresAt: T + 1e9,
      signed: '{}',
      manifest: {},
      createdAt: T,
      uploadedBy: null,
    });
    await store.samples.insert({
      id: 'smp_1',
      deviceId: 'cam-b1',
      site: 'b',
      labels: { site: 'b' },
      modelId: 'det@1.0.0',
      modelSha256: SHA,
      strategy: 'near-threshold',
      reason: 'near',
      tags: [],
      predictions: [],
      frameTs: T - 5_000,
      bootId: 'boot0001',
      seq: 1,
      imageSha256: 'd'.repeat(64),
      bytes: 100,
      width: 64,
      height: 48,
      thumbnailSha256: null,
      receivedAt: T - 4_000,
    });
  });
  afterEach(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const build = () => {
    const secrets = createSecretBox(Buffer.alloc(32, 7));
    const metrics = createMetricsRegistry();
    const logger = pino({ level: 'silent' });
    const clock = { now: () => now };
    const service = createRetrainingService({
      policies: store.retrainingPolicies,
      runs: store.retrainingRuns,
      datasets: createDatasetService({
        datasets: store.datasets,
        samples: store.samples,
        blobs: createBlobStore({ root: join(dir, 'blobs') }),
        clock,
      }),
      models: store.models,
      rollouts: store.rollouts,
      driftStates: () => states,
      secrets,
      baseUrl: () => 'http://cp.test',
      clock,
    });
    const deliverer = createWebhookDeliverer({
      runs: store.retrainingRuns,
      secretOf: (name) => service.secretOf(name),
      fetch,
      clock,
      random: () => 0,
      baseUrl: () => 'http://cp.test',
      maxAttempts: 3,
      backoff: { baseMs: 1000, maxMs: 8000 },
      timeoutMs: 2000,
      concurrency: 2,
      metrics,
      logger,
    });
    const loop = createRetrainingLoop({
      service,
      policies: store.retrainingPolicies,
      runs: store.retrainingRuns,
      samples: store.samples,
      driftStates: () => states,
      deliverer,
      isLeader: () => leader,
      clock,
      timers,
      intervalMs: 60_000,
      pollMs: 1_000,
      metrics,
      logger,
    });
    return { service, loop };
  };

  it('fires a run when site b holds major drift for the third window, and delivers its signed webhook', async () => {
    const { service, loop } = build();
    await service.setPolicy(
      'det',
      RetrainingPolicy.parse({
        triggers: { drift: { band: 'major', windows: 3 } },
        cooldownS: 3600,
        dataset: { name: 'retrain-det', query: { site: 'b' } },
        webhook: { url: hookUrl, secret: SECRET },
      }),
      'tok_ops',
    );
    expect((await loop.tick()).fired).toBe(0);
    states = [drift('a', 'stable', 0), drift('b', 'major', 3)];
    now += 60_000;
    const report = await loop.tick();
    expect(report).toMatchObject({ leader: true, evaluated: 1, fired: 1, attempts: 1, errors: 0 });

    const [run] = await store.retrainingRuns.list({ limit: 10 });
    expect(run).toMatchObject({
      modelName: 'det',
      status: 'delivered',
      datasetId: 'retrain-det@1',
      parentModel: { id: 'det@1.0.0', sha256: SHA },
      reason: { kind: 'drift', numbers: { site: 'b', band: 'major', windows: 3, confidencePsi: 0.42 } },
      createdBy: 'system:retraining',
    });
    expect(bodies).toHaveLength(1);
    const { body, signature } = bodies[0]!;
    expect(signature).toBe(`sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`);
    expect(RetrainingWebhookPayload.parse(JSON.parse(body))).toMatchObject({
      runId: run?.runId,
      dataset: { version: 1 },
    });
    expect((await store.datasets.get('retrain-det@1'))?.sampleCount).toBe(1);

    // Still drifting a minute later: the cooldown holds it.
    states = [drift('b', 'major', 4)];
    now += 60_000;
    expect((await loop.tick()).fired).toBe(0);
    expect(await store.retrainingRuns.list({ limit: 10 })).toHaveLength(1);
  });

  it('evaluates policies only every interval and only on the leader, and starts on its poll timer', async () => {
    const { service, loop } = build();
    await service.setPolicy(
      'det',
      RetrainingPolicy.parse({ triggers: { drift: { windows: 1 } }, dataset: { name: 'retrain-det' } }),
      null,
    );
    leader = false;
    expect(await loop.tick()).toEqual({ leader: false, evaluated: 0, fired: 0, attempts: 0, errors: 0 });
    expect(await store.retrainingRuns.list({ limit: 10 })).toHaveLength(0);
    leader = true;
    expect((await loop.tick()).fired).toBe(1);
    // A new policy within the interval waits for the next evaluation.
    await service.setPolicy(
      'ocr',
      RetrainingPolicy.parse({ triggers: { samples: { min: 1 } }, dataset: { name: 'retrain-ocr' } }),
      null,
    );
    now += 30_000;
    expect((await loop.tick()).evaluated).toBe(0);
    now += 30_000;
    expect(await loop.tick()).toMatchObject({ evaluated: 2, fired: 1 });
    const runs = await store.retrainingRuns.list({ limit: 10 });
    expect(runs.map((r) => [r.modelName, r.status])).toEqual([
      ['ocr', 'pending'],
      ['det', 'pending'],
    ]);
    loop.start();
    expect(intervals).toEqual([{ ms: 1_000 }]);
    loop.stop();
  });
});
