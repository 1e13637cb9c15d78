import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SigningError } from './errors.ts';
import { generateKeyPair, parsePrivateKeyPem } from './keys.ts';
import { keyIdOf } from './trusted-keys.ts';

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    return error instanceof SigningError ? error.code : `not a SigningError: ${String(error)}`;
  }
  return undefined;
}

describe('generateKeyPair', () => {
  it('returns PKCS#8 and SPKI PEMs of one Ed25519 key and its key id', () => {
    const pair = generateKeyPair();
    expect(pair.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(pair.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    expect(pair.keyId).toBe(keyIdOf(createPublicKey(pair.publicKeyPem)));
    const message = Buffer.from('edgeloop');
    const signature = sign(null, message, pair.privateKeyPem);
    expect(verify(null, message, pair.publicKeyPem, signature)).toBe(true);
  });

  it('gives a new key every time', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    expect(a.keyId).not.toBe(b.keyId);
    expect(a.privateKeyPem).not.toBe(b.privateKeyPem);
  });
});

describe('parsePrivateKeyPem', () => {
  it('returns the key with its public half and key id', () => {
    const pair = generateKeyPair();
    const key = parsePrivateKeyPem(pair.privateKeyPem);
    expect(key.keyId).toBe(pair.keyId);
    expect(key.publicKeyPem).toBe(pair.publicKeyPem);
  });

  it('refuses a public key, another algorithm and a broken PEM with invalid_key', () => {
    expect(codeOf(() => parsePrivateKeyPem(generateKeyPair().publicKeyPem))).toBe('invalid_key');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString();
    expect(codeOf(() => parsePrivateKeyPem(ec))).toBe('invalid_key');
    expect(codeOf(() => parsePrivateKeyPem('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----'))).toBe(
      'invalid_key',
    );
    expect(codeOf(() => parsePrivateKeyPem(''))).toBe('invalid_key');
  });
});
