import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createMemoryDownloadTarget,
  downloadModel,
  downloadWithRetry,
  fileDownloadTarget,
} from '../../src/model-update/download.ts';
import { type ModelServer, startModelServer } from '../support/model-server.ts';

const credentials = { username: 'cam-dl-01', password: 'dl-secret' };
const auth = { authorization: `Basic ${Buffer.from('cam-dl-01:dl-secret').toString('base64')}` };
const FILE = '/api/v1/models/det/1.0.0/file';
const bytes = randomBytes(300_000);
const sha256 = createHash('sha256').update(bytes).digest('hex');
const noWait = { initialDelayMs: 1, maxDelayMs: 5, maxAttempts: 5 };

let server: ModelServer;
let dir: string;
beforeAll(async () => {
  server = await startModelServer({ credentials });
  server.serve(FILE, bytes);
});
afterAll(() => server.close());
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-download-'));
  server.requests.length = 0;
  for (const key of Object.keys(server.faults)) delete server.faults[key as keyof typeof server.faults];
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('model download', () => {
  it('downloads a file with the device credential', async () => {
    const dest = path.join(dir, 'm.part');
    const target = fileDownloadTarget(dest);
    const result = await downloadModel({ url: server.url + FILE, target, expectedSize: bytes.length, headers: auth });
    target.close();
    expect(result).toEqual({ ok: true, value: { bytes: bytes.length, resumedFrom: 0 } });
    expect(Buffer.compare(readFileSync(dest), bytes)).toBe(0);
    expect(server.requests[0]).toMatchObject({ range: null, status: 200, authorization: auth.authorization });
  });

  it('is refused without the credential and says so', async () => {
    const target = createMemoryDownloadTarget();
    const result = await downloadModel({ url: server.url + FILE, target, expectedSize: bytes.length });
    expect(result).toMatchObject({ ok: false, error: { code: 'unauthorized' } });
    const missing = await downloadModel({
      url: `${server.url}/api/v1/models/none/1.0.0/file`,
      target,
      expectedSize: 10,
      headers: auth,
    });
    expect(missing).toMatchObject({ ok: false, error: { code: 'not_found' } });
  });

  it('resumes a partial file with a Range request from the bytes on disk', async () => {
    const dest = path.join(dir, 'm.part');
    writeFileSync(dest, bytes.subarray(0, 100_000));
    const target = fileDownloadTarget(dest);
    const result = await downloadModel({ url: server.url + FILE, target, expectedSize: bytes.length, headers: auth });
    target.close();
    expect(result).toEqual({ ok: true, value: { bytes: bytes.length, resumedFrom: 100_000 } });
    expect(server.requests[0]).toMatchObject({ range: 'bytes=100000-', status: 206, bytesSent: 200_000 });
    expect(Buffer.compare(readFileSync(dest), bytes)).toBe(0);
  });

  it('starts again from zero when the server ignores the Range', async () => {
    server.faults.ignoreRange = true;
    const target = createMemoryDownloadTarget({ keepBytes: true });
    target.append(new Uint8Array(50_000).fill(1));
    const result = await downloadModel({ url: server.url + FILE, target, expectedSize: bytes.length, headers: auth });
    expect(result.ok).toBe(true);
    expect(server.requests[0]).toMatchObject({ range: 'bytes=50000-', status: 200 });
    expect(target.sha256()).toBe(sha256);
  });

  it('refuses a 206 that does not start where it asked', async () => {
    server.faults.wrongRangeStart = true;
    const target = createMemoryDownloadTarget();
    target.append(bytes.subarray(0, 1000));
    const result = await downloadModel({ url: server.url + FILE, target, expectedSize: bytes.length, headers: auth });
    expect(result).toMatchObject({ ok: false, error: { code: 'http_error' } });
    expect(target.size()).toBe(1000);
  });

  it('never keeps more than the declared size', async () => {
    server.faults.extraBytes = 5000;
    const dest = path.join(dir, 'm.part');
    const target = fileDownloadTarget(dest);
    const result = await downloadModel({ url: server.url + FILE, target, expectedSize: bytes.length, headers: auth });
    target.close();
    expect(result).toMatchObject({ ok: false, error: { code: 'size_exceeded' } });
    expect(readFileSync(dest).length).toBe(bytes.length);
  });

  it('retries a cut connection and a busy server, resuming each time, and hashes in memory', async () => {
    server.faults.failNext = 2;
    const target = createMemoryDownloadTarget();
    const first = await downloadModel({ url: server.url + FILE, target, expectedSize: bytes.length, headers: auth });
    expect(first).toMatchObject({ ok: false, error: { code: 'http_error' } });
    server.faults.cutAfterBytes = 120_000;
    const retries: string[] = [];
    const result = await downloadWithRetry(
      { url: server.url + FILE, target, expectedSize: bytes.length, headers: auth },
      { policy: noWait, onRetry: (_attempt, error) => retries.push(error.code) },
    );
    expect(result).toMatchObject({ ok: true, value: { bytes: bytes.length, attempts: 3, firstResumedFrom: 0 } });
    expect(retries[0]).toBe('http_error');
    expect(retries[1]).toMatch(/network_error|size_mismatch/);
    const ranges = server.requests.map((request) => request.range);
    expect(ranges.at(-1)).toBe(`bytes=${server.requests.at(-2)?.bytesSent}-`);
    expect(target.sha256()).toBe(sha256);
    expect(target.bytes()).toBeNull();
  });

  it('gives up after maxAttempts and stops at once when aborted', async () => {
    server.faults.failNext = 10;
    const target = createMemoryDownloadTarget();
    const result = await downloadWithRetry(
      { url: server.url + FILE, target, expectedSize: bytes.length, headers: auth },
      { policy: { ...noWait, maxAttempts: 3 } },
    );
    expect(result).toMatchObject({ ok: false, error: { code: 'http_error' } });
    expect(server.requests).toHaveLength(3);

    const controller = new AbortController();
    server.faults.failNext = 10;
    const pending = downloadWithRetry(
      { url: server.url + FILE, target, expectedSize: bytes.length, headers: auth, signal: controller.signal },
      { policy: { initialDelayMs: 60_000, maxDelayMs: 60_000, maxAttempts: null } },
    );
    setTimeout(() => controller.abort(), 50);
    expect(await pending).toMatchObject({ ok: false, error: { code: 'aborted' } });
  });
});
