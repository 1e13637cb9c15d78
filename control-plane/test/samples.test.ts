import { existsSync, readdirSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import {
  SAMPLE_UPLOAD_CONTENT_TYPE,
  SAMPLE_UPLOAD_OFFSET_HEADER,
  type SampleList,
  type SamplePurgeResult,
  type SampleUploadState,
  type SampleView,
} from '@edgeloop/protocol';
import { sql } from 'drizzle-orm';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';
import { basicAuth, httpRequest, makeJpeg, metadataFor, sha256Hex, uploadSample } from './sample-fixtures.ts';

/*
 * The sample store through a real control plane: device uploads over real HTTP (resumable,
 * idempotent, refused when wrong, nothing partial stored), token reads, purge and retention.
 */

const MAX_BYTES = 600 * 1024;
const clock = { t: 1_800_000_000_000, now: () => clock.t };

let t: TestControlPlane;
let cam1: { id: string; auth: string };
let cam2: { id: string; auth: string };
let viewer: string;

async function device(id: string, labels: Record<string, string> = { site: 'north' }) {
  const enrolled = await t.enroll(id, labels);
  return { id, auth: basicAuth(id, enrolled.credentials.password) };
}

const url = (path: string) => `${t.started.httpUrl}${path}`;

async function begin(auth: string, metadata: unknown) {
  const reply = await httpRequest(url('/api/v1/samples/uploads'), {
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: JSON.stringify(metadata),
  });
  if (!reply) throw new Error('no reply');
  return { status: reply.status, body: JSON.parse(reply.body) as SampleUploadState & { error?: { code: string } } };
}

async function patch(auth: string, uploadId: string, offset: number, bytes: Uint8Array) {
  const reply = await httpRequest(url(`/api/v1/samples/uploads/${uploadId}`), {
    method: 'PATCH',
    headers: {
      authorization: auth,
      'content-type': SAMPLE_UPLOAD_CONTENT_TYPE,
      [SAMPLE_UPLOAD_OFFSET_HEADER]: String(offset),
    },
    body: bytes,
  });
  if (!reply) throw new Error('no reply');
  return reply;
}

async function list(query = '', token?: string): Promise<SampleList> {
  const response = await t.raw('GET', `/api/v1/samples${query}`, token === undefined ? {} : { token });
  expect(response.status).toBe(200);
  return (await response.json()) as SampleList;
}

function uploadsOnDisk(): string[] {
  const dir = join(t.dataDir, 'sample-uploads');
  return existsSync(dir) ? readdirSync(dir) : [];
}

beforeAll(async () => {
  t = await startTestControlPlane({ samples: { maxBytes: MAX_BYTES } }, { clock });
  cam1 = await device('cam-1');
  cam2 = await device('cam-2', { site: 'south', line: 'l2' });
  viewer = (await t.createToken('viewer', 'reader')).secret;
});

afterAll(async () => {
  await t?.stop();
});

describe('sample uploads', () => {
  it('resumes a chunk cut off mid-body from the last acknowledged byte and stores the image exactly', async () => {
    const size = { width: 320, height: 240 };
    const jpeg = await makeJpeg(size.width, size.height, 7);
    const metadata = metadataFor(cam1.id, jpeg, size, { seq: 100 });
    const started = await begin(cam1.auth, metadata);
    expect(started.status).toBe(201);
    expect(started.body).toMatchObject({ offset: 0, complete: false, sampleId: null });
    const uploadId = started.body.uploadId;
    let sent = 0;

    // The first chunk breaks off after 40% of the image.
    const cut = Math.floor(jpeg.length * 0.4);
    const lost = await httpRequest(url(`/api/v1/samples/uploads/${uploadId}`), {
      method: 'PATCH',
      headers: {
        authorization: cam1.auth,
        'content-type': SAMPLE_UPLOAD_CONTENT_TYPE,
        [SAMPLE_UPLOAD_OFFSET_HEADER]: '0',
      },
      body: jpeg,
      cutAfter: cut,
    });
    expect(lost).toBeNull();
    sent += cut;

    // HEAD says what was kept; the device resumes from there.
    let acknowledged = 0;
    for (let i = 0; i < 50 && acknowledged === 0; i++) {
      const head = await httpRequest(url(`/api/v1/samples/uploads/${uploadId}`), {
        method: 'HEAD',
        headers: { authorization: cam1.auth },
      });
      expect(head?.status).toBe(204);
      acknowledged = Number(head?.headers[SAMPLE_UPLOAD_OFFSET_HEADER]);
      if (acknowledged === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(acknowledged).toBeGreaterThan(0);
    expect(acknowledged).toBeLessThanOrEqual(cut);

    const rest = await patch(cam1.auth, uploadId, acknowledged, jpeg.subarray(acknowledged));
    sent += jpeg.length - acknowledged;
    expect(rest.status).toBe(201);
    const done = JSON.parse(rest.body) as SampleUploadState;
    expect(done).toMatchObject({ complete: true, offset: jpeg.length });
    expect(sent / jpeg.length).toBeLessThan(1.3);

    const view = (await (await t.raw('GET', `/api/v1/samples/${done.sampleId}`)).json()) as SampleView;
    expect(view).toMatchObject({
      deviceId: cam1.id,
      strategy: 'near-threshold',
      model: { id: 'det@1.0.0' },
      predictions: [{ label: 'text', score: 0.52 }],
      image: { sha256: sha256Hex(jpeg), bytes: jpeg.length, width: 320, height: 240 },
    });
    const image = await fetch(url(`/api/v1/samples/${done.sampleId}/image`), {
      headers: { authorization: `Bearer ${viewer}` },
    });
    expect(image.headers.get('etag')).toBe(`"${view.image.sha256}"`);
    const served = Buffer.from(await image.arrayBuffer());
    expect(sha256Hex(served)).toBe(view.image.sha256);
    expect(uploadsOnDisk()).toEqual([]);
  });

  it('answers a second upload of the same image as complete, with the same sample, and stores it once', async () => {
    const size = { width: 64, height: 48 };
    const jpeg = await makeJpeg(size.width, size.height, 11);
    const metadata = metadataFor(cam1.id, jpeg, size, { seq: 101 });
    const first = await uploadSample(t.started.httpUrl, cam1.auth, metadata, jpeg);
    const again = await begin(cam1.auth, metadata);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ complete: true, sampleId: first.state.sampleId, offset: jpeg.length });
    const { items } = await list(`?deviceId=${cam1.id}&limit=500`);
    expect(items.filter((s) => s.image.sha256 === sha256Hex(jpeg))).toHaveLength(1);
  });

  it('refuses metadata naming another device (403) and a chunk of another device upload (403)', async () => {
    const jpeg = await makeJpeg(32, 32, 12);
    const foreign = await begin(cam2.auth, metadataFor(cam1.id, jpeg, { width: 32, height: 32 }));
    expect(foreign.status).toBe(403);
    expect(foreign.body.error?.code).toBe('forbidden');
    const own = await begin(cam1.auth, metadataFor(cam1.id, jpeg, { width: 32, height: 32 }, { seq: 102 }));
    const hijack = await patch(cam2.auth, own.body.uploadId, 0, jpeg);
    expect(hijack.status).toBe(403);
    const wrongSecret = await begin(
      basicAuth(cam1.id, 'not-the-secret'),
      metadataFor(cam1.id, jpeg, { width: 32, height: 32 }),
    );
    expect(wrongSecret.status).toBe(401);
  });

  it('refuses malformed metadata with the issues (400) and an image over the size limit (413)', async () => {
    const malformed = await begin(cam1.auth, { deviceId: cam1.id, strategy: 'guess' });
    expect(malformed.status).toBe(400);
    expect(JSON.stringify(malformed.body)).toMatch(/strategy/);
    const jpeg = await makeJpeg(32, 32, 13);
    const big = metadataFor(cam1.id, jpeg, { width: 32, height: 32 });
    const tooLarge = await begin(cam1.auth, { ...big, image: { ...big.image, bytes: MAX_BYTES + 1 } });
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body.error?.code).toBe('payload_too_large');
  });

  it('answers a chunk at the wrong offset with 409 offset_mismatch and the acknowledged offset', async () => {
    const jpeg = await makeJpeg(48, 48, 14);
    const started = await begin(cam1.auth, metadataFor(cam1.id, jpeg, { width: 48, height: 48 }, { seq: 103 }));
    const first = await patch(cam1.auth, started.body.uploadId, 0, jpeg.subarray(0, 100));
    expect(first.status).toBe(204);
    expect(first.headers[SAMPLE_UPLOAD_OFFSET_HEADER]).toBe('100');
    const skipped = await patch(cam1.auth, started.body.uploadId, 50, jpeg.subarray(50));
    expect(skipped.status).toBe(409);
    expect(JSON.parse(skipped.body).error.code).toBe('offset_mismatch');
    expect(skipped.headers[SAMPLE_UPLOAD_OFFSET_HEADER]).toBe('100');
    const resumed = await begin(cam1.auth, metadataFor(cam1.id, jpeg, { width: 48, height: 48 }, { seq: 103 }));
    expect(resumed).toMatchObject({ status: 200, body: { uploadId: started.body.uploadId, offset: 100 } });
  });

  it('discards an upload whose bytes do not hash to the declared sha256 (422) and stores nothing of it', async () => {
    const jpeg = await makeJpeg(40, 30, 15);
    const other = await makeJpeg(40, 30, 16);
    const metadata = metadataFor(cam2.id, jpeg, { width: 40, height: 30 }, { seq: 104 });
    const started = await begin(cam2.auth, { ...metadata, image: { ...metadata.image, bytes: other.length } });
    const reply = await patch(cam2.auth, started.body.uploadId, 0, other);
    expect(reply.status).toBe(422);
    expect(JSON.parse(reply.body).error.code).toBe('hash_mismatch');
    expect((await list(`?deviceId=${cam2.id}`)).items.map((s) => s.image.sha256)).not.toContain(sha256Hex(jpeg));
    expect(t.cp.internals.blobs.sizeOf(sha256Hex(other))).toBeNull();
    expect(uploadsOnDisk()).not.toContain(`${started.body.uploadId}.part`);
    const head = await httpRequest(url(`/api/v1/samples/uploads/${started.body.uploadId}`), {
      method: 'HEAD',
      headers: { authorization: cam2.auth },
    });
    expect(head?.status).toBe(404);
    expect(t.cp.internals.metrics.render()).toMatch(
      /edgeloop_sample_uploads_rejected_total\{reason="hash_mismatch"\} 1/,
    );
  });

  it('never lists a truncated upload, and refuses bytes past the declared size (413)', async () => {
    const jpeg = await makeJpeg(50, 50, 17);
    const started = await begin(cam2.auth, metadataFor(cam2.id, jpeg, { width: 50, height: 50 }, { seq: 105 }));
    expect((await patch(cam2.auth, started.body.uploadId, 0, jpeg.subarray(0, jpeg.length - 10))).status).toBe(204);
    expect((await list(`?deviceId=${cam2.id}`)).items.map((s) => s.image.sha256)).not.toContain(sha256Hex(jpeg));
    const overflow = await patch(cam2.auth, started.body.uploadId, jpeg.length - 10, Buffer.alloc(50));
    expect(overflow.status).toBe(413);
    expect(uploadsOnDisk()).not.toContain(`${started.body.uploadId}.part`);
  });
});

describe('one-request uploads', () => {
  const post = async (auth: string, metadata: unknown, image: Uint8Array) => {
    const form = new FormData();
    form.append('metadata', JSON.stringify(metadata));
    form.append('image', new Blob([image], { type: 'image/jpeg' }), 'sample.jpg');
    const response = await fetch(url('/api/v1/samples'), {
      method: 'POST',
      headers: { authorization: auth },
      body: form,
    });
    return {
      status: response.status,
      body: (await response.json()) as SampleUploadState & { error?: { code: string } },
    };
  };

  it('stores metadata and image sent as one multipart request, once, and refuses bad bytes leaving nothing behind', async () => {
    const jpeg = await makeJpeg(120, 90, 71);
    const metadata = metadataFor(cam1.id, jpeg, { width: 120, height: 90 }, { seq: 500 });
    const stored = await post(cam1.auth, metadata, jpeg);
    expect(stored).toMatchObject({ status: 201, body: { complete: true, offset: jpeg.length } });
    const again = await post(cam1.auth, metadata, jpeg);
    expect(again).toMatchObject({ status: 200, body: { sampleId: stored.body.sampleId } });
    const image = await t.raw('GET', `/api/v1/samples/${stored.body.sampleId}/image`);
    expect(sha256Hex(Buffer.from(await image.arrayBuffer()))).toBe(sha256Hex(jpeg));

    const declared = await makeJpeg(120, 90, 74);
    const other = await makeJpeg(120, 90, 72);
    const lying = metadataFor(cam1.id, declared, { width: 120, height: 90 }, { seq: 501 });
    const wrongHash = await post(cam1.auth, { ...lying, image: { ...lying.image, bytes: other.length } }, other);
    expect(wrongHash).toMatchObject({ status: 422, body: { error: { code: 'hash_mismatch' } } });
    const fresh = await makeJpeg(120, 90, 73);
    const short = await post(
      cam1.auth,
      metadataFor(cam1.id, fresh, { width: 120, height: 90 }, { seq: 502 }),
      fresh.subarray(0, 100),
    );
    expect(short).toMatchObject({ status: 400, body: { error: { code: 'bad_request' } } });
    expect((await post(cam2.auth, metadataFor(cam1.id, fresh, { width: 120, height: 90 }), fresh)).status).toBe(403);
    const listed = (await list(`?deviceId=${cam1.id}&limit=500`)).items.map((s) => s.image.sha256);
    expect(listed).not.toContain(sha256Hex(declared));
    expect(t.cp.internals.blobs.sizeOf(sha256Hex(other))).toBeNull();
    expect(listed).not.toContain(sha256Hex(fresh));
    expect(uploadsOnDisk().filter((name) => name.startsWith('whole-'))).toEqual([]);
  });
});

describe('one-request uploads, streamed or cut off', () => {
  const form = (metadata: unknown, image: Uint8Array) => {
    const boundary = 'edgeloopTestBoundary42';
    return {
      boundary,
      body: Buffer.concat([
        Buffer.from(
          `--${boundary}\r\ncontent-disposition: form-data; name="metadata"\r\n\r\n${JSON.stringify(metadata)}\r\n` +
            `--${boundary}\r\ncontent-disposition: form-data; name="image"; filename="s.jpg"\r\ncontent-type: image/jpeg\r\n\r\n`,
        ),
        image,
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]),
    };
  };

  it('stores a body sent in chunks without a Content-Length (the streamed path) like a whole one', async () => {
    const jpeg = await makeJpeg(160, 120, 81);
    const { boundary, body } = form(metadataFor(cam1.id, jpeg, { width: 160, height: 120 }, { seq: 600 }), jpeg);
    const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(url('/api/v1/samples'), {
        method: 'POST',
        headers: { authorization: cam1.auth, 'content-type': `multipart/form-data; boundary=${boundary}` },
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      });
      req.on('error', reject);
      for (let i = 0; i < body.length; i += 4096) req.write(body.subarray(i, i + 4096));
      req.end();
    });
    expect(reply.status).toBe(201);
    const { sampleId } = JSON.parse(reply.body) as SampleUploadState;
    const image = await t.raw('GET', `/api/v1/samples/${sampleId}/image`);
    expect(sha256Hex(Buffer.from(await image.arrayBuffer()))).toBe(sha256Hex(jpeg));
  });

  it('enters a device upload in the audit log with its device, source and status, answering the device in full', async () => {
    const cam = await device('cam-audited');
    const jpeg = await makeJpeg(40, 30, 83);
    const { boundary, body } = form(metadataFor(cam.id, jpeg, { width: 40, height: 30 }, { seq: 602 }), jpeg);
    const reply = await httpRequest(url('/api/v1/samples'), {
      method: 'POST',
      headers: { authorization: cam.auth, 'content-type': `multipart/form-data; boundary=${boundary}` },
      body,
    });
    expect(reply?.status).toBe(201);
    const state = JSON.parse(reply!.body) as SampleUploadState;
    expect(state).toMatchObject({ complete: true, offset: jpeg.length, sampleId: expect.any(String) });
    const audit = await t.client.audit.list({ actor: `device:${cam.id}`, limit: 50 });
    if (!audit.ok) throw new Error(audit.error.message);
    const entry = audit.value.items.find((item) => item.action === 'POST /api/v1/samples');
    expect(entry).toMatchObject({ actor: { id: `device:${cam.id}`, role: 'device' }, status: 201 });
    expect(entry!.source).toMatch(/127\.0\.0\.1/);
  });

  it('stores nothing of a whole body whose link breaks before its last byte', async () => {
    const jpeg = await makeJpeg(160, 120, 82);
    const { boundary, body } = form(metadataFor(cam1.id, jpeg, { width: 160, height: 120 }, { seq: 601 }), jpeg);
    const lost = await httpRequest(url('/api/v1/samples'), {
      method: 'POST',
      headers: { authorization: cam1.auth, 'content-type': `multipart/form-data; boundary=${boundary}` },
      body,
      cutAfter: body.length - 500,
    });
    expect(lost).toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await t.cp.internals.store.samples.findByImage(cam1.id, sha256Hex(jpeg))).toBeNull();
    expect(t.cp.internals.blobs.sizeOf(sha256Hex(jpeg))).toBeNull();
    expect(uploadsOnDisk().filter((name) => name.startsWith('whole-'))).toEqual([]);
  });
});

describe('reading samples', () => {
  it('filters by device, site, label, model, strategy and capture time, and pages with a cursor', async () => {
    const uploads = [
      { cam: cam2, seq: 200, strategy: 'random' as const, frameTs: 1_900_000_000_000 },
      { cam: cam2, seq: 201, strategy: 'class-rare' as const, frameTs: 1_900_000_000_100 },
      { cam: cam2, seq: 202, strategy: 'class-rare' as const, frameTs: 1_900_000_000_200 },
    ];
    for (const [i, u] of uploads.entries()) {
      clock.t += 1;
      const jpeg = await makeJpeg(24, 24, 300 + i);
      await uploadSample(
        t.started.httpUrl,
        u.cam.auth,
        metadataFor(
          u.cam.id,
          jpeg,
          { width: 24, height: 24 },
          {
            seq: u.seq,
            strategy: u.strategy,
            frameTs: u.frameTs,
            // The device's own claim: the control plane stores the enrolled labels instead.
            site: 'spoofed',
            labels: { site: 'spoofed', line: 'l9' },
            model: { id: 'det@2.0.0', sha256: 'b'.repeat(64) },
          },
        ),
        jpeg,
      );
    }
    const seqs = (page: SampleList) => page.items.map((s) => s.seq);
    expect(seqs(await list('?strategy=class-rare', viewer))).toEqual([202, 201]);
    expect(seqs(await list('?site=south&label=line:l2'))).toEqual([202, 201, 200]);
    expect(seqs(await list('?site=spoofed'))).toEqual([]);
    const claimed = (await list(`?deviceId=${cam2.id}&strategy=class-rare`)).items;
    expect(claimed).toHaveLength(2);
    for (const sample of claimed) {
      expect(sample).toMatchObject({ site: 'south', labels: { site: 'south', line: 'l2' } });
    }
    expect(seqs(await list(`?modelSha256=${'b'.repeat(64)}&from=1900000000050&to=1900000000150`))).toEqual([201]);
    expect(seqs(await list('?modelId=det@2.0.0&deviceId=cam-1'))).toEqual([]);
    const first = await list('?label=line:l2&limit=2');
    expect(seqs(first)).toEqual([202, 201]);
    expect(first.nextCursor).not.toBeNull();
    const second = await list(`?label=line:l2&limit=2&cursor=${first.nextCursor}`);
    expect(seqs(second)).toEqual([200]);
    expect(second.nextCursor).toBeNull();
    expect((await t.raw('GET', '/api/v1/samples?strategy=guess')).status).toBe(422);
  });

  it('serves a thumbnail that decodes as a 256 px wide JPEG, made once and then cached', async () => {
    const size = { width: 640, height: 480 };
    const jpeg = await makeJpeg(size.width, size.height, 21);
    const { state } = await uploadSample(
      t.started.httpUrl,
      cam1.auth,
      metadataFor(cam1.id, jpeg, size, { seq: 300 }),
      jpeg,
    );
    const fetchThumb = async () => {
      const response = await t.raw('GET', `/api/v1/samples/${state.sampleId}/thumbnail`, { token: viewer });
      expect(response.status).toBe(200);
      return Buffer.from(await response.arrayBuffer());
    };
    const thumb = await fetchThumb();
    expect(await sharp(thumb).metadata()).toMatchObject({ format: 'jpeg', width: 256, height: 192 });
    expect(sha256Hex(await fetchThumb())).toBe(sha256Hex(thumb));
    expect(t.cp.internals.metrics.render()).toMatch(/edgeloop_sample_thumbnails_made_total 1\b/);
  });

  it('lets a viewer token read samples but not purge them, and nothing without a token', async () => {
    expect((await list('', viewer)).items.length).toBeGreaterThan(0);
    expect((await t.raw('DELETE', `/api/v1/devices/${cam1.id}/samples`, { token: viewer })).status).toBe(403);
    expect((await t.raw('GET', '/api/v1/samples', { token: null })).status).toBe(401);
    const deviceRead = await httpRequest(url('/api/v1/samples'), {
      method: 'GET',
      headers: { authorization: cam1.auth },
    });
    expect(deviceRead?.status).toBe(401);
  });
});

describe('deleting and retention', () => {
  it('keeps the samples of a deleted device until they are purged explicitly, blobs and all', async () => {
    const gone = await device('cam-gone');
    const jpeg = await makeJpeg(30, 30, 31);
    const { state } = await uploadSample(
      t.started.httpUrl,
      gone.auth,
      metadataFor(gone.id, jpeg, { width: 30, height: 30 }),
      jpeg,
    );
    const pending = await makeJpeg(30, 30, 32);
    const under = await begin(gone.auth, metadataFor(gone.id, pending, { width: 30, height: 30 }, { seq: 2 }));
    expect((await patch(gone.auth, under.body.uploadId, 0, pending.subarray(0, 50))).status).toBe(204);
    expect((await t.raw('DELETE', `/api/v1/devices/${gone.id}`)).status).toBeLessThan(300);
    expect((await t.raw('GET', `/api/v1/samples/${state.sampleId}`)).status).toBe(200);
    const purge = await t.raw('DELETE', `/api/v1/devices/${gone.id}/samples`);
    expect(purge.status).toBe(200);
    expect((await purge.json()) as SamplePurgeResult).toMatchObject({
      deviceId: gone.id,
      purged: 1,
      bytes: jpeg.length,
    });
    expect((await t.raw('GET', `/api/v1/samples/${state.sampleId}`)).status).toBe(404);
    expect(t.cp.internals.blobs.sizeOf(sha256Hex(jpeg))).toBeNull();
    expect(uploadsOnDisk()).not.toContain(`${under.body.uploadId}.part`);
    expect(await t.store.samples.getUpload(under.body.uploadId)).toBeNull();
  });
});

describe('retention', () => {
  let r: TestControlPlane;
  const rclock = { t: 1_800_000_000_000, now: () => rclock.t };
  afterAll(async () => {
    await r?.stop();
  });

  it('prunes by age, then the oldest samples over the quota, never one a dataset holds', async () => {
    const jpegs = await Promise.all([1, 2, 3, 4].map((seed) => makeJpeg(64, 64, 400 + seed)));
    const each = Math.max(...jpegs.map((j) => j.length));
    r = await startTestControlPlane({ samples: { retentionDays: 10, quotaBytes: each * 2 + 1 } }, { clock: rclock });
    const enrolled = await r.enroll('cam-r');
    const auth = basicAuth('cam-r', enrolled.credentials.password);
    const ids: string[] = [];
    for (const [i, jpeg] of jpegs.entries()) {
      rclock.t += 86_400_000; // one a day
      const { state } = await uploadSample(
        r.started.httpUrl,
        auth,
        metadataFor('cam-r', jpeg, { width: 64, height: 64 }, { seq: i }),
        jpeg,
      );
      ids.push(state.sampleId!);
    }
    // The oldest is in a dataset version; the second oldest is not.
    r.store.db.run(sql`INSERT INTO datasets (id, name, version, query, created_at) VALUES ('d1', 'd', 1, '{}', 0)`);
    r.store.db.run(sql`INSERT INTO dataset_samples (dataset_id, sample_id, split) VALUES ('d1', ${ids[0]!}, 'train')`);
    // Samples arrived on days 1..4; on day 12.5 those of days 1 and 2 are past 10 days.
    rclock.t += 8.5 * 86_400_000;
    const outcome = await r.cp.internals.samples.prune();
    // Samples 0 and 1 are past 10 days; 0 is kept by the dataset. Then 3 samples (0, 2, 3) are over
    // a quota of two: the oldest unreferenced (2) goes.
    expect(outcome).toMatchObject({ aged: 1, overQuota: 1, quotaExcessBytes: 0 });
    const left = ((await (await r.raw('GET', '/api/v1/samples')).json()) as SampleList).items.map((s) => s.id);
    expect(left.sort()).toEqual([ids[0]!, ids[3]!].sort());
    expect(r.cp.internals.blobs.sizeOf(sha256Hex(jpegs[1]!))).toBeNull();
    expect(r.cp.internals.blobs.sizeOf(sha256Hex(jpegs[2]!))).toBeNull();
    expect(r.cp.internals.blobs.sizeOf(sha256Hex(jpegs[0]!))).toBe(jpegs[0]!.length);
  });
});

describe('an upload across a control-plane restart', () => {
  it('resumes at the acknowledged offset after the control plane restarts on the same data dir', async () => {
    const first = await startTestControlPlane();
    const enrolled = await first.enroll('cam-restart');
    const auth = basicAuth('cam-restart', enrolled.credentials.password);
    const jpeg = await makeJpeg(200, 150, 61);
    const metadata = metadataFor('cam-restart', jpeg, { width: 200, height: 150 });
    const begun = await httpRequest(`${first.started.httpUrl}/api/v1/samples/uploads`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/json' },
      body: JSON.stringify(metadata),
    });
    const { uploadId } = JSON.parse(begun!.body) as SampleUploadState;
    const half = Math.floor(jpeg.length / 2);
    const chunk = await httpRequest(`${first.started.httpUrl}/api/v1/samples/uploads/${uploadId}`, {
      method: 'PATCH',
      headers: { authorization: auth, 'content-type': SAMPLE_UPLOAD_CONTENT_TYPE, [SAMPLE_UPLOAD_OFFSET_HEADER]: '0' },
      body: jpeg.subarray(0, half),
    });
    expect(chunk?.status).toBe(204);
    await first.stop({ keepData: true });

    const second = await startTestControlPlane({ dataDir: first.dataDir });
    try {
      const again = await httpRequest(`${second.started.httpUrl}/api/v1/samples/uploads`, {
        method: 'POST',
        headers: { authorization: auth, 'content-type': 'application/json' },
        body: JSON.stringify(metadata),
      });
      expect(again?.status).toBe(200);
      expect(JSON.parse(again!.body)).toMatchObject({ uploadId, offset: half, complete: false });
      const rest = await httpRequest(`${second.started.httpUrl}/api/v1/samples/uploads/${uploadId}`, {
        method: 'PATCH',
        headers: {
          authorization: auth,
          'content-type': SAMPLE_UPLOAD_CONTENT_TYPE,
          [SAMPLE_UPLOAD_OFFSET_HEADER]: String(half),
        },
        body: jpeg.subarray(half),
      });
      expect(rest?.status).toBe(201);
      const { sampleId } = JSON.parse(rest!.body) as SampleUploadState;
      const image = await second.raw('GET', `/api/v1/samples/${sampleId}/image`);
      expect(sha256Hex(Buffer.from(await image.arrayBuffer()))).toBe(sha256Hex(jpeg));
    } finally {
      await second.stop();
      rmSync(first.dataDir, { recursive: true, force: true });
    }
  });
});
