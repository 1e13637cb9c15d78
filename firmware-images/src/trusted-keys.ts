import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { fail, ok, type Result } from '@edgeloop/protocol';

/*
 * Public keys only: this module is imported by verify.ts, which the control plane and the agent
 * use. Nothing here touches a private key or the file system.
 *
 * Key id: the first 16 lowercase hex characters (64 bits) of SHA-256 over the raw 32-byte Ed25519
 * public key (the RFC 8032 encoding, the same bytes as the JWK `x` member and the last 32 bytes of
 * the SPKI DER). It names a key; it is not a secret and proves nothing by itself.
 */

/** One key a verifier trusts. `keyId` is always the key's own id (see keyIdOf). */
export type TrustedKey = { readonly keyId: string; readonly publicKeyPem: string };

/** A configured key; `keyId` may be left out (it is derived), and if given must match the key. */
export type TrustedKeyInput = { readonly keyId?: string; readonly publicKeyPem: string };

export const KEY_ID_HEX_LENGTH = 16;

/** The raw 32-byte Ed25519 public key of a key object (public or private). */
export function rawPublicKey(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') {
    throw new TypeError('not an Ed25519 key');
  }
  return Buffer.from(jwk.x, 'base64url');
}

/** The key id of an Ed25519 key: first 16 hex chars of sha256(raw 32-byte public key). */
export function keyIdOf(key: KeyObject): string {
  return createHash('sha256').update(rawPublicKey(key)).digest('hex').slice(0, KEY_ID_HEX_LENGTH);
}

/**
 * Parses an SPKI PEM (`-----BEGIN PUBLIC KEY-----`) holding an Ed25519 public key. A private key
 * PEM is refused even though a public key could be derived from it: private keys never belong in a
 * trust store.
 */
export function parsePublicKeyPem(pem: string): Result<KeyObject, 'invalid_key'> {
  const text = pem.trim();
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    return fail('invalid_key', 'this is a private key; a trust store holds public keys only (the .pub file)');
  }
  if (!text.startsWith('-----BEGIN PUBLIC KEY-----')) {
    return fail('invalid_key', 'not an SPKI PEM public key (expected -----BEGIN PUBLIC KEY-----)');
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: text, format: 'pem' });
  } catch (error) {
    return fail('invalid_key', `unreadable public key PEM: ${(error as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    return fail('invalid_key', `public key is ${key.asymmetricKeyType ?? 'of unknown type'}, expected ed25519`);
  }
  return ok(key);
}

/** A trusted key from a public key PEM, with its derived key id. */
export function trustedKeyFromPem(pem: string): Result<TrustedKey, 'invalid_key'> {
  const parsed = parsePublicKeyPem(pem);
  if (!parsed.ok) return parsed;
  return ok(Object.freeze({ keyId: keyIdOf(parsed.value), publicKeyPem: pem.trim() }));
}

/**
 * Validates a configured trust set (several keys, so keys can rotate) and lists every problem at
 * once: unreadable or non-Ed25519 PEMs, private keys, a keyId that is not the key's own id,
 * duplicate keys, an empty set. The result is frozen.
 */
export function parseTrustedKeys(
  entries: readonly TrustedKeyInput[],
): Result<readonly TrustedKey[], 'invalid_trusted_keys'> {
  const problems: string[] = [];
  const keys: TrustedKey[] = [];
  const seen = new Map<string, number>();
  if (entries.length === 0) problems.push('no trusted keys: every release would be refused');
  entries.forEach((entry, index) => {
    const label = `key ${index + 1}${entry.keyId === undefined ? '' : ` (${entry.keyId})`}`;
    const parsed = trustedKeyFromPem(entry.publicKeyPem);
    if (!parsed.ok) {
      problems.push(`${label}: ${parsed.error.message}`);
      return;
    }
    const { keyId } = parsed.value;
    if (entry.keyId !== undefined && entry.keyId !== keyId) {
      problems.push(`${label}: keyId ${entry.keyId} is not this key's id ${keyId}`);
      return;
    }
    const earlier = seen.get(keyId);
    if (earlier !== undefined) {
      problems.push(`${label}: same key as key ${earlier} (${keyId})`);
      return;
    }
    seen.set(keyId, index + 1);
    keys.push(parsed.value);
  });
  if (problems.length > 0) return fail('invalid_trusted_keys', problems.join('; '));
  return ok(Object.freeze(keys));
}
