import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPair } from '@edgeloop/firmware-images';
import { ModelView, unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../src/config.ts';
import { toModelAssignment as assignmentOf } from '../src/models/registry.ts';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';
import { createSigningKit, postModelForm, type SigningKit, uploadForm } from './model-fixtures.ts';

const manifest = (version: string) => ({ name: 'det', version, adapter: 'yolo' as const, labels: ['car'] });
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

let kit: SigningKit;
let t: TestControlPlane;
let bytes: Buffer;

async function errorOf(response: Response) {
  const body = (await response.json()) as { error: { code: string; message: string } };
  return { status: response.status, code: body.error.code, message: body.error.message };
}

beforeAll(async () => {
  kit = createSigningKit();
  bytes = kit.modelBytes(300_000);
  t = await startTestControlPlane({ trustedKeys: kit.publicKeyPath, models: { uploadLimitBytes: 1024 * 1024 } });
});

afterAll(async () => {
  await t?.stop();
  kit?.dispose();
});

describe('model upload', () => {
  it('registers a signed release and its file, stored once under its sha256, and lists and serves its metadata', async () => {
    const signed = await kit.sign(bytes, manifest('1.0.0'));
    const response = await postModelForm(t, uploadForm(signed, bytes));
    expect(response.status).toBe(201);
    const model = ModelView.parse(await response.json());
    expect(model).toMatchObject({
      id: 'det@1.0.0',
      sha256: sha256(bytes),
      sizeBytes: bytes.length,
      releaseCounter: 1,
      adapter: 'yolo',
      keyId: kit.key.keyId,
      url: '/api/v1/models/det/1.0.0/file',
      signed,
    });
    const hash = sha256(bytes);
    expect(existsSync(join(t.dataDir, 'blobs', 'sha256', hash.slice(0, 2), hash))).toBe(true);
    expect(readdirSync(join(t.dataDir, 'blobs', 'tmp'))).toEqual([]);

    expect((await unwrap(t.client.models.get('det', '1.0.0'))).signed).toEqual(signed);
    const list = await unwrap(t.client.models.list({ name: 'det' }));
    expect(list.items.map((m) => m.id)).toContain('det@1.0.0');
    expect(await errorOf(await t.raw('GET', '/api/v1/models/det/9.9.9'))).toMatchObject({ status: 404 });
  });

  it('answers a repeated upload of the same release and bytes with the existing model (idempotent)', async () => {
    const signed = await kit.sign(bytes, manifest('1.1.0'));
    expect((await postModelForm(t, uploadForm(signed, bytes))).status).toBe(201);
    const again = await postModelForm(t, uploadForm(signed, bytes));
    expect(again.status).toBe(200);
    expect(ModelView.parse(await again.json()).id).toBe('det@1.1.0');
  });

  it('refuses other bytes or another release under an existing name and version with 409', async () => {
    const first = await kit.sign(bytes, manifest('1.2.0'));
    expect((await postModelForm(t, uploadForm(first, bytes))).status).toBe(201);
    const other = kit.modelBytes(1000);
    const otherBytes = await kit.sign(other, manifest('1.2.0'));
    expect(await errorOf(await postModelForm(t, uploadForm(otherBytes, other)))).toMatchObject({
      status: 409,
      code: 'conflict',
    });
    const otherRelease = await kit.sign(bytes, manifest('1.2.0'), { releaseCounter: 7 });
    expect(await errorOf(await postModelForm(t, uploadForm(otherRelease, bytes)))).toMatchObject({
      status: 409,
      code: 'conflict',
    });
  });

  it('stores the same bytes once when two versions share them', async () => {
    const shared = kit.modelBytes(5000);
    for (const version of ['3.0.0', '3.0.1']) {
      expect((await postModelForm(t, uploadForm(await kit.sign(shared, manifest(version)), shared))).status).toBe(201);
    }
    const hash = sha256(shared);
    expect(readdirSync(join(t.dataDir, 'blobs', 'sha256', hash.slice(0, 2))).filter((f) => f === hash)).toHaveLength(1);
  });

  it('refuses unknown keys, bad signatures, expired releases and mismatched bytes, each with its own code', async () => {
    const stranger = generateKeyPair();
    const unknown = await kit.sign(bytes, manifest('4.0.0'), { key: stranger });
    expect(await errorOf(await postModelForm(t, uploadForm(unknown, bytes)))).toMatchObject({
      status: 422,
      code: 'unknown_key',
    });

    const genuine = await kit.sign(bytes, manifest('4.0.1'));
    const tampered = { ...genuine, release: { ...genuine.release, releaseCounter: 99 } };
    expect(await errorOf(await postModelForm(t, uploadForm(tampered, bytes)))).toMatchObject({
      status: 422,
      code: 'bad_signature',
    });

    const expired = await kit.sign(bytes, manifest('4.0.2'), { issuedAt: Date.now() - 10_000, ttlMs: 5_000 });
    expect(await errorOf(await postModelForm(t, uploadForm(expired, bytes)))).toMatchObject({
      status: 422,
      code: 'expired',
    });

    const sameSize = kit.modelBytes(bytes.length);
    expect(await errorOf(await postModelForm(t, uploadForm(genuine, sameSize)))).toMatchObject({
      status: 422,
      code: 'hash_mismatch',
    });
    expect(await errorOf(await postModelForm(t, uploadForm(genuine, bytes.subarray(0, 1000))))).toMatchObject({
      status: 422,
      code: 'size_mismatch',
    });
    expect(await errorOf(await postModelForm(t, uploadForm('{"release": nope', bytes)))).toMatchObject({
      status: 422,
      code: 'malformed',
    });
    expect(await errorOf(await postModelForm(t, uploadForm({ release: {}, signature: 'x' }, bytes)))).toMatchObject({
      status: 422,
      code: 'malformed',
    });
    // Nothing of the refused uploads is kept.
    expect(readdirSync(join(t.dataDir, 'blobs', 'tmp'))).toEqual([]);
    expect((await t.raw('GET', '/api/v1/models/det/4.0.1')).status).toBe(404);
  });

  it('serves versions with build metadata at the url the model view names', async () => {
    const small = kit.modelBytes(3000);
    const signed = await kit.sign(small, manifest('8.0.0+build.7'));
    const created = ModelView.parse(await (await postModelForm(t, uploadForm(signed, small))).json());
    expect(created.url).toBe('/api/v1/models/det/8.0.0%2Bbuild.7/file');
    const file = await t.raw('GET', created.url);
    expect(file.status).toBe(200);
    expect(Buffer.from(await file.arrayBuffer()).equals(small)).toBe(true);
    expect((await t.raw('GET', '/api/v1/models/det/8.0.0%2Bbuild.7')).status).toBe(200);
  });

  it('refuses a correctly signed file that is not ONNX', async () => {
    const json = Buffer.from(JSON.stringify({ not: 'a model' }));
    const signed = await kit.sign(json, manifest('5.0.0'));
    expect(await errorOf(await postModelForm(t, uploadForm(signed, json)))).toMatchObject({
      status: 422,
      code: 'invalid_model',
    });
  });

  it('refuses bodies that are not the two-part form, uploads over the limit, and callers below operator', async () => {
    const signed = await kit.sign(bytes, manifest('6.0.0'));
    const onlyRelease = new FormData();
    onlyRelease.append('release', JSON.stringify(signed));
    expect(await errorOf(await postModelForm(t, onlyRelease))).toMatchObject({ status: 400, code: 'bad_request' });
    const extra = uploadForm(signed, bytes);
    extra.append('comment', 'hello');
    expect(await errorOf(await postModelForm(t, extra))).toMatchObject({ status: 400 });
    const json = await t.raw('POST', '/api/v1/models', { body: { release: signed } });
    expect(await errorOf(json)).toMatchObject({ status: 400, code: 'bad_request' });

    const big = kit.modelBytes(1024 * 1024 + 10);
    const bigSigned = await kit.sign(big, manifest('6.0.1'));
    expect(await errorOf(await postModelForm(t, uploadForm(bigSigned, big)))).toMatchObject({
      status: 413,
      code: 'payload_too_large',
    });

    const viewer = await t.createToken('viewer', 'v');
    expect((await postModelForm(t, uploadForm(signed, bytes), viewer.secret)).status).toBe(403);
    expect((await postModelForm(t, uploadForm(signed, bytes), null)).status).toBe(401);
  });
});

describe('model download', () => {
  let file: Buffer;
  let path: string;

  beforeAll(async () => {
    file = kit.modelBytes(200_000);
    const signed = await kit.sign(file, manifest('7.0.0'));
    expect((await postModelForm(t, uploadForm(signed, file))).status).toBe(201);
    path = '/api/v1/models/det/7.0.0/file';
  });

  // Raw requests over the socket, not a client: these tests are about Range, ETag and the headers.
  const get = (headers: Record<string, string> = {}) =>
    fetch(`${t.started.httpUrl}${path}`, { headers: { authorization: `Bearer ${t.adminToken}`, ...headers } });

  it('serves the whole file over HTTP with its length, ETag (the sha256) and Accept-Ranges', async () => {
    const response = await get();
    expect(response.status).toBe(200);
    expect(response.headers.get('content-length')).toBe(String(file.length));
    expect(response.headers.get('etag')).toBe(`"${sha256(file)}"`);
    expect(response.headers.get('accept-ranges')).toBe('bytes');
    expect(Buffer.from(await response.arrayBuffer()).equals(file)).toBe(true);
  });

  it('serves byte ranges with 206 and Content-Range: first bytes, middle, open-ended and suffix', async () => {
    const cases: [string, number, number][] = [
      ['bytes=0-99', 0, 99],
      ['bytes=1000-1999', 1000, 1999],
      ['bytes=150000-', 150_000, file.length - 1],
      ['bytes=-500', file.length - 500, file.length - 1],
    ];
    for (const [range, start, end] of cases) {
      const response = await get({ range });
      expect(response.status, range).toBe(206);
      expect(response.headers.get('content-range')).toBe(`bytes ${start}-${end}/${file.length}`);
      expect(response.headers.get('content-length')).toBe(String(end - start + 1));
      expect(Buffer.from(await response.arrayBuffer()).equals(file.subarray(start, end + 1)), range).toBe(true);
    }
  });

  it('answers a range past the end with 416 and the size, and ignores a range whose If-Range is stale', async () => {
    const response = await get({ range: `bytes=${file.length}-` });
    expect(response.status).toBe(416);
    expect(response.headers.get('content-range')).toBe(`bytes */${file.length}`);
    expect((await response.json()) as unknown).toMatchObject({ error: { code: 'range_not_satisfiable' } });
    const stale = await get({ range: 'bytes=0-9', 'if-range': '"not-the-etag"' });
    expect(stale.status).toBe(200);
    expect((await stale.arrayBuffer()).byteLength).toBe(file.length);
  });

  it('lets a device download with its own credential only a model assigned to it; a wrong secret is 401', async () => {
    const enrolled = await t.enroll('dl-cam');
    const basic = (secret: string) => `Basic ${Buffer.from(`dl-cam:${secret}`).toString('base64')}`;
    const asDevice = (secret: string, range?: string) =>
      fetch(`${t.started.httpUrl}${path}`, {
        headers: { authorization: basic(secret), ...(range ? { range } : {}) },
      });
    expect(await errorOf(await asDevice('not-the-secret'))).toMatchObject({ status: 401, code: 'unauthorized' });
    expect(
      await errorOf(
        await fetch(`${t.started.httpUrl}${path}`, {
          headers: {
            authorization: `Basic ${Buffer.from(`ghost:${enrolled.credentials.password}`).toString('base64')}`,
          },
        }),
      ),
    ).toMatchObject({ status: 401 });
    expect(await errorOf(await asDevice(enrolled.credentials.password))).toMatchObject({
      status: 403,
      code: 'forbidden',
    });

    const model = await t.cp.internals.registry.get('det', '7.0.0');
    await t.cp.internals.fleet.setDesired('dl-cam', {
      model: assignmentOf(model!, null, 'active', Date.now() + 86_400_000),
    });
    const allowed = await asDevice(enrolled.credentials.password, 'bytes=10-19');
    expect(allowed.status).toBe(206);
    expect(Buffer.from(await allowed.arrayBuffer()).equals(file.subarray(10, 20))).toBe(true);

    // Another device is still refused; a rollout assignment lets it in.
    const other = await t.enroll('dl-cam-2');
    const asOther = () =>
      fetch(`${t.started.httpUrl}${path}`, {
        headers: { authorization: `Basic ${Buffer.from(`dl-cam-2:${other.credentials.password}`).toString('base64')}` },
      });
    expect((await asOther()).status).toBe(403);
    const store = t.cp.internals.store;
    await store.rollouts.create(
      {
        id: 'r-dl',
        modelId: 'det@7.0.0',
        spec: {},
        status: 'running',
        stageIndex: 0,
        stageStartedAt: 0,
        failingWindows: 0,
        lastEvaluatedAt: null,
        cohorts: { canary: [], control: [], order: [] },
        reason: null,
        version: 1,
        createdAt: 0,
        updatedAt: 0,
        createdBy: null,
      },
      { rolloutId: 'r-dl', at: 0, type: 'created', stage: null, data: {} },
    );
    await store.rollouts.putAssignments([
      {
        rolloutId: 'r-dl',
        deviceId: 'dl-cam-2',
        mode: 'shadow',
        stageIndex: 0,
        state: 'assigned',
        previous: null,
        assignedAt: 0,
        updatedAt: 0,
        reason: null,
      },
    ]);
    // Paused, so the engine leaves this hand-made rollout alone.
    await store.rollouts.update('r-dl', 1, { status: 'paused' }, 0);
    const viaRollout = await asOther();
    expect(viaRollout.status).toBe(200);
    await viaRollout.arrayBuffer();
  });

  it('counts concurrent downloads, their peak and the bytes served in /metrics', async () => {
    const downloads = t.cp.internals.registry.downloads;
    downloads.resetPeak();
    const before = downloads.peak;
    // Through app.request: the response body is pulled only as the reader reads, so all three
    // stay open (over a socket, a small file would be flushed into kernel buffers at once).
    const readers = await Promise.all(
      [0, 1, 2].map(async () => {
        const response = await t.raw('GET', path);
        const reader = response.body!.getReader();
        await reader.read();
        return reader;
      }),
    );
    expect(downloads.active).toBe(3);
    const text = await (await t.raw('GET', '/metrics')).text();
    expect(text).toMatch(/edgeloop_model_downloads_peak (\d+)/);
    expect(Number(/edgeloop_model_downloads_peak (\d+)/.exec(text)?.[1])).toBeGreaterThanOrEqual(Math.max(3, before));
    expect(Number(/edgeloop_model_downloads_active (\d+)/.exec(text)?.[1])).toBe(3);
    expect(Number(/edgeloop_model_download_bytes_total (\d+)/.exec(text)?.[1])).toBeGreaterThan(0);
    await Promise.all(readers.map((reader) => reader.cancel()));
    expect(downloads.active).toBe(0);
  });
});

describe('trusted keys', () => {
  it('refuses uploads with no_trusted_keys when none are configured', async () => {
    const bare = await startTestControlPlane();
    try {
      const signed = await kit.sign(bytes, manifest('1.0.0'));
      expect(await errorOf(await postModelForm(bare, uploadForm(signed, bytes)))).toMatchObject({
        status: 422,
        code: 'no_trusted_keys',
      });
    } finally {
      await bare.stop();
    }
  });

  it('fails the start, naming the file, when a trusted key file holds a private key', async () => {
    const privatePath = join(kit.dir, 'oops.pub');
    writeFileSync(privatePath, kit.key.privateKeyPem);
    await expect(startTestControlPlane({ trustedKeys: `${kit.publicKeyPath},${privatePath}` })).rejects.toSatisfy(
      (error: unknown) => error instanceof ConfigError && /oops\.pub.*private key/.test(error.message),
    );
  });

  it('reads every .pub file of a directory, so keys can rotate', async () => {
    const keys = join(kit.dir, 'keys');
    mkdirSync(keys);
    const next = generateKeyPair();
    writeFileSync(join(keys, 'current.pub'), kit.key.publicKeyPem);
    writeFileSync(join(keys, 'next.pub'), next.publicKeyPem);
    writeFileSync(join(keys, 'README'), 'not a key');
    const rotated = await startTestControlPlane({ trustedKeys: keys });
    try {
      expect([...rotated.cp.internals.registry.trustedKeyIds].sort()).toEqual([kit.key.keyId, next.keyId].sort());
    } finally {
      await rotated.stop();
    }
  });
});
