import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { digestFile } from './file-digest.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-digest-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('digestFile', () => {
  it('hashes a file larger than one read chunk', async () => {
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    const file = path.join(dir, 'big.bin');
    writeFileSync(file, bytes);
    expect(await digestFile(file)).toEqual({
      sha256: createHash('sha256').update(bytes).digest('hex'),
      sizeBytes: bytes.length,
    });
  });

  it('hashes an empty file', async () => {
    const file = path.join(dir, 'empty.bin');
    writeFileSync(file, '');
    expect(await digestFile(file)).toEqual({ sha256: createHash('sha256').digest('hex'), sizeBytes: 0 });
  });

  it('rejects for a missing file and for an aborted signal', async () => {
    await expect(digestFile(path.join(dir, 'missing.bin'))).rejects.toMatchObject({ code: 'ENOENT' });
    const file = path.join(dir, 'abort.bin');
    writeFileSync(file, randomBytes(1024));
    await expect(digestFile(file, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
  });
});
