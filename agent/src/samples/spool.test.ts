import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { SampleMetadata } from '@edgeloop/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { openSpool } from './spool.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'spool-'));
  dirs.push(dir);
  return dir;
}

export function sampleOf(n: number, size = 1000): { metadata: SampleMetadata; bytes: Buffer } {
  const bytes = Buffer.alloc(size, n % 256);
  bytes.writeUInt32BE(n, 0);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return {
    bytes,
    metadata: {
      deviceId: 'cam-1',
      site: null,
      labels: {},
      model: null,
      strategy: 'random',
      reason: 'test',
      tags: [],
      predictions: [],
      frameTs: 1,
      bootId: 'boot-1',
      seq: n,
      image: { sha256, bytes: size, width: 10, height: 10, contentType: 'image/jpeg' },
    },
  };
}

describe('sample spool', async () => {
  it('keeps samples across a reopen, oldest first', async () => {
    const dir = tempDir();
    const spool = openSpool({ dir, maxBytes: 1_000_000 });
    for (let n = 1; n <= 3; n++) await spool.put(sampleOf(n).metadata, sampleOf(n).bytes);
    const reopened = openSpool({ dir, maxBytes: 1_000_000 });
    expect(reopened.stats().count).toBe(3);
    const oldest = reopened.oldest();
    expect(oldest && (await reopened.read(oldest))?.metadata.seq).toBe(1);
  });

  it('ignores and cleans a half-written temp file and a damaged sample after a crash', async () => {
    const dir = tempDir();
    const spool = openSpool({ dir, maxBytes: 1_000_000 });
    await spool.put(sampleOf(1).metadata, sampleOf(1).bytes);
    writeFileSync(path.join(dir, `.tmp-0000000000000002-${'a'.repeat(64)}.sample`), 'ELS1\0\0');
    writeFileSync(path.join(dir, 'garbage.sample'), 'x');
    const reopened = openSpool({ dir, maxBytes: 1_000_000 });
    expect(reopened.recovery).toMatchObject({ entries: 1, removedTemp: 1, removedBad: 1 });
    expect(readdirSync(dir)).toHaveLength(1);
    // A new sample after the crash gets an ordinal after the survivors.
    await reopened.put(sampleOf(3).metadata, sampleOf(3).bytes);
    const first = reopened.oldest();
    expect(first && (await reopened.read(first))?.metadata.seq).toBe(1);
  });

  it('drops a sample whose bytes were cut short instead of uploading it', async () => {
    const dir = tempDir();
    const spool = openSpool({ dir, maxBytes: 1_000_000 });
    await spool.put(sampleOf(1).metadata, sampleOf(1).bytes);
    const entry = spool.oldest()!;
    writeFileSync(path.join(dir, entry.name), 'ELS1');
    expect(await spool.read(entry)).toBeNull();
    expect(spool.stats().count).toBe(0);
  });

  it('drops the oldest samples past its byte bound and reports each drop', async () => {
    const dir = tempDir();
    const dropped: number[] = [];
    const spool = openSpool({ dir, maxBytes: 5000, onDrop: (e) => dropped.push(e.ordinal) });
    for (let n = 1; n <= 8; n++) await spool.put(sampleOf(n).metadata, sampleOf(n).bytes);
    expect(spool.stats().bytes).toBeLessThanOrEqual(5000);
    const kept = spool.stats().count;
    expect(kept).toBeGreaterThanOrEqual(2);
    expect(dropped).toEqual(Array.from({ length: 8 - kept }, (_, i) => i + 1));
    expect((await spool.read(spool.oldest()!))?.metadata.seq).toBe(9 - kept);
    expect(await spool.put(sampleOf(9, 6000).metadata, sampleOf(9, 6000).bytes)).toBe(-1);
  });

  it('stores a sha256 once', async () => {
    const spool = openSpool({ dir: tempDir(), maxBytes: 1_000_000 });
    await spool.put(sampleOf(1).metadata, sampleOf(1).bytes);
    await spool.put(sampleOf(1).metadata, sampleOf(1).bytes);
    expect(spool.stats().count).toBe(1);
  });
});
