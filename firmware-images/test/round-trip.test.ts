import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ModelManifestInput, SignedModelRelease } from '@edgeloop/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildReleaseFromFile,
  generateKeyPair,
  type KeyPair,
  parseTrustedKeys,
  signRelease,
  type TrustedKey,
  VERIFY_ERROR_CODES,
  verifyReleaseFile,
} from '../src/index.ts';
import * as verifyEntry from '../src/verify.ts';

const DAY = 86_400_000;
const NOW = Date.parse('2026-07-01T00:00:00Z');
const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-round-trip-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const manifest = (version: string): ModelManifestInput => ({
  name: 'people',
  version,
  adapter: 'yolo',
  labels: ['person'],
  compatibleHardware: ['rpi5', 'orin-nano'],
});

function writeModel(name: string, bytes: Buffer = randomBytes(64 * 1024)): string {
  const file = path.join(dir, name);
  writeFileSync(file, bytes);
  return file;
}

function trustOf(...pairs: KeyPair[]): readonly TrustedKey[] {
  const trusted = parseTrustedKeys(pairs.map((pair) => ({ publicKeyPem: pair.publicKeyPem })));
  if (!trusted.ok) throw new Error(trusted.error.message);
  return trusted.value;
}

/** Sign a model file the way an operator does, and store the release as JSON like the CLI. */
async function release(options: {
  key: KeyPair;
  modelPath: string;
  version?: string;
  counter: number;
  expiresAt?: number;
  hardware?: string[];
}): Promise<unknown> {
  const draft = await buildReleaseFromFile({
    modelPath: options.modelPath,
    manifest: manifest(options.version ?? '1.0.0'),
    releaseCounter: options.counter,
    issuedAt: NOW - DAY,
    ...(options.expiresAt === undefined ? { ttlMs: 30 * DAY } : { expiresAt: options.expiresAt }),
    ...(options.hardware === undefined ? {} : { hardware: options.hardware }),
  });
  const signed = signRelease({ release: draft, privateKeyPem: options.key.privateKeyPem });
  const file = path.join(dir, `release-${randomBytes(4).toString('hex')}.json`);
  writeFileSync(file, JSON.stringify(signed, null, 2));
  return JSON.parse(readFileSync(file, 'utf8'));
}

const key = generateKeyPair();
const device = {
  trustedKeys: trustOf(key),
  now: NOW,
  hardwareProfile: 'rpi5',
  highestReleaseCounter: 4,
};

async function codeFor(signed: unknown, modelPath: string, options: Partial<typeof device> = {}): Promise<string> {
  const result = await verifyReleaseFile(signed, { ...device, ...options, filePath: modelPath });
  return result.ok ? 'ok' : result.error.code;
}

describe('keygen, sign and verify on real files', () => {
  it('verifies a release of a real file and returns the signed release', async () => {
    const modelPath = writeModel('good.onnx');
    const signed = await release({ key, modelPath, counter: 5 });
    const result = await verifyReleaseFile(signed, { ...device, filePath: modelPath });
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.value).toEqual(signed as SignedModelRelease);
  });

  it('refuses each fault with its own code', async () => {
    const modelPath = writeModel('faults.onnx');
    const signed = (await release({ key, modelPath, counter: 5 })) as SignedModelRelease;

    const tamperedPath = writeModel('tampered.onnx', readFileSync(modelPath));
    const bytes = readFileSync(tamperedPath);
    bytes[1000] = (bytes[1000] ?? 0) ^ 0xff;
    writeFileSync(tamperedPath, bytes);
    const longerPath = writeModel('longer.onnx', readFileSync(modelPath));
    appendFileSync(longerPath, Buffer.from([0]));

    const codes = {
      malformed: await codeFor({ ...signed, signature: undefined }, modelPath),
      unknown_key: await codeFor(await release({ key: generateKeyPair(), modelPath, counter: 5 }), modelPath),
      bad_signature: await codeFor({ ...signed, release: { ...signed.release, hardware: ['rpi5'] } }, modelPath, {
        hardwareProfile: 'rpi5',
      }),
      expired: await codeFor(await release({ key, modelPath, counter: 5, expiresAt: NOW }), modelPath),
      hardware_incompatible: await codeFor(signed, modelPath, { hardwareProfile: 'x86-gpu' }),
      release_counter_rollback: await codeFor(await release({ key, modelPath, counter: 3 }), modelPath),
      size_mismatch: await codeFor(signed, longerPath),
      hash_mismatch: await codeFor(signed, tamperedPath),
    };
    expect(Object.keys(codes)).toEqual([...VERIFY_ERROR_CODES]);
    for (const [expected, actual] of Object.entries(codes))
      expect({ expected, actual }).toEqual({ expected, actual: expected });
  });

  it('reports an unreadable file only for a release that passed every other check', async () => {
    const modelPath = writeModel('vanishing.onnx');
    const signed = await release({ key, modelPath, counter: 5 });
    const missing = path.join(dir, 'never-downloaded.onnx');
    expect(await codeFor(signed, missing)).toBe('file_unreadable');
    expect(await codeFor(signed, missing, { trustedKeys: trustOf(generateKeyPair()) })).toBe('unknown_key');
  });

  it('takes a deliberate rollback as a new release of the old bytes with a higher counter', async () => {
    const v1Path = writeModel('v1.onnx');
    const v2Path = writeModel('v2.onnx');
    const v1 = await release({ key, modelPath: v1Path, version: '1.0.0', counter: 1 });
    const v2 = await release({ key, modelPath: v2Path, version: '2.0.0', counter: 2 });
    const installedV2 = { highestReleaseCounter: 2 };
    expect(await codeFor(v2, v2Path, { highestReleaseCounter: 1 })).toBe('ok');
    expect(await codeFor(v1, v1Path, installedV2)).toBe('release_counter_rollback');
    const rollback = await release({ key, modelPath: v1Path, version: '1.0.1', counter: 3 });
    expect(await codeFor(rollback, v1Path, installedV2)).toBe('ok');
  });

  it('keeps verifying releases of both keys during a rotation, and drops the old key cleanly', async () => {
    const oldKey = generateKeyPair();
    const newKey = generateKeyPair();
    const modelPath = writeModel('rotation.onnx');
    const byOld = await release({ key: oldKey, modelPath, counter: 5 });
    const byNew = await release({ key: newKey, modelPath, counter: 6 });
    const both = trustOf(oldKey, newKey);
    expect(await codeFor(byOld, modelPath, { trustedKeys: both })).toBe('ok');
    expect(await codeFor(byNew, modelPath, { trustedKeys: both })).toBe('ok');
    const newOnly = trustOf(newKey);
    expect(await codeFor(byOld, modelPath, { trustedKeys: newOnly })).toBe('unknown_key');
    expect(await codeFor(byNew, modelPath, { trustedKeys: newOnly })).toBe('ok');
  });
});

describe('the ./verify entry point', () => {
  it('exports verification and trusted-key parsing but no signing or key generation', () => {
    const names = Object.keys(verifyEntry);
    expect(names).toEqual(
      expect.arrayContaining(['verifyRelease', 'verifySignature', 'parseTrustedKeys', 'keyIdOf', 'VERIFY_ERROR_CODES']),
    );
    expect(names.filter((name) => /sign(?!ature)|generate|private/i.test(name))).toEqual([]);
  });

  it('imports no signing, key generation or file-system module', () => {
    const sourceDir = path.join(import.meta.dirname, '..', 'src');
    const seen = new Set<string>();
    const queue = ['verify.ts'];
    while (queue.length > 0) {
      const file = queue.pop() as string;
      if (seen.has(file)) continue;
      seen.add(file);
      const text = readFileSync(path.join(sourceDir, file), 'utf8');
      expect({ file, fs: /from 'node:fs/.test(text) }).toEqual({ file, fs: false });
      expect({ file, signing: /\b(sign as|generateKeyPair|createPrivateKey)\b/.test(text) }).toEqual({
        file,
        signing: false,
      });
      for (const match of text.matchAll(/from '\.\/([a-z-]+\.ts)'/g)) queue.push(match[1] as string);
    }
    expect([...seen].sort()).toEqual(['errors.ts', 'release-rules.ts', 'trusted-keys.ts', 'verify.ts']);
  });
});
