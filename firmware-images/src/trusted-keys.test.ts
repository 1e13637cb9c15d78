import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateKeyPair } from './keys.ts';
import { keyIdOf, parsePublicKeyPem, parseTrustedKeys, trustedKeyFromPem } from './trusted-keys.ts';

const ecPublicPem = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  .publicKey.export({ format: 'pem', type: 'spki' })
  .toString();

describe('keyIdOf', () => {
  it('is the first 16 hex chars of sha256 over the raw 32-byte public key', () => {
    const pair = generateKeyPair();
    const der = createPublicKey(pair.publicKeyPem).export({ format: 'der', type: 'spki' });
    const raw = der.subarray(der.length - 32);
    const expected = createHash('sha256').update(raw).digest('hex').slice(0, 16);
    expect(keyIdOf(createPublicKey(pair.publicKeyPem))).toBe(expected);
    expect(expected).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe('parsePublicKeyPem', () => {
  it('accepts an Ed25519 SPKI PEM with surrounding whitespace', () => {
    const pair = generateKeyPair();
    const parsed = parsePublicKeyPem(`\n${pair.publicKeyPem}\n\n`);
    expect(parsed.ok && parsed.value.asymmetricKeyType).toBe('ed25519');
  });

  it('refuses a private key, so a signing key never lands in a trust store', () => {
    const parsed = parsePublicKeyPem(generateKeyPair().privateKeyPem);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error.message).toMatch(/private key/);
  });

  it('refuses text that is not a PEM and a PEM with a broken body', () => {
    expect(parsePublicKeyPem('hello').ok).toBe(false);
    const broken = parsePublicKeyPem('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n');
    expect(broken.ok).toBe(false);
    if (!broken.ok) expect(broken.error.code).toBe('invalid_key');
  });

  it('refuses a public key of another algorithm', () => {
    const parsed = parsePublicKeyPem(ecPublicPem);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error.message).toMatch(/ec, expected ed25519/);
  });
});

describe('parseTrustedKeys', () => {
  it('derives key ids, accepts a matching given id and freezes the set', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    const parsed = parseTrustedKeys([
      { publicKeyPem: a.publicKeyPem },
      { keyId: b.keyId, publicKeyPem: b.publicKeyPem },
    ]);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value.map((key) => key.keyId)).toEqual([a.keyId, b.keyId]);
    expect(Object.isFrozen(parsed.value)).toBe(true);
  });

  it('lists every problem at once', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    const parsed = parseTrustedKeys([
      { publicKeyPem: a.publicKeyPem },
      { keyId: a.keyId, publicKeyPem: b.publicKeyPem },
      { publicKeyPem: a.publicKeyPem },
      { publicKeyPem: 'not a key' },
    ]);
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.error.code).toBe('invalid_trusted_keys');
    expect(parsed.error.message).toContain(`key 2 (${a.keyId}): keyId ${a.keyId} is not this key's id ${b.keyId}`);
    expect(parsed.error.message).toContain('key 3: same key as key 1');
    expect(parsed.error.message).toContain('key 4: not an SPKI PEM');
  });

  it('refuses an empty set, which would refuse every release', () => {
    const parsed = parseTrustedKeys([]);
    expect(parsed.ok).toBe(false);
  });

  it('trustedKeyFromPem gives the same id as generateKeyPair', () => {
    const pair = generateKeyPair();
    const key = trustedKeyFromPem(pair.publicKeyPem);
    expect(key.ok && key.value.keyId).toBe(pair.keyId);
  });
});
