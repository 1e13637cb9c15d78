import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type ApiResult,
  type AuditList,
  type AuditQuery,
  type CreateTokenResponse,
  topicFor,
  unwrap,
} from '@edgeloop/protocol';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeSampleIn, untar } from './dataset-fixtures.ts';
import { startTestControlPlane, type TestControlPlane, type TestToken } from './harness.ts';
import { createSigningKit, type SigningKit, uploadForm } from './model-fixtures.ts';
import { basicAuth, makeJpeg, metadataFor, sha256Hex, uploadSample } from './sample-fixtures.ts';

/*
 * Governance (issue 12): every mutating route of the OpenAPI document is called once and found in
 * the audit log with its actor; the audit route is admin only and pages; Idempotency-Key replays.
 */

let t: TestControlPlane;
let kit: SigningKit;
let operator: TestToken;
let viewer: TestToken;

const audit = (query: Partial<AuditQuery> = {}): Promise<AuditList> => unwrap(t.client.audit.list(query));

beforeAll(async () => {
  kit = createSigningKit();
  t = await startTestControlPlane({ trustedKeys: kit.publicKeyPath });
  operator = await t.createToken('operator', 'operator-1');
  viewer = await t.createToken('viewer', 'viewer-1');
}, 30_000);

afterAll(async () => {
  await t?.stop();
  kit?.dispose();
});

describe('audit log', () => {
  it('has an entry with its actor for every mutating route of the OpenAPI document', async () => {
    const doc = (await (await t.raw('GET', '/api/v1/openapi.json')).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const mutating = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops)
        .filter((method) => method !== 'get')
        .map((method) => `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
    );

    const d = await t.device('audit-cam', { labels: { site: 'north' } });
    await d.answerCommands(() => ({ ok: true, data: { pong: true } }));
    const bytes = kit.modelBytes(2048);
    let rolloutId = '';
    let retrainingRunId = '';
    const op = operator.client;
    /** What a typed call answered: its HTTP status (200 for any success). */
    const statusOf = async (call: Promise<ApiResult<unknown>>) => {
      const result = await call;
      return result.ok ? 200 : (result.error.status ?? 0);
    };
    const calls: Record<string, () => Promise<Response | number>> = {
      'POST /api/v1/devices': () => statusOf(t.client.devices.enroll({ id: 'audit-new', labels: {} })),
      'PATCH /api/v1/devices/:id': () => statusOf(op.devices.setLabels('audit-new', { site: 'south' })),
      'PUT /api/v1/devices/:id/desired': () => statusOf(op.devices.setDesired('audit-new', { config: { fps: 5 } })),
      'POST /api/v1/devices/:id/commands': () => statusOf(op.devices.command('audit-cam', { name: 'ping', args: {} })),
      'POST /api/v1/devices/:id/credentials/rotate': () =>
        statusOf(op.devices.rotateCredentials('audit-new', { deliver: false })),
      'DELETE /api/v1/devices/:id/samples': () => statusOf(t.client.devices.purgeSamples('audit-new')),
      'DELETE /api/v1/devices/:id': () => statusOf(t.client.devices.revoke('audit-new')),
      'POST /api/v1/tokens': () => statusOf(t.client.tokens.create({ name: 'temp', role: 'viewer' })),
      'DELETE /api/v1/tokens/:id': async () => {
        const made = await t.createToken('viewer', 'gone');
        return statusOf(t.client.tokens.revoke(made.id));
      },
      'POST /api/v1/models': async () => {
        await kit.publish(op, bytes, { name: 'det', version: '1.0.0', adapter: 'yolo', labels: ['car'] });
        return 201;
      },
      'POST /api/v1/rollouts': async () => {
        const created = await unwrap(
          op.rollouts.create({ modelId: 'det@1.0.0', selector: { labels: { site: 'north' } } }),
        );
        rolloutId = created.id;
        return 201;
      },
      'PUT /api/v1/sample-policy': () =>
        statusOf(op.samples.policy.set({ selector: { labels: { site: 'north' } }, policy: null })),
      'POST /api/v1/samples/uploads': async () => {
        const jpeg = await makeJpeg(32, 24, 7);
        await uploadSample(
          t.started.httpUrl,
          basicAuth(d.id, d.password),
          metadataFor(d.id, jpeg, { width: 32, height: 24 }),
          jpeg,
          512,
        );
        return 201;
      },
      'POST /api/v1/samples': async () => {
        const jpeg = await makeJpeg(32, 24, 8);
        const form = new FormData();
        form.append('metadata', JSON.stringify(metadataFor(d.id, jpeg, { width: 32, height: 24 }, { seq: 2 })));
        form.append('image', new Blob([jpeg]), 'sample.jpg');
        return t.cp.internals.app.request('/api/v1/samples', {
          method: 'POST',
          headers: { authorization: basicAuth(d.id, d.password) },
          body: form,
        });
      },
      'POST /api/v1/datasets': async () => {
        await storeSampleIn(t, 1);
        return statusOf(op.datasets.create({ name: 'audited', query: {} }));
      },
      'PUT /api/v1/datasets/:id/labels': async () => {
        const exported = await unwrap(t.client.datasets.export('audited@1', 'coco'));
        const coco = JSON.parse((await untar(exported.body)).get('annotations.json')!.toString('utf8'));
        return statusOf(op.datasets.importLabels('audited@1', coco));
      },
      'POST /api/v1/models/:name/:version/evaluations': () =>
        statusOf(
          op.models.postEvaluation('det', '1.0.0', {
            datasetId: 'audited@2',
            modelSha256: sha256Hex(bytes),
            metrics: { task: 'detection', images: 1, map: 0.5, map50: 0.6, map75: 0.4, accuracy: null, classes: [] },
            evaluator: { tool: 'governance test', version: '0', provider: null, host: null, durationMs: 1 },
          }),
        ),
      'PUT /api/v1/drift/reference': () =>
        statusOf(op.drift.setReference({ scope: 'site', key: 'north', modelSha256: sha256Hex(bytes), source: 'auto' })),
      'PUT /api/v1/retraining/policies/:modelName': () =>
        statusOf(
          op.retraining.policies.set('det', {
            dataset: { name: 'retrain-audited', query: {} },
            webhook: { url: 'http://127.0.0.1:9/hook', secret: 'audited-webhook-secret' },
          }),
        ),
      'POST /api/v1/retraining/runs': async () => {
        // Pull only: no webhook attempt runs behind the test.
        await unwrap(op.retraining.policies.set('det', { dataset: { name: 'retrain-audited', query: {} } }));
        retrainingRunId = (await unwrap(op.retraining.trigger({ modelName: 'det' }))).runId;
        return 201;
      },
      'POST /api/v1/retraining/runs/:runId/claim': () => statusOf(op.retraining.claim(retrainingRunId)),
      'POST /api/v1/retraining/runs/:runId/complete': () =>
        statusOf(op.retraining.complete(retrainingRunId, 'det@1.0.0')),
    };
    // Rollout actions on the rollout made above (each from a state it allows).
    for (const action of ['pause', 'resume', 'promote', 'abort'] as const) {
      calls[`POST /api/v1/rollouts/:id/${action}`] = () => statusOf(op.rollouts.act(rolloutId, action));
    }
    // Routes whose call is made inside another's: the chunked sample upload, the one-shot sample upload.
    const coveredBy: Record<string, string> = {
      'PATCH /api/v1/samples/uploads/:id': 'POST /api/v1/samples/uploads',
    };

    for (const route of mutating) {
      expect(calls[route] ?? coveredBy[route], `a test call for ${route}`).toBeDefined();
    }
    const order = [
      'POST /api/v1/tokens',
      'DELETE /api/v1/tokens/:id',
      'POST /api/v1/devices',
      'PATCH /api/v1/devices/:id',
      'PUT /api/v1/devices/:id/desired',
      'POST /api/v1/devices/:id/commands',
      'POST /api/v1/devices/:id/credentials/rotate',
      'POST /api/v1/models',
      'POST /api/v1/rollouts',
      'POST /api/v1/rollouts/:id/pause',
      'POST /api/v1/rollouts/:id/resume',
      'POST /api/v1/rollouts/:id/promote',
      'POST /api/v1/rollouts/:id/abort',
      'PUT /api/v1/sample-policy',
      'POST /api/v1/samples/uploads',
      'POST /api/v1/samples',
      'POST /api/v1/datasets',
      'PUT /api/v1/datasets/:id/labels',
      'POST /api/v1/models/:name/:version/evaluations',
      'PUT /api/v1/drift/reference',
      'PUT /api/v1/retraining/policies/:modelName',
      'POST /api/v1/retraining/runs',
      'POST /api/v1/retraining/runs/:runId/claim',
      'POST /api/v1/retraining/runs/:runId/complete',
      'DELETE /api/v1/devices/:id/samples',
      'DELETE /api/v1/devices/:id',
    ];
    expect([...order].sort()).toEqual(Object.keys(calls).sort());
    const statuses: Record<string, number> = {};
    for (const route of order) {
      const answer = await calls[route]!();
      statuses[route] = typeof answer === 'number' ? answer : answer.status;
    }
    const failed = Object.entries(statuses).filter(([, status]) => status >= 400);
    expect(failed, 'every call succeeds').toEqual([]);

    const entries = (await audit({ limit: 500 })).items;
    for (const route of mutating) {
      const entry = entries.find((item) => item.action === route);
      expect(entry, `an audit entry for ${route}`).toBeDefined();
      expect(entry!.actor.id.length).toBeGreaterThan(0);
      expect(['admin', 'operator', 'device']).toContain(entry!.actor.role);
    }
    const byAction = (action: string) => entries.find((item) => item.action === action)!;
    expect(byAction('POST /api/v1/devices').actor).toEqual({ id: expect.any(String), role: 'admin' });
    expect(byAction('POST /api/v1/devices').target).toBe('audit-new');
    expect(byAction('POST /api/v1/rollouts/:id/abort')).toMatchObject({
      actor: { id: operator.id, role: 'operator' },
      target: rolloutId,
      resource: 'rollouts',
    });
    const sampleEntry = byAction('POST /api/v1/samples/uploads');
    expect(sampleEntry.actor).toEqual({ id: 'device:audit-cam', role: 'device' });
    // Over a real socket the source address is known.
    expect(sampleEntry.source).toMatch(/127\.0\.0\.1/);
    // Secrets never reach the log: the enrollment password and the new token's secret.
    const text = JSON.stringify(entries);
    expect(text).not.toContain(d.password);
    expect(text).not.toContain(operator.secret);
    expect(text).not.toContain('audited-webhook-secret');
  }, 60_000);

  it('records the request id and a redacted summary', async () => {
    const response = await t.raw('POST', '/api/v1/tokens', {
      body: { name: 'ci', role: 'operator' },
      headers: { 'x-request-id': 'req-audit-1' },
    });
    expect(response.status).toBe(201);
    expect(response.headers.get('x-request-id')).toBe('req-audit-1');
    const created = (await response.json()) as CreateTokenResponse;
    const [entry] = (await audit({ target: created.token.id })).items;
    expect(entry).toMatchObject({
      action: 'POST /api/v1/tokens',
      requestId: 'req-audit-1',
      status: 201,
      summary: {
        body: { name: 'ci', role: 'operator' },
        result: { id: created.token.id, name: 'ci', role: 'operator' },
      },
    });
    expect(JSON.stringify(entry)).not.toContain(created.secret);
  });

  it('enters the rollout engine changes as system:rollouts', async () => {
    await t.device('engine-cam', { labels: { site: 'engine' } });
    const bytes = kit.modelBytes(1024);
    const signed = await kit.sign(bytes, { name: 'eng', version: '1.0.0', adapter: 'yolo', labels: ['car'] });
    await unwrap(t.client.models.upload({ release: JSON.stringify(signed), model: new Blob([bytes]) }));
    const { id } = await unwrap(
      t.client.rollouts.create({ modelId: 'eng@1.0.0', selector: { labels: { site: 'engine' } } }),
    );
    await t.cp.internals.rollouts.engine.tick();
    const entries = (await audit({ actor: 'system:rollouts', target: id })).items;
    expect(entries.length).toBeGreaterThan(0);
    expect(entries[0]).toMatchObject({
      actor: { id: 'system:rollouts', role: 'system' },
      resource: 'rollouts',
      target: id,
    });
    expect(entries.map((entry) => entry.action)).toContain('rollout.assigned');
  });

  it('is admin only, has no route that edits or deletes it, and pages with a cursor', async () => {
    expect((await t.raw('GET', '/api/v1/audit', { token: operator.secret })).status).toBe(403);
    expect((await t.raw('GET', '/api/v1/audit', { token: viewer.secret })).status).toBe(403);
    expect((await t.raw('GET', '/api/v1/audit', { token: null })).status).toBe(401);
    for (const method of ['DELETE', 'PUT', 'PATCH', 'POST']) {
      expect((await t.raw(method, '/api/v1/audit')).status).toBe(404);
    }
    const first = await audit({ limit: 2 });
    expect(first.items).toHaveLength(2);
    const second = await audit({ limit: 2, cursor: first.nextCursor ?? undefined });
    expect(second.items[0]!.id).toBeLessThan(first.items[1]!.id);
    expect((await t.raw('GET', '/api/v1/audit?cursor=nonsense')).status).toBe(400);
  });
});

describe('Idempotency-Key', () => {
  const enroll = (key: string, body: unknown) =>
    t.raw('POST', '/api/v1/devices', { body, headers: { 'idempotency-key': key } });

  it('replays the identical response for the same key and body, and creates nothing new', async () => {
    const first = await enroll('"enroll-1"', { id: 'idem-cam', labels: { site: 'a' } });
    expect(first.status).toBe(201);
    const firstText = await first.text();
    const again = await enroll('"enroll-1"', { id: 'idem-cam', labels: { site: 'a' } });
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.text()).toBe(firstText);
    // One enrollment in the audit log, and the credential that came back still works (nothing re-enrolled).
    expect((await audit({ target: 'idem-cam' })).items).toHaveLength(1);
    const { credentials } = JSON.parse(firstText) as { credentials: { password: string } };
    const client = await t.connect('idem-cam', credentials.password);
    await client.endAsync();
    // The stored response is ciphertext: the password is not in the database.
    const rows = t.store.db.$client.prepare('SELECT response, key_hash FROM idempotency_keys').all() as {
      response: string;
      key_hash: string;
    }[];
    expect(rows.length).toBeGreaterThan(0);
    expect(JSON.stringify(rows)).not.toContain(credentials.password);
    expect(JSON.stringify(rows)).not.toContain('enroll-1');
  });

  it('answers 422 for the same key with another body', async () => {
    expect((await enroll('enroll-2', { id: 'idem-two' })).status).toBe(201);
    const other = await enroll('enroll-2', { id: 'idem-three' });
    expect(other.status).toBe(422);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe('idempotency_key_reused');
    expect((await t.raw('GET', '/api/v1/devices/idem-three')).status).toBe(404);
  });

  it('answers 409 while a request with the key is in flight', async () => {
    const d = await t.device('slow-cam');
    await d.client.subscribeAsync(topicFor('slow-cam', 'cmd'), { qos: 1 });
    const command = (key: string) =>
      t.raw('POST', '/api/v1/devices/slow-cam/commands', {
        body: { name: 'ping', args: {}, timeoutMs: 1500 },
        headers: { 'idempotency-key': key },
      });
    const slow = command('cmd-1');
    // The device never answers: the first request is still waiting when the second arrives.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const second = await command('cmd-1');
    expect(second.status).toBe(409);
    expect(((await second.json()) as { error: { code: string } }).error.code).toBe('idempotency_key_in_flight');
    expect((await slow).status).toBe(504);
    // A 5xx gives the key back: the retry runs again (and times out again).
    expect((await command('cmd-1')).status).toBe(504);
  });

  it('refuses a malformed key and documents the header on the creating POSTs and the credential rotation', async () => {
    expect((await enroll('"unterminated', { id: 'idem-bad' })).status).toBe(400);
    const doc = (await (await t.raw('GET', '/api/v1/openapi.json')).json()) as {
      paths: Record<string, Record<string, { parameters?: { name: string; in: string }[] }>>;
    };
    const withHeader = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops)
        .filter(([, op]) => op.parameters?.some((p) => p.in === 'header' && p.name === 'Idempotency-Key'))
        .map(([method]) => `${method} ${path}`),
    );
    expect(withHeader.sort()).toEqual([
      'post /api/v1/devices',
      'post /api/v1/devices/{id}/commands',
      'post /api/v1/devices/{id}/credentials/rotate',
      'post /api/v1/models',
      'post /api/v1/retraining/runs',
      'post /api/v1/rollouts',
    ]);
  });

  it('expires keys after the TTL', async () => {
    expect((await enroll('enroll-ttl', { id: 'ttl-cam' })).status).toBe(201);
    const ttl = t.cp.internals.config.idempotency.ttlHours * 3_600_000;
    const pruned = await t.store.idempotency.pruneExpired(Date.now() + ttl + 1, 1000);
    expect(pruned).toBeGreaterThan(0);
    // The key is free again: the same body now runs (and meets the enrolled device).
    expect((await enroll('enroll-ttl', { id: 'ttl-cam' })).status).toBe(409);
  });
});

describe('Idempotency-Key on a model upload (streamed body)', () => {
  it('replays the upload for the same bytes and refuses other bytes under the key', async () => {
    const bytes = kit.modelBytes(4096);
    const signed = await kit.sign(bytes, { name: 'idem', version: '1.0.0', adapter: 'yolo', labels: ['car'] });
    // The same multipart bytes each time (one boundary), as a client retrying its request sends them.
    const encoded = new Response(uploadForm(signed, bytes));
    const contentType = encoded.headers.get('content-type')!;
    const body = new Uint8Array(await encoded.arrayBuffer());
    const send = (key: string, payload: Uint8Array) =>
      t.raw('POST', '/api/v1/models', {
        token: operator.secret,
        raw: payload,
        headers: { 'content-type': contentType, 'idempotency-key': key },
      });
    const first = await send('upload-1', body);
    expect(first.status).toBe(201);
    const again = await send('upload-1', body);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.text()).toBe(await first.text());
    const altered = Uint8Array.from(body);
    altered[altered.length - 60] = altered[altered.length - 60]! ^ 0xff;
    expect((await send('upload-1', altered)).status).toBe(422);
    expect((await audit({ action: 'POST /api/v1/models', target: 'idem@1.0.0' })).items).toHaveLength(1);
  });
});

describe('data directory modes', () => {
  it('are 0700 for folders and 0600 for files after a start', () => {
    expect(statSync(t.dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(t.dataDir, 'edgeloop.db')).mode & 0o777).toBe(0o600);
    expect(statSync(join(t.dataDir, 'server.key')).mode & 0o777).toBe(0o600);
  });

  it('fixes looser modes at start and says so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgeloop-modes-'));
    try {
      chmodSync(dir, 0o755);
      mkdirSync(join(dir, 'blobs'), { mode: 0o777 });
      chmodSync(join(dir, 'blobs'), 0o777);
      writeFileSync(join(dir, 'blobs', 'loose.bin'), 'x', { mode: 0o644 });
      const logs: string[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => logs.push(line) });
      const loose = await startTestControlPlane({ dataDir: dir }, { logger });
      await loose.stop({ keepData: true });
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(statSync(join(dir, 'blobs')).mode & 0o777).toBe(0o700);
      expect(statSync(join(dir, 'blobs', 'loose.bin')).mode & 0o777).toBe(0o600);
      const warning = logs
        .map((line) => JSON.parse(line) as { msg: string; examples?: string[] })
        .find((line) => line.msg.startsWith('data directory modes were looser'));
      expect(warning?.msg).toContain('fixed 3');
      expect(warning?.examples).toContain(`${dir} 0755 -> 0700`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
