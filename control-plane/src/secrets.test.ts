import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createSecretHasher, generateSecret, loadOrCreatePepper, PEPPER_FILE } from './secrets.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('secrets', () => {
  it('creates the pepper once with mode 0600 and reads the same one back', () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgeloop-secrets-'));
    dirs.push(dir);
    const first = loadOrCreatePepper(dir);
    const second = loadOrCreatePepper(dir);
    expect(first.equals(second)).toBe(true);
    expect(first).toHaveLength(32);
    expect(statSync(join(dir, PEPPER_FILE)).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, PEPPER_FILE), 'utf8').trim()).toBe(first.toString('base64'));
  });

  it('verifies the right secret and refuses others; the hash depends on the pepper', () => {
    const secret = generateSecret();
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const hasher = createSecretHasher(Buffer.alloc(32, 1));
    const hash = hasher.hash(secret);
    expect(hash).not.toContain(secret);
    expect(hasher.verify(secret, hash)).toBe(true);
    expect(hasher.verify(`${secret}x`, hash)).toBe(false);
    expect(hasher.verify(secret, 'abcd')).toBe(false);
    expect(createSecretHasher(Buffer.alloc(32, 2)).hash(secret)).not.toBe(hash);
  });

  it('refuses a damaged pepper file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgeloop-secrets-'));
    dirs.push(dir);
    loadOrCreatePepper(dir);
    writeFileSync(join(dir, PEPPER_FILE), 'AAAA\n');
    expect(() => loadOrCreatePepper(dir)).toThrow(/damaged/);
  });
});
