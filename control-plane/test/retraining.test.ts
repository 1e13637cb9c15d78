import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';
import { RetrainingWebhookPayload, unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeSampleIn } from './dataset-fixtures.ts';
import { SYSTEM, startTestControlPlane, type TestControlPlane, type TestToken } from './harness.ts';
import { createSigningKit, type SigningKit } from './model-fixtures.ts';

/*
 * Retraining through a real control plane (SQLite, real migrations, Hono via app.request, the
 * trigger loop driven by its tick, the clock the test's): policies with a write-only secret, a
 * manual run delivered to a real node:http receiver that verifies the signature, the pull side
 * (pending, claim, complete), the samples trigger and its cooldown, and a receiver that hangs:
 * retries with backoff until failed, while ingest keeps storing telemetry.
 */

const SECRET = 'integration-webhook-secret-42';
let t: TestControlPlane;
let kit: SigningKit;
let operator: TestToken;
let viewer: TestToken;
let offset = 0;
const now = () => Date.now() + offset;

type Received = { headers: IncomingMessage['headers']; body: Buffer; valid: boolean };

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/hook`;
}

/** A receiver that verifies X-Edgeloop-Signature-256 with Node's crypto, as a receiver would. */
async function verifyingReceiver() {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const expected = Buffer.from(`sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`);
      const got = Buffer.from(String(req.headers['x-edgeloop-signature-256'] ?? ''));
      const valid = got.length === expected.length && timingSafeEqual(got, expected);
      received.push({ headers: req.headers, body, valid });
      res.statusCode = valid ? 202 : 401;
      res.end();
    });
  });
  return { url: await listen(server), received, server };
}

beforeAll(async () => {
  kit = createSigningKit();
  t = await startTestControlPlane(
    {
      trustedKeys: kit.publicKeyPath,
      // The loop is driven by the tests' ticks; deliveries time out fast.
      retraining: {
        intervalS: 3600,
        pollMs: 60_000,
        webhookTimeoutS: 1,
        maxAttempts: 3,
        backoffBaseS: 30,
        backoffMaxS: 60,
      },
    },
    { clock: { now } },
  );
  operator = await t.createToken('operator', 'trainer-bot');
  viewer = await t.createToken('viewer', 'reader');
  await kit.publish(operator.client, kit.modelBytes(512), {
    name: 'det',
    version: '1.0.0',
    adapter: 'yolo',
    labels: ['text'],
  });
  await storeSampleIn(t, 1);
  // SQLite's single process leads as soon as the engine has ticked once.
  await t.cp.internals.rollouts.engine.tick();
}, 30_000);

afterAll(async () => {
  await t?.stop();
  if (kit) rmSync(kit.dir, { recursive: true, force: true });
});

const policyBody = (webhookUrl: string | null, extra: Record<string, unknown> = {}) => ({
  dataset: { name: 'retrain-det', query: { site: 'north' } },
  cooldownS: 600,
  webhook: webhookUrl === null ? null : { url: webhookUrl, secret: SECRET },
  ...extra,
});

describe('retraining policies', () => {
  it('stores a policy with its secret sealed: answers hasSecret, never the secret, and the audit entry redacts it', async () => {
    const set = await unwrap(
      operator.client.retraining.policies.set(
        'det',
        policyBody('http://127.0.0.1:9/hook', { triggers: { samples: { min: 5 } } }),
      ),
    );
    expect(set).toMatchObject({
      modelName: 'det',
      webhook: { url: 'http://127.0.0.1:9/hook', hasSecret: true },
      triggers: { samples: { min: 5, labelled: false } },
      updatedBy: operator.id,
    });
    const got = await unwrap(viewer.client.retraining.policies.get('det'));
    expect(JSON.stringify(got)).not.toContain(SECRET);
    const row = await t.store.retrainingPolicies.get('det');
    expect(row?.webhookSecret).toMatch(/^v1\./);
    expect(JSON.stringify(row)).not.toContain(SECRET);
    expect(readFileSync(join(t.dataDir, 'edgeloop.db')).includes(Buffer.from(SECRET))).toBe(false);
    const [entry] = (await unwrap(t.client.audit.list({ action: 'PUT /api/v1/retraining/policies/:modelName' }))).items;
    expect(entry).toMatchObject({ actor: { id: operator.id }, target: 'det', status: 200 });
    expect(JSON.stringify(entry)).not.toContain(SECRET);
    // A change without the secret keeps the stored one.
    const kept = await unwrap(
      operator.client.retraining.policies.set('det', {
        ...policyBody(null),
        webhook: { url: 'http://127.0.0.1:9/other' },
      }),
    );
    expect(kept.webhook).toEqual({ url: 'http://127.0.0.1:9/other', hasSecret: true });
  });

  it('refuses a bad cron expression, a webhook without a secret, an unknown field, and a viewer', async () => {
    const bad = await t.raw('PUT', '/api/v1/retraining/policies/cls', {
      body: policyBody(null, { triggers: { schedule: { cron: '61 * * * *' } } }),
    });
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/minute/);
    const noSecret = await t.raw('PUT', '/api/v1/retraining/policies/cls', {
      body: { ...policyBody(null), webhook: { url: 'http://127.0.0.1:9/hook' } },
    });
    expect(noSecret.status).toBe(422);
    const unknown = await t.raw('PUT', '/api/v1/retraining/policies/cls', { body: { ...policyBody(null), extra: 1 } });
    expect(unknown.status).toBe(422);
    const badName = await t.raw('PUT', '/api/v1/retraining/policies/Not%20A%20Name', { body: policyBody(null) });
    expect(badName.status).toBe(422);
    const refused = await viewer.client.retraining.policies.set('cls', policyBody(null));
    expect(refused.ok || refused.error.status).toBe(403);
    expect(await t.store.retrainingPolicies.get('cls')).toBeNull();
    expect((await t.raw('GET', '/api/v1/retraining/policies/cls')).status).toBe(404);
  });
});

describe('retraining runs', () => {
  it('fires a manual run: freezes the dataset, names the parent model, and delivers a webhook the receiver verifies', async () => {
    const receiver = await verifyingReceiver();
    try {
      await unwrap(operator.client.retraining.policies.set('det', policyBody(receiver.url)));
      const events: { status: string; attempts: number }[] = [];
      const unsubscribe = t.cp.internals.bus.subscribe((message) => {
        if (message.type === 'retraining.run')
          events.push({ status: message.data.status, attempts: message.data.attempts });
      });
      const run = await unwrap(operator.client.retraining.trigger({ modelName: 'det', note: 'new camera at north' }));
      expect(run).toMatchObject({
        modelName: 'det',
        status: 'delivering',
        parentModel: { id: 'det@1.0.0' },
        reason: { kind: 'manual', detail: 'manual: new camera at north' },
      });
      await t.cp.internals.retraining.deliverer.idle();
      expect(receiver.received).toHaveLength(1);
      expect(receiver.received[0]?.valid).toBe(true);
      const payload = RetrainingWebhookPayload.parse(JSON.parse(receiver.received[0]!.body.toString('utf8')));
      expect(payload.runId).toBe(run.runId);
      expect(payload.dataset.id).toBe(run.datasetId);
      expect(payload.exportUrls.coco).toBe(
        `${t.started.httpUrl}/api/v1/datasets/${encodeURIComponent(run.datasetId)}/export?format=coco`,
      );
      const dataset = await unwrap(t.client.datasets.get(run.datasetId));
      expect(dataset.counts.total).toBe(1);
      const delivered = await unwrap(viewer.client.retraining.run(run.runId));
      expect(delivered).toMatchObject({ status: 'delivered', attempts: 1, lastStatusCode: 202, lastError: null });
      unsubscribe();
      // The console hears of the run as it fires and as it is delivered (SSE retraining.run).
      expect(events).toEqual([
        { status: 'delivering', attempts: 0 },
        { status: 'delivered', attempts: 1 },
      ]);
      const log = await unwrap(viewer.client.retraining.runs({ status: 'delivered' }));
      expect(log.items.map((r) => r.runId)).toContain(run.runId);
    } finally {
      receiver.server.close();
    }
  });

  it('leaves a run without a webhook pending for pullers, who claim it once and link the model trained from it', async () => {
    await unwrap(operator.client.retraining.policies.set('det', policyBody(null)));
    const run = await unwrap(operator.client.retraining.trigger({ modelName: 'det' }));
    expect(run).toMatchObject({ status: 'pending', webhookUrl: null, attempts: 0 });
    const pending = await unwrap(viewer.client.retraining.runs({ status: 'pending' }));
    expect(pending.items.map((r) => r.runId)).toEqual([run.runId]);

    const claimed = await unwrap(operator.client.retraining.claim(run.runId, { trainer: 'gpu-box-1' }));
    expect(claimed).toMatchObject({ status: 'claimed', claimedBy: 'gpu-box-1' });
    const again = await operator.client.retraining.claim(run.runId);
    expect(again.ok || again.error.status).toBe(409);
    expect((await unwrap(viewer.client.retraining.runs({ status: 'pending' }))).items).toEqual([]);

    const unknown = await operator.client.retraining.complete(run.runId, 'det@9.9.9');
    expect(unknown.ok || unknown.error.status).toBe(404);
    await kit.publish(operator.client, kit.modelBytes(600), {
      name: 'det',
      version: '2.0.0',
      adapter: 'yolo',
      labels: ['text'],
    });
    const linked = await unwrap(operator.client.retraining.complete(run.runId, 'det@2.0.0'));
    expect(linked).toMatchObject({ status: 'model-registered', resultModelId: 'det@2.0.0' });
    expect((await t.store.retrainingRuns.byResultModel('det@2.0.0'))?.runId).toBe(run.runId);
    const [entry] = (await unwrap(t.client.audit.list({ action: 'POST /api/v1/retraining/runs/:runId/claim' }))).items;
    expect(entry).toMatchObject({ actor: { id: operator.id }, target: run.runId });
  });

  it('replays a manual run sent again with the same Idempotency-Key instead of firing a second one', async () => {
    await unwrap(operator.client.retraining.policies.set('det', policyBody(null)));
    const before = (await t.store.retrainingRuns.list({ modelName: 'det', limit: 100 })).length;
    const send = () =>
      t.raw('POST', '/api/v1/retraining/runs', {
        token: operator.secret,
        body: { modelName: 'det' },
        headers: { 'Idempotency-Key': 'manual-det-1' },
      });
    const first = await send();
    const again = await send();
    expect([first.status, again.status]).toEqual([201, 201]);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(((await again.json()) as { runId: string }).runId).toBe(((await first.json()) as { runId: string }).runId);
    expect((await t.store.retrainingRuns.list({ modelName: 'det', limit: 100 })).length).toBe(before + 1);
  });

  it('answers 404 for a manual run of a name without a policy, and 422 when its dataset query matches nothing', async () => {
    const none = await operator.client.retraining.trigger({ modelName: 'nopolicy' });
    expect(none.ok || none.error.status).toBe(404);
    await unwrap(
      operator.client.retraining.policies.set('empty', {
        dataset: { name: 'retrain-empty', query: { site: 'nowhere' } },
      }),
    );
    const empty = await operator.client.retraining.trigger({ modelName: 'empty' });
    expect(empty.ok || empty.error.message).toMatch(/matches no stored sample/);
  });

  it('fires the samples trigger from the loop once enough new samples arrived, then holds it for the cooldown', async () => {
    const loop = t.cp.internals.retraining.loop;
    await unwrap(
      operator.client.retraining.policies.set('ocr', {
        dataset: { name: 'retrain-ocr', query: { site: 'east' } },
        triggers: { samples: { min: 2 } },
        cooldownS: 600,
      }),
    );
    await storeSampleIn(t, 11, { site: 'east', labels: { site: 'east' } });
    expect((await loop.tick({ force: true })).fired).toBe(0);
    await storeSampleIn(t, 12, { site: 'east', labels: { site: 'east' } });
    const report = await loop.tick({ force: true });
    expect(report).toMatchObject({ leader: true, fired: 1 });
    const [run] = (await unwrap(viewer.client.retraining.runs({ model: 'ocr' }))).items;
    expect(run).toMatchObject({
      status: 'pending',
      createdBy: 'system:retraining',
      reason: { kind: 'samples', numbers: { samples: 2, min: 2 } },
    });
    const [entry] = (await unwrap(t.client.audit.list({ action: 'retraining.triggered' }))).items;
    expect(entry).toMatchObject({ actor: { id: 'system:retraining' }, target: run?.runId });
    // Two more samples, but within the cooldown: nothing; after it: a second run.
    await storeSampleIn(t, 13, { site: 'east', labels: { site: 'east' } });
    await storeSampleIn(t, 14, { site: 'east', labels: { site: 'east' } });
    expect((await loop.tick({ force: true })).fired).toBe(0);
    offset += 601_000;
    expect((await loop.tick({ force: true })).fired).toBe(1);
    expect((await unwrap(viewer.client.retraining.runs({ model: 'ocr' }))).items).toHaveLength(2);
    // A page at a time: the cursor of the first page brings the second, and a forged one is a 400.
    const first = await unwrap(viewer.client.retraining.runs({ model: 'ocr', limit: 1 }));
    expect(first.nextCursor).not.toBeNull();
    const second = await unwrap(viewer.client.retraining.runs({ model: 'ocr', limit: 1, cursor: first.nextCursor! }));
    expect(second.nextCursor).toBeNull();
    expect([...first.items, ...second.items].map((r) => r.runId)).toEqual(
      (await unwrap(viewer.client.retraining.runs({ model: 'ocr' }))).items.map((r) => r.runId),
    );
    expect((await t.raw('GET', '/api/v1/retraining/runs?cursor=bm9wZQ')).status).toBe(400);
    expect((await t.raw('GET', '/api/v1/retraining/runs?status=lost')).status).toBe(422);
  });

  it('retries a receiver that never answers with backoff until the run fails, while ingest keeps storing telemetry', async () => {
    // Accepts the connection and never answers: each attempt waits for its timeout (1 s).
    const hanging = createServer(() => {});
    const url = await listen(hanging);
    try {
      await unwrap(operator.client.retraining.policies.set('det', policyBody(url)));
      const run = await unwrap(operator.client.retraining.trigger({ modelName: 'det' }));
      const device = await t.device('cam-ingest', { labels: { site: 'north' } });
      // While the first attempt hangs, 30 telemetry messages are acknowledged and stored.
      const sent: string[] = [];
      for (let i = 0; i < 30; i++) {
        sent.push((await device.send('telemetry', { intervalS: 10, system: SYSTEM })).msgId);
      }
      await t.cp.internals.ingest.flush();
      const stored = await t.store.messages.count('cam-ingest');
      const during = (await unwrap(viewer.client.retraining.run(run.runId)))!;
      expect(stored).toBe(30);
      expect(during).toMatchObject({ status: 'delivering', attempts: 0 });

      const deliverer = t.cp.internals.retraining.deliverer;
      await deliverer.idle();
      const waits: number[] = [];
      for (let attempt = 1; attempt < 3; attempt++) {
        const current = (await t.store.retrainingRuns.get(run.runId))!;
        expect(current).toMatchObject({ status: 'delivering', attempts: attempt, lastStatusCode: null });
        expect(current.lastError).toBe('no answer in time');
        waits.push(current.nextAttemptAt! - current.deliveries.at(-1)!.at);
        offset += current.nextAttemptAt! - now() + 1;
        await deliverer.deliverDue();
      }
      // base 30 s doubling, capped at 60 s, with jitter over the upper half of each wait.
      expect(waits[0]).toBeGreaterThanOrEqual(15_000);
      expect(waits[0]).toBeLessThanOrEqual(30_000);
      expect(waits[1]).toBeGreaterThanOrEqual(30_000);
      expect(waits[1]).toBeLessThanOrEqual(60_000);
      const failed = await unwrap(viewer.client.retraining.runs({ status: 'failed' }));
      const entry = failed.items.find((r) => r.runId === run.runId);
      expect(entry).toMatchObject({ status: 'failed', attempts: 3, lastStatusCode: null, nextAttemptAt: null });
      expect(entry?.deliveries.map((d) => d.error)).toEqual([
        'no answer in time',
        'no answer in time',
        'no answer in time',
      ]);
      // Ingest kept going all along.
      await device.send('telemetry', { intervalS: 10, system: SYSTEM });
      await t.cp.internals.ingest.flush();
      expect(await t.store.messages.count('cam-ingest')).toBe(31);
    } finally {
      hanging.closeAllConnections();
      hanging.close();
    }
  }, 20_000);
});
