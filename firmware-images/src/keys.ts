import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SigningError } from './errors.ts';
import { keyIdOf } from './trusted-keys.ts';

/** A fresh signing key: PKCS#8 PEM private key, SPKI PEM public key, and the key id (see keyIdOf). */
export type KeyPair = { readonly privateKeyPem: string; readonly publicKeyPem: string; readonly keyId: string };

/** A parsed private signing key with its public half and key id. */
export type SigningKey = { readonly privateKey: KeyObject; readonly publicKeyPem: string; readonly keyId: string };

export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return Object.freeze({
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    keyId: keyIdOf(publicKey),
  });
}

/** Parses a PKCS#8 PEM Ed25519 private key; throws SigningError `invalid_key` with the reason. */
export function parsePrivateKeyPem(pem: string): SigningKey {
  const text = pem.trim();
  if (text.startsWith('-----BEGIN PUBLIC KEY-----')) {
    throw new SigningError('invalid_key', 'this is a public key; signing needs the private key (the .key file)');
  }
  if (!text.startsWith('-----BEGIN PRIVATE KEY-----')) {
    throw new SigningError('invalid_key', 'not a PKCS#8 PEM private key (expected -----BEGIN PRIVATE KEY-----)');
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: text, format: 'pem' });
  } catch (error) {
    throw new SigningError('invalid_key', `unreadable private key PEM: ${(error as Error).message}`, { cause: error });
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new SigningError(
      'invalid_key',
      `private key is ${privateKey.asymmetricKeyType ?? 'of unknown type'}, expected ed25519`,
    );
  }
  const publicKey = createPublicKey(privateKey);
  return Object.freeze({
    privateKey,
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    keyId: keyIdOf(publicKey),
  });
}
