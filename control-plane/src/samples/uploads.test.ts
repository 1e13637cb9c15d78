import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeJpeg, metadataFor, sha256Hex } from '../../test/sample-fixtures.ts';
import type { SampleRepository } from '../db/repositories.ts';
import { createSqliteStore, type SqliteStore } from '../db/sqlite/store.ts';
import { createMetricsRegistry, type MetricsRegistry } from '../metrics.ts';
import { createBlobStore } from '../models/blob-store.ts';
import { createSampleUploads, type SampleUploadsDeps } from './uploads.ts';

/*
 * One-request uploads through the group commit, on a real SQLite file and a real blob store:
 * concurrent uploads share commits and are stored exactly once; a row the database refuses fails
 * only its own upload.
 */

let dir: string;
let store: SqliteStore;
let metrics: MetricsRegistry;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'edgeloop-uploads-'));
  store = createSqliteStore({ dataDir: dir });
  metrics = createMetricsRegistry();
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function uploads(overrides: Partial<SampleUploadsDeps> = {}) {
  return createSampleUploads({
    samples: store.samples,
    blobs: createBlobStore({ root: join(dir, 'blobs') }),
    uploadDir: join(dir, 'sample-uploads'),
    clock: { now: () => 1_800_000_000_000 },
    metrics,
    maxBytes: 1 << 20,
    ...overrides,
  });
}

/** The image as a request body would bring it: in pieces. */
async function* pieces(bytes: Uint8Array, size = 16_384): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

const size = { width: 96, height: 64 };
const jpegs = await Promise.all(Array.from({ length: 12 }, (_, i) => makeJpeg(size.width, size.height, i + 1)));

describe('one-request uploads under the group commit', () => {
  for (const inMemoryBytes of [undefined, 0]) {
    it(`stores concurrent uploads exactly once each, in shared commits (${inMemoryBytes === 0 ? 'streamed to disk' : 'in memory'})`, async () => {
      const service = uploads(inMemoryBytes === undefined ? {} : { inMemoryBytes });
      const jobs = jpegs.map((jpeg, i) => ({ device: `cam-${i % 4}`, jpeg, seq: i }));
      // Each device sends its first image three times at once: one row, the same sample for all.
      const repeats = [0, 1, 2, 3].flatMap((d) => [jobs[d]!, jobs[d]!]);
      const results = await Promise.all(
        [...jobs, ...repeats].map((job) =>
          service.putWhole(
            { id: job.device },
            metadataFor(job.device, job.jpeg, size, { seq: job.seq }),
            pieces(job.jpeg),
          ),
        ),
      );
      expect(results.every((r) => r.ok)).toBe(true);
      const bySample = new Map<string, number>();
      for (const r of results)
        if (r.ok) bySample.set(r.value.state.sampleId!, (bySample.get(r.value.state.sampleId!) ?? 0) + 1);
      expect(bySample.size).toBe(jobs.length);
      expect(results.filter((r) => r.ok && r.value.created)).toHaveLength(jobs.length);
      expect(await store.samples.usage()).toEqual({
        count: jobs.length,
        bytes: jobs.reduce((sum, job) => sum + job.jpeg.length, 0),
      });
      const blobs = createBlobStore({ root: join(dir, 'blobs') });
      for (const job of jobs) {
        const stored = await store.samples.findByImage(job.device, sha256Hex(job.jpeg));
        expect(stored?.bytes).toBe(job.jpeg.length);
        expect(sha256Hex(readFileSync(blobs.pathOf(sha256Hex(job.jpeg))))).toBe(sha256Hex(job.jpeg));
      }
      // Fewer commits than samples: the uploads that finished together shared one.
      const commits = metrics.render().match(/^edgeloop_sample_commit_batch_size_count (\d+)$/m);
      expect(Number(commits?.[1])).toBeGreaterThan(0);
      expect(Number(commits?.[1])).toBeLessThan(jobs.length);
      expect(readdirSync(join(dir, 'sample-uploads'))).toEqual([]);
    });
  }

  it('fails only the upload whose row the database refuses; the others of its batch are stored', async () => {
    // The real repository, refusing any row of device cam-bad (a batch holding one is refused whole).
    const refusing: SampleRepository = {
      ...store.samples,
      async insertMany(samples) {
        if (samples.some((s) => s.deviceId === 'cam-bad')) throw new Error('constraint failed');
        return store.samples.insertMany(samples);
      },
      async insert(sample) {
        if (sample.deviceId === 'cam-bad') throw new Error('constraint failed');
        return store.samples.insert(sample);
      },
    };
    const service = uploads({ samples: refusing });
    const devices = ['cam-1', 'cam-bad', 'cam-2', 'cam-3'];
    const settled = await Promise.allSettled(
      devices.map((device, i) =>
        service.putWhole({ id: device }, metadataFor(device, jpegs[i]!, size, { seq: i }), pieces(jpegs[i]!)),
      ),
    );
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect((await store.samples.usage()).count).toBe(3);
    expect(await store.samples.findByImage('cam-bad', sha256Hex(jpegs[1]!))).toBeNull();
  });

  it('refuses bytes that are not what the metadata declares, keeping nothing of them', async () => {
    const service = uploads();
    const jpeg = jpegs[0]!;
    const metadata = metadataFor('cam-1', jpeg, size);
    const other = jpegs[1]!.subarray(0, jpeg.length);
    const results = await Promise.all([
      service.putWhole({ id: 'cam-1' }, metadata, pieces(other)),
      service.putWhole({ id: 'cam-1' }, metadata, pieces(jpeg.subarray(0, 100))),
      service.putWhole({ id: 'cam-1' }, metadata, pieces(Buffer.concat([jpeg, Buffer.from('x')]))),
      service.putWhole(
        { id: 'cam-1' },
        metadataFor('cam-1', Buffer.alloc(500, 1), { width: 1, height: 1 }),
        pieces(Buffer.alloc(500, 1)),
      ),
    ]);
    expect(results.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual([
      'hash_mismatch',
      'bad_request',
      'payload_too_large',
      'unprocessable',
    ]);
    expect(await store.samples.usage()).toEqual({ count: 0, bytes: 0 });
    expect(existsSync(join(dir, 'blobs', 'sha256'))).toBe(false);
    expect(readdirSync(join(dir, 'sample-uploads'))).toEqual([]);
  });
});
