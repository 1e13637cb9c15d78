import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobTooLargeError, createBlobStore } from './blob-store.ts';

async function* chunks(bytes: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

describe('blob store', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'edgeloop-blobs-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('hashes while receiving and stores the bytes under sha256/<2 hex>/<64 hex> only on commit', async () => {
    const store = createBlobStore({ root });
    const bytes = randomBytes(100_000);
    const blob = await store.receive(chunks(bytes, 7_000), { maxBytes: 1 << 20 });
    const hash = createHash('sha256').update(bytes).digest('hex');
    expect(blob).toMatchObject({ sha256: hash, sizeBytes: bytes.length, firstByte: bytes[0] });
    expect(store.sizeOf(hash)).toBeNull();
    await blob.commit();
    expect(store.pathOf(hash)).toBe(join(root, 'sha256', hash.slice(0, 2), hash));
    expect(readFileSync(store.pathOf(hash)).equals(bytes)).toBe(true);
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);

    const again = await store.receive(chunks(bytes, 50_000), { maxBytes: 1 << 20 });
    await again.commit();
    expect(readdirSync(join(root, 'sha256', hash.slice(0, 2)))).toEqual([hash]);
  });

  it('keeps nothing of a blob over the limit or one discarded', async () => {
    const store = createBlobStore({ root });
    await expect(store.receive(chunks(randomBytes(5000), 1000), { maxBytes: 4000 })).rejects.toBeInstanceOf(
      BlobTooLargeError,
    );
    const blob = await store.receive(chunks(randomBytes(10), 10), { maxBytes: 100 });
    await blob.discard();
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);
    expect(store.sizeOf(blob.sha256)).toBeNull();
  });

  it('sweeps temporary files a crash left behind', () => {
    mkdirSync(join(root, 'tmp'), { recursive: true });
    writeFileSync(join(root, 'tmp', 'abc.part'), 'half');
    expect(createBlobStore({ root }).sweepTemporary()).toBe(1);
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);
  });
});
