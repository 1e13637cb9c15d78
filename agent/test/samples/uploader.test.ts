import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { SampleMetadata } from '@edgeloop/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { openSpool, type Spool } from '../../src/samples/spool.ts';
import { createSampleUploader, type SampleUploader } from '../../src/samples/uploader.ts';
import { startUploadServer } from './upload-server.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function sample(size: number, deviceId = 'cam-1'): { metadata: SampleMetadata; bytes: Buffer } {
  const bytes = randomBytes(size);
  return {
    bytes,
    metadata: {
      deviceId,
      site: null,
      labels: {},
      model: null,
      strategy: 'near-threshold',
      reason: 'test',
      tags: [],
      predictions: [{ box: [1, 2, 30, 40], score: 0.52, classId: 0, label: 'text' }],
      frameTs: 1,
      bootId: 'boot-1',
      seq: 1,
      image: {
        sha256: createHash('sha256').update(bytes).digest('hex'),
        bytes: size,
        width: 640,
        height: 480,
        contentType: 'image/jpeg',
      },
    },
  };
}

async function setup(options: { password?: string; chunkBytes?: number } = {}) {
  const server = await startUploadServer({ password: 'secret', maxBytes: 8 * 1024 * 1024 });
  cleanups.push(() => server.close());
  const dir = mkdtempSync(path.join(tmpdir(), 'uploader-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const spool = openSpool({ dir, maxBytes: 64 * 1024 * 1024, fsync: false });
  const rejected: string[] = [];
  const uploader = createSampleUploader({
    spool,
    baseUrl: server.url,
    credentials: { username: 'cam-1', password: options.password ?? 'secret' },
    onRejected: (_m, reason) => rejected.push(reason),
    options: {
      chunkBytes: options.chunkBytes ?? 256 * 1024,
      initialRetryMs: 5,
      maxRetryMs: 50,
      requestTimeoutMs: 5000,
    },
  });
  cleanups.push(() => uploader.stop());
  return { server, spool, uploader, rejected };
}

async function drained(spool: Spool, uploader: SampleUploader, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (spool.stats().count > 0) {
    if (Date.now() > until) throw new Error(`spool not drained: ${JSON.stringify(uploader.stats())}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('sample uploader', () => {
  it('uploads a 5 MB sample over a link cut every 1.5 MB, resuming from the acknowledged offset', async () => {
    const { server, spool, uploader } = await setup();
    const s = sample(5 * 1024 * 1024);
    await spool.put(s.metadata, s.bytes);
    server.flapEvery(1.5 * 1024 * 1024);
    uploader.start();
    await drained(spool, uploader);
    expect(server.cuts()).toBe(3);
    expect(server.stored.get(s.metadata.image.sha256)?.bytes.equals(s.bytes)).toBe(true);
    // Resumed, not restarted: the wire carried about the image once.
    expect(server.received()).toBe(s.bytes.length);
    expect(uploader.stats().bytesSent).toBeLessThan(1.3 * s.bytes.length);
    expect(server.requests.HEAD).toBeGreaterThanOrEqual(3);
    expect(uploader.stats()).toMatchObject({ uploaded: 1, uploadedBytes: s.bytes.length, rejected: 0 });
  });

  it('sends no bytes for a sample the control plane already stores (idempotent by sha256)', async () => {
    const { server, spool, uploader } = await setup();
    const s = sample(300_000);
    await spool.put(s.metadata, s.bytes);
    uploader.start();
    await drained(spool, uploader);
    const sent = uploader.stats().bytesSent;
    // The same sample again (a spool restored from a backup, a crash after the 201).
    await spool.put({ ...s.metadata, seq: 2 }, s.bytes);
    uploader.kick();
    await drained(spool, uploader);
    expect(uploader.stats().bytesSent).toBe(sent);
    expect(server.stored.size).toBe(1);
    expect(uploader.stats().uploaded).toBe(2);
  });

  it('drops a rejected sample as rejected and goes on with the next one', async () => {
    const { server, spool, uploader, rejected } = await setup();
    const tooLarge = sample(9 * 1024 * 1024);
    const fine = sample(1000);
    await spool.put(tooLarge.metadata, tooLarge.bytes);
    await spool.put(fine.metadata, fine.bytes);
    uploader.start();
    await drained(spool, uploader);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toContain('413');
    expect(server.stored.has(fine.metadata.image.sha256)).toBe(true);
    expect(server.stored.has(tooLarge.metadata.image.sha256)).toBe(false);
  });

  it('keeps a sample and retries (never drops it) while the credential is refused', async () => {
    const { server, spool, uploader } = await setup({ password: 'wrong' });
    const s = sample(1000);
    await spool.put(s.metadata, s.bytes);
    uploader.start();
    await new Promise((r) => setTimeout(r, 200));
    expect(spool.stats().count).toBe(1);
    expect(uploader.stats().retries).toBeGreaterThan(0);
    expect(server.stored.size).toBe(0);
  });

  it('retries while the control plane is down and uploads when it is back', async () => {
    const { server, spool, uploader } = await setup();
    const s = sample(2000);
    await spool.put(s.metadata, s.bytes);
    server.rejectPostsWith(503);
    uploader.start();
    await new Promise((r) => setTimeout(r, 100));
    expect(spool.stats().count).toBe(1);
    server.rejectPostsWith(null);
    await drained(spool, uploader);
    expect(server.stored.has(s.metadata.image.sha256)).toBe(true);
  });
});
