import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tar from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTarWriter, type TarSink, TarSinkClosed } from './tar-writer.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tar-writer-test-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A sink that copies every chunk (so reuse after release cannot change what it holds) and counts releases. */
function collectingSink(options: { full?: boolean } = {}) {
  const chunks: Buffer[] = [];
  const seen = new Set<ArrayBufferLike>();
  let released = 0;
  let reused = 0;
  const sink: TarSink & { closed: boolean } = {
    closed: false,
    write(chunk, release) {
      if (seen.has(chunk.buffer)) reused++;
      seen.add(chunk.buffer);
      chunks.push(Buffer.from(chunk));
      queueMicrotask(() => {
        released++;
        release();
      });
      return !options.full;
    },
    ready: () => Promise.resolve(),
  };
  return {
    sink,
    bytes: () => Buffer.concat(chunks),
    chunks,
    counts: () => ({ released, reused }),
  };
}

async function entriesOf(archive: Buffer) {
  const extract = tar.extract();
  const entries: { header: tar.Header; body: Buffer }[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const parts: Buffer[] = [];
      for await (const part of entry) parts.push(part as Buffer);
      entries.push({ header: entry.header, body: Buffer.concat(parts) });
    }
  })();
  extract.end(archive);
  await done;
  return entries;
}

const mtime = new Date(1_800_000_000_000);

describe('createTarWriter', () => {
  it('writes files, texts and spooled parts that tar-stream and GNU tar both read back byte for byte', async () => {
    const small = Buffer.from('a small file');
    const big = Buffer.alloc(3 * 1024 * 1024 + 7, 0xab); // past several chunks
    writeFileSync(join(dir, 'small'), small);
    writeFileSync(join(dir, 'big'), big);
    writeFileSync(join(dir, 'part'), 'middle of it');
    const longName = `${'deep/'.repeat(25)}name.txt`; // 133 characters: needs the ustar prefix
    const { sink, bytes, chunks } = collectingSink();
    const writer = createTarWriter(sink, { mtime, chunkBytes: 64 * 1024 });
    await writer.file('images/small.jpg', join(dir, 'small'), small.byteLength);
    await writer.file('images/big.jpg', join(dir, 'big'), big.byteLength);
    await writer.bytes('labels/x.txt', 'ünïcode text\n');
    await writer.parts('annotations.json', 'head '.length + 'middle of it'.length + ' tail'.length, [
      'head ',
      { path: join(dir, 'part') },
      ' tail',
    ]);
    await writer.bytes(longName, 'deep');
    await writer.bytes('empty.txt', '');
    await writer.end();

    expect(chunks.every((chunk) => chunk.byteLength <= 64 * 1024)).toBe(true);
    const archive = bytes();
    expect(archive.byteLength % 512).toBe(0);
    const entries = await entriesOf(archive);
    expect(entries.map((entry) => entry.header.name)).toEqual([
      'images/small.jpg',
      'images/big.jpg',
      'labels/x.txt',
      'annotations.json',
      longName,
      'empty.txt',
    ]);
    for (const { header } of entries) {
      expect(header).toMatchObject({ type: 'file', mode: 0o644, uid: 0, gid: 0 });
      expect(header.mtime?.getTime()).toBe(mtime.getTime());
    }
    expect(entries[0]!.body.equals(small)).toBe(true);
    expect(entries[1]!.body.equals(big)).toBe(true);
    expect(entries[2]!.body.toString('utf8')).toBe('ünïcode text\n');
    expect(entries[3]!.body.toString()).toBe('head middle of it tail');
    expect(entries[4]!.body.toString()).toBe('deep');
    expect(entries[5]!.body.byteLength).toBe(0);

    // GNU tar checks every header checksum and reports a short archive.
    writeFileSync(join(dir, 'out.tar'), archive);
    const listed = spawnSync('tar', ['-tvf', join(dir, 'out.tar')], { encoding: 'utf8' });
    expect(listed.stderr).toBe('');
    expect(listed.status).toBe(0);
    expect(listed.stdout.trim().split('\n')).toHaveLength(6);
    expect(listed.stdout).toContain(longName);
  });

  it('reuses a chunk only after the sink released it', async () => {
    writeFileSync(join(dir, 'f'), Buffer.alloc(40_000, 1));
    const { sink, counts } = collectingSink();
    const writer = createTarWriter(sink, { mtime, chunkBytes: 16 * 1024 });
    for (let i = 0; i < 20; i++) await writer.file(`f${i}`, join(dir, 'f'), 40_000);
    await writer.end();
    const { released, reused } = counts();
    expect(released).toBeGreaterThan(40);
    // Chunks come back through the pool: far fewer buffers than chunks.
    expect(reused).toBeGreaterThan(released / 2);
  });

  it('fails, not with a short entry, when a file ends before its declared size', async () => {
    writeFileSync(join(dir, 'short'), 'abc');
    const { sink } = collectingSink();
    const writer = createTarWriter(sink, { mtime });
    expect(() => writer.file('short.jpg', join(dir, 'short'), 10)).toThrow(/ended after 3 of 10 bytes/);
    const streamed = createTarWriter(collectingSink().sink, { mtime, chunkBytes: 1024 });
    await expect(streamed.file('short.jpg', join(dir, 'short'), 5000)).rejects.toThrow(/ended after 3 of 5000 bytes/);
  });

  it('refuses parts that do not add up to the declared size', async () => {
    const writer = createTarWriter(collectingSink().sink, { mtime });
    await expect(writer.parts('a.json', 10, ['12345'])).rejects.toThrow(/5 bytes written of 10 declared/);
  });

  it('stops with TarSinkClosed at the next chunk once the sink closed', async () => {
    writeFileSync(join(dir, 'f'), Buffer.alloc(10_000, 2));
    const { sink, chunks } = collectingSink();
    const writer = createTarWriter(sink, { mtime, chunkBytes: 16 * 1024 });
    await writer.file('a', join(dir, 'f'), 10_000);
    await writer.file('b', join(dir, 'f'), 10_000);
    sink.closed = true;
    let error: unknown;
    try {
      for (let i = 0; i < 10; i++) await writer.file(`c${i}`, join(dir, 'f'), 10_000);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(TarSinkClosed);
    expect(chunks.length).toBeLessThanOrEqual(1);
  });

  it('waits for the sink before the chunk after one it could not take at once', async () => {
    writeFileSync(join(dir, 'f'), Buffer.alloc(10_000, 3));
    let waits = 0;
    let writes = 0;
    const sink: TarSink = {
      closed: false,
      write() {
        writes++;
        return false;
      },
      ready: () => {
        waits++;
        return Promise.resolve();
      },
    };
    const writer = createTarWriter(sink, { mtime, chunkBytes: 16 * 1024 });
    for (let i = 0; i < 8; i++) await writer.file(`f${i}`, join(dir, 'f'), 10_000);
    await writer.end();
    expect(writes).toBeGreaterThan(3);
    // Every write after the first waited once (and end waits for the last).
    expect(waits).toBe(writes);
  });

  it('rejects a name that is not printable ASCII or too long for ustar', async () => {
    const writer = createTarWriter(collectingSink().sink, { mtime });
    expect(() => writer.bytes('bad\nname', 'x')).toThrow(/not printable ASCII/);
    expect(() => writer.bytes('x'.repeat(120), 'x')).toThrow(/too long for ustar/);
  });
});
