import { createHash, randomBytes, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { canonicalBytes, MODEL_RELEASE_SCHEMA, type ModelManifestInput } from '@edgeloop/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import { SigningError } from './errors.ts';
import { generateKeyPair } from './keys.ts';
import { buildReleaseFromFile, type ReleaseDraft, signRelease } from './sign.ts';

const DAY = 86_400_000;
const NOW = Date.parse('2026-03-01T12:00:00Z');
const key = generateKeyPair();
const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-sign-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function draft(overrides: Partial<ReleaseDraft> = {}): ReleaseDraft {
  return {
    name: 'det',
    version: '1.0.0',
    sha256: 'a'.repeat(64),
    sizeBytes: 1234,
    releaseCounter: 1,
    issuedAt: NOW,
    expiresAt: NOW + DAY,
    manifest: { name: 'det', version: '1.0.0', adapter: 'yolo' },
    ...overrides,
  };
}

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    return error instanceof SigningError ? error.code : `not a SigningError: ${String(error)}`;
  }
  return undefined;
}

describe('signRelease', () => {
  it('fills schema, key id and defaults, and signs the canonical bytes of the result', () => {
    const signed = signRelease({ release: draft(), privateKeyPem: key.privateKeyPem });
    expect(signed.release.schema).toBe(MODEL_RELEASE_SCHEMA);
    expect(signed.release.keyId).toBe(key.keyId);
    expect(signed.release.hardware).toEqual([]);
    expect(signed.release.manifest.thresholds.confidence).toBe(0.25);
    const signature = Buffer.from(signed.signature, 'base64');
    expect(signature).toHaveLength(64);
    expect(verify(null, canonicalBytes(signed.release), key.publicKeyPem, signature)).toBe(true);
  });

  it('accepts the key id when it is the key own id and refuses another', () => {
    expect(codeOf(() => signRelease({ release: draft(), privateKeyPem: key.privateKeyPem, keyId: key.keyId }))).toBe(
      undefined,
    );
    const other = generateKeyPair();
    expect(codeOf(() => signRelease({ release: draft(), privateKeyPem: key.privateKeyPem, keyId: other.keyId }))).toBe(
      'key_id_mismatch',
    );
    expect(
      codeOf(() => signRelease({ release: draft({ keyId: other.keyId }), privateKeyPem: key.privateKeyPem })),
    ).toBe('key_id_mismatch');
  });

  it('refuses a public key in place of the private one', () => {
    expect(codeOf(() => signRelease({ release: draft(), privateKeyPem: key.publicKeyPem }))).toBe('invalid_key');
  });

  it('refuses releases that break the schema or the release rules', () => {
    const sign = (release: ReleaseDraft) => codeOf(() => signRelease({ release, privateKeyPem: key.privateKeyPem }));
    expect(sign(draft({ version: 'v1' }))).toBe('invalid_release');
    expect(sign(draft({ sha256: 'A'.repeat(64) }))).toBe('invalid_release');
    expect(sign(draft({ manifest: { name: 'other', version: '1.0.0', adapter: 'yolo' } }))).toBe('invalid_release');
    expect(sign(draft({ manifest: { name: 'det', version: '1.0.1', adapter: 'yolo' } }))).toBe('invalid_release');
    expect(sign(draft({ expiresAt: NOW }))).toBe('invalid_release');
    expect(
      sign(
        draft({
          hardware: ['rpi5', 'x86-gpu'],
          manifest: { name: 'det', version: '1.0.0', adapter: 'yolo', compatibleHardware: ['rpi5'] },
        }),
      ),
    ).toBe('invalid_release');
  });

  it('explains which rule a release breaks', () => {
    expect(() => signRelease({ release: draft({ expiresAt: NOW - 1 }), privateKeyPem: key.privateKeyPem })).toThrow(
      /expiresAt 2026-03-01T11:59:59.999Z is not after issuedAt 2026-03-01T12:00:00.000Z/,
    );
  });
});

describe('buildReleaseFromFile', () => {
  const manifest: ModelManifestInput = {
    name: 'det',
    version: '2.1.0',
    adapter: 'yolo',
    compatibleHardware: ['rpi5', 'orin-nano'],
  };

  it('takes sha256 and size from the file and name, version and hardware from the manifest', async () => {
    const bytes = randomBytes(2 * 1024 * 1024 + 5);
    const modelPath = path.join(dir, 'model.onnx');
    writeFileSync(modelPath, bytes);
    const release = await buildReleaseFromFile({ modelPath, manifest, releaseCounter: 7, issuedAt: NOW, ttlMs: DAY });
    expect(release).toMatchObject({
      name: 'det',
      version: '2.1.0',
      sha256: createHash('sha256').update(bytes).digest('hex'),
      sizeBytes: bytes.length,
      releaseCounter: 7,
      issuedAt: NOW,
      expiresAt: NOW + DAY,
      hardware: ['rpi5', 'orin-nano'],
    });
    expect(release.manifest.thresholds).toEqual({ confidence: 0.25, iou: 0.45, topK: 1000, maxDetections: 300 });
  });

  it('takes an absolute expiry and a narrower hardware list', async () => {
    const modelPath = path.join(dir, 'small.onnx');
    writeFileSync(modelPath, 'x');
    const release = await buildReleaseFromFile({
      modelPath,
      manifest,
      releaseCounter: 0,
      issuedAt: NOW,
      expiresAt: NOW + 5,
      hardware: ['rpi5'],
    });
    expect(release.expiresAt).toBe(NOW + 5);
    expect(release.hardware).toEqual(['rpi5']);
  });

  it('refuses bad options with the matching code', async () => {
    const modelPath = path.join(dir, 'model-2.onnx');
    writeFileSync(modelPath, 'bytes');
    const emptyPath = path.join(dir, 'empty.onnx');
    writeFileSync(emptyPath, '');
    const base = { modelPath, manifest, releaseCounter: 1, issuedAt: NOW, ttlMs: DAY };
    await expect(buildReleaseFromFile({ ...base, expiresAt: NOW + DAY })).rejects.toMatchObject({
      code: 'invalid_release',
    });
    await expect(buildReleaseFromFile({ ...base, ttlMs: undefined })).rejects.toMatchObject({
      code: 'invalid_release',
    });
    await expect(buildReleaseFromFile({ ...base, ttlMs: -1 })).rejects.toMatchObject({ code: 'invalid_release' });
    await expect(buildReleaseFromFile({ ...base, version: '2.2.0' })).rejects.toMatchObject({
      code: 'invalid_release',
    });
    await expect(buildReleaseFromFile({ ...base, hardware: ['x86-gpu'] })).rejects.toMatchObject({
      code: 'invalid_release',
    });
    await expect(buildReleaseFromFile({ ...base, releaseCounter: -1 })).rejects.toMatchObject({
      code: 'invalid_release',
    });
    await expect(buildReleaseFromFile({ ...base, modelPath: emptyPath })).rejects.toMatchObject({
      code: 'invalid_release',
    });
    await expect(buildReleaseFromFile({ ...base, modelPath: path.join(dir, 'nope.onnx') })).rejects.toMatchObject({
      code: 'file_error',
    });
    await expect(
      buildReleaseFromFile({ ...base, manifest: { name: 'Det', version: '1', adapter: 'yolo' } }),
    ).rejects.toMatchObject({ code: 'invalid_manifest' });
    await expect(buildReleaseFromFile({ ...base, signal: AbortSignal.abort() })).rejects.toMatchObject({
      name: 'AbortError',
    });
  });
});

describe('buildReleaseFromFile with lineage', () => {
  const manifest: ModelManifestInput = { name: 'det', version: '3.0.0', adapter: 'yolo' };
  const modelPath = path.join(dir, 'lineage.onnx');
  writeFileSync(modelPath, 'model bytes');
  const base = { modelPath, manifest, releaseCounter: 3, issuedAt: NOW, ttlMs: DAY };

  it('puts the lineage given into the release, leaving out members given as undefined', async () => {
    const release = await buildReleaseFromFile({
      ...base,
      lineage: { datasetVersion: 'hard-b@2', parentModel: 'b'.repeat(64), runId: undefined, trainer: 'yolo 8' },
    });
    expect(release.lineage).toEqual({ datasetVersion: 'hard-b@2', parentModel: 'b'.repeat(64), trainer: 'yolo 8' });
    const signed = signRelease({ release, privateKeyPem: key.privateKeyPem });
    expect(signed.release.lineage).toEqual(release.lineage);
    const signature = Buffer.from(signed.signature, 'base64');
    expect(verify(null, canonicalBytes(signed.release), key.publicKeyPem, signature)).toBe(true);
  });

  it('writes no lineage member at all when none is named, as releases were before lineage', async () => {
    for (const lineage of [undefined, {}, { runId: undefined }]) {
      const release = await buildReleaseFromFile({ ...base, lineage });
      expect('lineage' in release).toBe(false);
    }
  });

  it('refuses a badly formed lineage as invalid_release', async () => {
    await expect(buildReleaseFromFile({ ...base, lineage: { datasetVersion: 'no version' } })).rejects.toMatchObject({
      code: 'invalid_release',
      message: expect.stringContaining('datasetVersion'),
    });
  });
});
