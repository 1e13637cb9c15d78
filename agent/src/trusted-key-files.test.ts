import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPair } from '@edgeloop/firmware-images';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readTrustedKeyFiles } from './trusted-key-files.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-keys-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('readTrustedKeyFiles', () => {
  it('reads a .pub file and every .pub file of a directory, relative to the base', () => {
    const one = generateKeyPair();
    const two = generateKeyPair();
    writeFileSync(path.join(dir, 'release.pub'), one.publicKeyPem);
    mkdirSync(path.join(dir, 'more'));
    writeFileSync(path.join(dir, 'more', 'images.pub'), two.publicKeyPem);
    writeFileSync(path.join(dir, 'more', 'notes.txt'), 'not a key');
    const read = readTrustedKeyFiles(['release.pub', 'more'], dir);
    expect(read.ok && read.value.map((file) => file.publicKeyPem)).toEqual([one.publicKeyPem, two.publicKeyPem]);
  });

  it('lists every problem at once: a missing file, an empty directory, a private key', () => {
    const key = generateKeyPair();
    writeFileSync(path.join(dir, 'release.key'), key.privateKeyPem);
    mkdirSync(path.join(dir, 'empty'));
    const missing = readTrustedKeyFiles(['nope.pub', 'empty'], dir);
    expect(missing.ok).toBe(false);
    if (!missing.ok) {
      expect(missing.error.message).toContain('nope.pub');
      expect(missing.error.message).toContain('no .pub files');
    }
    const both = readTrustedKeyFiles(['release.key', 'nope.pub'], dir);
    expect(!both.ok && both.error.message).toContain('nope.pub');
    expect(!both.ok && both.error.message).toMatch(/key 1 \(.*release\.key\): this is a private key/);
  });
});
