import { createHash, sign } from 'node:crypto';
import { canonicalBytes, ModelRelease, type SignedModelRelease } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { generateKeyPair, type KeyPair } from './keys.ts';
import { type ReleaseDraft, signRelease } from './sign.ts';
import {
  type TrustedKey,
  VERIFY_ERROR_CODES,
  type VerifyReleaseOptions,
  verifyRelease,
  verifySignature,
} from './verify.ts';

const DAY = 86_400_000;
const NOW = Date.parse('2026-05-01T00:00:00Z');
const BYTES = Buffer.from('pretend these are the bytes of an onnx model');
const SHA = createHash('sha256').update(BYTES).digest('hex');
const OTHER_SHA = createHash('sha256').update('other bytes').digest('hex');
const keyA = generateKeyPair();
const keyB = generateKeyPair();

function trust(...pairs: KeyPair[]): TrustedKey[] {
  return pairs.map((pair) => ({ keyId: pair.keyId, publicKeyPem: pair.publicKeyPem }));
}

function draft(overrides: Partial<ReleaseDraft> = {}): ReleaseDraft {
  return {
    name: 'det',
    version: '1.4.0',
    sha256: SHA,
    sizeBytes: BYTES.length,
    releaseCounter: 5,
    issuedAt: NOW - DAY,
    expiresAt: NOW + DAY,
    hardware: ['rpi5'],
    manifest: { name: 'det', version: '1.4.0', adapter: 'yolo' },
    ...overrides,
  };
}

function signed(overrides: Partial<ReleaseDraft> = {}, key: KeyPair = keyA): SignedModelRelease {
  return signRelease({ release: draft(overrides), privateKeyPem: key.privateKeyPem });
}

/** What an agent on an rpi5 that has counter 4 installed passes, with the right file facts. */
const device: VerifyReleaseOptions = {
  trustedKeys: trust(keyA),
  now: NOW,
  hardwareProfile: 'rpi5',
  highestReleaseCounter: 4,
  fileSize: BYTES.length,
  fileSha256: SHA,
};

function codeOf(result: { ok: boolean; error?: { code: string } }): string {
  return result.ok ? 'ok' : (result.error?.code ?? 'no code');
}

/** A deep copy whose object keys are inserted in reverse order at every depth. */
function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.entries(value)
        .reverse()
        .map(([key, member]) => [key, reverseKeys(member)]),
    );
  }
  return value;
}

describe('verifyRelease', () => {
  it('accepts a good release and returns the parsed release', () => {
    const release = signed();
    const result = verifyRelease(JSON.parse(JSON.stringify(release)), device);
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.value).toEqual(release);
  });

  it('gives each kind of fault its own code', () => {
    const tampered = signed();
    const codes = [
      verifyRelease({ release: { name: 'det' }, signature: 'x' }, device),
      verifyRelease(signed({}, keyB), device),
      verifyRelease({ ...tampered, release: { ...tampered.release, releaseCounter: 99 } }, device),
      verifyRelease(signed({ expiresAt: NOW }), device),
      verifyRelease(signed({ hardware: ['orin-nano'] }), device),
      verifyRelease(signed({ releaseCounter: 3 }), device),
      verifyRelease(signed(), { ...device, fileSize: BYTES.length + 1 }),
      verifyRelease(signed(), { ...device, fileSha256: OTHER_SHA }),
    ].map(codeOf);
    expect(codes).toEqual([...VERIFY_ERROR_CODES]);
    expect(new Set(codes).size).toBe(8);
  });

  describe('malformed', () => {
    it('for anything that is not a signed release', () => {
      for (const input of [undefined, null, 'release', 42, [], {}, { release: signed().release }]) {
        expect(codeOf(verifyRelease(input, device))).toBe('malformed');
      }
    });

    it('for a release with an unknown member or a default left out, naming the member', () => {
      const good = signed();
      const extra = verifyRelease({ ...good, release: { ...good.release, channel: 'beta' } }, device);
      expect(codeOf(extra)).toBe('malformed');
      if (!extra.ok) expect(extra.error.message).toContain('release.channel: unknown member');
      const { hardware: _hardware, ...withoutHardware } = good.release;
      const missing = verifyRelease({ ...good, release: withoutHardware }, device);
      expect(codeOf(missing)).toBe('malformed');
      if (!missing.ok) expect(missing.error.message).toContain('release.hardware: missing');
      const bigint = verifyRelease({ ...good, release: { ...good.release, extra: 1n } }, device);
      expect(codeOf(bigint)).toBe('malformed');
    });

    it('for a correctly signed release that breaks a release rule', () => {
      const release = ModelRelease.parse({
        ...draft(),
        schema: 'edgeloop.model-release/v1',
        keyId: keyA.keyId,
        manifest: { name: 'det', version: '9.9.9', adapter: 'yolo' },
      });
      const signature = sign(null, canonicalBytes(release), keyA.privateKeyPem).toString('base64');
      const result = verifyRelease({ release, signature }, device);
      expect(codeOf(result)).toBe('malformed');
      if (!result.ok) expect(result.error.message).toContain('manifest version 9.9.9 differs');
    });
  });

  describe('unknown_key', () => {
    it('for a key that is not trusted, naming the trusted ones', () => {
      const result = verifyRelease(signed({}, keyB), device);
      expect(codeOf(result)).toBe('unknown_key');
      if (!result.ok)
        expect(result.error.message).toContain(`key ${keyB.keyId} is not a trusted key (trusted: ${keyA.keyId})`);
    });

    it('for a trusted entry whose PEM cannot be used', () => {
      const result = verifyRelease(signed(), { ...device, trustedKeys: [{ keyId: keyA.keyId, publicKeyPem: 'junk' }] });
      expect(codeOf(result)).toBe('unknown_key');
    });
  });

  describe('bad_signature', () => {
    it('for any release field changed after signing', () => {
      const good = signed();
      const changes: Partial<SignedModelRelease['release']>[] = [
        { sha256: OTHER_SHA },
        { sizeBytes: good.release.sizeBytes + 1 },
        { expiresAt: good.release.expiresAt + DAY },
        { hardware: [] },
        { version: '1.4.1', manifest: { ...good.release.manifest, version: '1.4.1' } },
        {
          manifest: { ...good.release.manifest, thresholds: { ...good.release.manifest.thresholds, confidence: 0.9 } },
        },
      ];
      for (const change of changes) {
        expect(codeOf(verifyRelease({ ...good, release: { ...good.release, ...change } }, device))).toBe(
          'bad_signature',
        );
      }
    });

    it('for a signature over other bytes, of the wrong length or not canonical base64', () => {
      const good = signed();
      const other = signed({ releaseCounter: 6 });
      const bytes = Buffer.from(good.signature, 'base64');
      for (const signature of [
        other.signature,
        bytes.subarray(0, 63).toString('base64'),
        Buffer.concat([bytes, Buffer.from([0])]).toString('base64'),
        good.signature.replace(/=*$/, ''),
        `${good.signature.slice(0, 10)}!${good.signature.slice(11)}`,
      ]) {
        expect(codeOf(verifyRelease({ ...good, signature }, device))).toBe('bad_signature');
      }
    });

    it('when the trusted entry carries the id of another key', () => {
      const result = verifyRelease(signed(), {
        ...device,
        trustedKeys: [{ keyId: keyA.keyId, publicKeyPem: keyB.publicKeyPem }],
      });
      expect(codeOf(result)).toBe('bad_signature');
    });
  });

  it('is expired from expiresAt on', () => {
    const release = signed({ expiresAt: NOW + 10 });
    expect(codeOf(verifyRelease(release, { ...device, now: NOW + 9 }))).toBe('ok');
    expect(codeOf(verifyRelease(release, { ...device, now: NOW + 10 }))).toBe('expired');
  });

  describe('hardware', () => {
    it('refuses a profile missing from the release list and accepts any profile for an empty list', () => {
      expect(codeOf(verifyRelease(signed(), { ...device, hardwareProfile: 'orin-nano' }))).toBe(
        'hardware_incompatible',
      );
      expect(codeOf(verifyRelease(signed({ hardware: [] }), { ...device, hardwareProfile: 'orin-nano' }))).toBe('ok');
    });

    it("also applies the manifest's compatibleHardware", () => {
      const release = signed({
        hardware: [],
        manifest: { name: 'det', version: '1.4.0', adapter: 'yolo', compatibleHardware: ['rpi5'] },
      });
      expect(codeOf(verifyRelease(release, device))).toBe('ok');
      const refused = verifyRelease(release, { ...device, hardwareProfile: 'x86-gpu' });
      expect(codeOf(refused)).toBe('hardware_incompatible');
      if (!refused.ok) expect(refused.error.message).toContain("manifest's compatibleHardware (rpi5)");
    });

    it('is skipped when the caller has no hardware profile', () => {
      expect(codeOf(verifyRelease(signed({ hardware: ['orin-nano'] }), { ...device, hardwareProfile: null }))).toBe(
        'ok',
      );
    });
  });

  describe('anti-rollback', () => {
    it('refuses a counter below the highest installed and accepts a higher one', () => {
      expect(codeOf(verifyRelease(signed({ releaseCounter: 3 }), device))).toBe('release_counter_rollback');
      expect(codeOf(verifyRelease(signed({ releaseCounter: 5 }), device))).toBe('ok');
    });

    it('accepts an equal counter only to re-install the same bytes', () => {
      const release = signed({ releaseCounter: 4 });
      expect(codeOf(verifyRelease(release, { ...device, highestReleaseSha256: SHA }))).toBe('ok');
      expect(codeOf(verifyRelease(release, { ...device, highestReleaseSha256: SHA.toUpperCase() }))).toBe('ok');
      expect(codeOf(verifyRelease(release, { ...device, highestReleaseSha256: OTHER_SHA }))).toBe(
        'release_counter_rollback',
      );
      expect(codeOf(verifyRelease(release, device))).toBe('release_counter_rollback');
    });

    it('accepts any counter when nothing was installed', () => {
      expect(
        codeOf(verifyRelease(signed({ releaseCounter: 0 }), { ...device, highestReleaseCounter: undefined })),
      ).toBe('ok');
    });
  });

  it('checks size, then hash, only when the file facts are given', () => {
    const release = signed();
    expect(codeOf(verifyRelease(release, { ...device, fileSize: 1, fileSha256: OTHER_SHA }))).toBe('size_mismatch');
    expect(codeOf(verifyRelease(release, { ...device, fileSha256: SHA.toUpperCase() }))).toBe('ok');
    expect(codeOf(verifyRelease(release, { ...device, fileSize: undefined, fileSha256: undefined }))).toBe('ok');
  });

  it('reports the first failing check in the documented order', () => {
    const good = signed({ expiresAt: NOW, hardware: ['orin-nano'], releaseCounter: 1 });
    const options = { ...device, fileSize: 1, fileSha256: OTHER_SHA };
    expect(codeOf(verifyRelease(good, options))).toBe('expired');
    expect(codeOf(verifyRelease(good, { ...options, now: NOW - 1 }))).toBe('hardware_incompatible');
    expect(codeOf(verifyRelease(good, { ...options, now: NOW - 1, hardwareProfile: null }))).toBe(
      'release_counter_rollback',
    );
    const tampered = { ...good, release: { ...good.release, releaseCounter: 9 } };
    expect(codeOf(verifyRelease(tampered, options))).toBe('bad_signature');
    expect(codeOf(verifyRelease(tampered, { ...options, trustedKeys: trust(keyB) }))).toBe('unknown_key');
  });
});

describe('verifySignature', () => {
  it('verifies releases signed by any trusted key, so keys can rotate', () => {
    const byA = signed({}, keyA);
    const byB = signed({}, keyB);
    expect(codeOf(verifySignature(byA, trust(keyA, keyB)))).toBe('ok');
    expect(codeOf(verifySignature(byB, trust(keyA, keyB)))).toBe('ok');
    expect(codeOf(verifySignature(byA, trust(keyB)))).toBe('unknown_key');
    expect(codeOf(verifySignature(byB, trust(keyB)))).toBe('ok');
  });

  it('checks neither expiry nor hardware nor counters', () => {
    expect(codeOf(verifySignature(signed({ expiresAt: 2, issuedAt: 1 }), trust(keyA)))).toBe('ok');
  });

  it('does not depend on the order of keys in the input', () => {
    const good = signed();
    const reordered = reverseKeys(good) as SignedModelRelease;
    expect(Object.keys(reordered.release)[0]).not.toBe(Object.keys(good.release)[0]);
    expect(canonicalBytes(reordered.release)).toEqual(canonicalBytes(good.release));
    expect(codeOf(verifySignature(reordered, trust(keyA)))).toBe('ok');
    expect(codeOf(verifySignature(JSON.parse(JSON.stringify(good, null, 2)), trust(keyA)))).toBe('ok');
  });
});

describe('lineage in the signed release', () => {
  const lineage = {
    datasetVersion: 'hard-b@3',
    parentModel: OTHER_SHA,
    runId: 'run_01HZX3',
    trainer: 'ultralytics 8.3.2 on gpu-07',
  };

  it('verifies a release that names its lineage and returns the lineage as signed', () => {
    const result = verifyRelease(JSON.parse(JSON.stringify(signed({ lineage }))), device);
    expect(codeOf(result)).toBe('ok');
    if (result.ok) expect(result.value.release.lineage).toEqual(lineage);
  });

  it('refuses as bad_signature a lineage changed, added, or removed after signing', () => {
    const good = signed({ lineage });
    const changed = (patch: Record<string, unknown>) => ({
      ...good,
      release: { ...good.release, lineage: { ...lineage, ...patch } },
    });
    const { lineage: _dropped, ...withoutLineage } = good.release;
    const plain = signed();
    const cases = {
      'another dataset version': changed({ datasetVersion: 'hard-b@4' }),
      'another parent': changed({ parentModel: SHA }),
      'another run': changed({ runId: 'run_other' }),
      'another trainer': changed({ trainer: 'ultralytics 8.3.2 on gpu-08' }),
      'a member removed': { ...good, release: { ...good.release, lineage: { datasetVersion: 'hard-b@3' } } },
      'the lineage removed': { ...good, release: withoutLineage },
      'a lineage added to a release signed without one': {
        ...plain,
        release: { ...plain.release, lineage: { datasetVersion: 'hard-b@3' } },
      },
    };
    for (const [what, tampered] of Object.entries(cases)) {
      const result = verifyRelease(tampered, device);
      expect(codeOf(result), what).toBe('bad_signature');
    }
  });

  it('still verifies a release signed before lineage existed (no lineage member at all)', () => {
    // What the signer wrote before this change: the normalized release with no `lineage` key,
    // signed over its canonical bytes with plain Ed25519 (no code of this package involved).
    const before = {
      schema: 'edgeloop.model-release/v1',
      name: 'det',
      version: '1.4.0',
      sha256: SHA,
      sizeBytes: BYTES.length,
      releaseCounter: 5,
      issuedAt: NOW - DAY,
      expiresAt: NOW + DAY,
      keyId: keyA.keyId,
      hardware: ['rpi5'],
      manifest: ModelRelease.shape.manifest.parse({ name: 'det', version: '1.4.0', adapter: 'yolo' }),
    };
    const signature = sign(null, canonicalBytes(before), keyA.privateKeyPem).toString('base64');
    const result = verifyRelease(JSON.parse(JSON.stringify({ release: before, signature })), device);
    expect(codeOf(result)).toBe('ok');
    if (result.ok) expect('lineage' in result.value.release).toBe(false);
  });

  it('calls a lineage with an unknown member or a badly formed name malformed', () => {
    const good = signed({ lineage });
    const extra = verifyRelease({ ...good, release: { ...good.release, lineage: { ...lineage, notes: 'x' } } }, device);
    expect(codeOf(extra)).toBe('malformed');
    if (!extra.ok) expect(extra.error.message).toContain('release.lineage.notes: unknown member');
    const upper = verifyRelease(
      { ...good, release: { ...good.release, lineage: { ...lineage, parentModel: OTHER_SHA.toUpperCase() } } },
      device,
    );
    expect(codeOf(upper)).toBe('malformed');
  });

  it('refuses to sign a lineage with a bad dataset version, parent, run id or trainer', () => {
    const refused = (bad: Record<string, unknown>) => {
      try {
        signed({ lineage: { ...lineage, ...bad } });
        return 'signed';
      } catch (error) {
        return (error as { code?: string }).code;
      }
    };
    expect(refused({ datasetVersion: 'hard-b' })).toBe('invalid_release');
    expect(refused({ parentModel: 'abc' })).toBe('invalid_release');
    expect(refused({ runId: 'run 1' })).toBe('invalid_release');
    expect(refused({ trainer: 'x'.repeat(257) })).toBe('invalid_release');
    expect(refused({ trainer: 'line\nbreak' })).toBe('invalid_release');
    expect(refused({})).toBe('signed');
  });
});
