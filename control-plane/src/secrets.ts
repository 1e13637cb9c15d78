import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/*
 * Device secrets and API tokens are 256-bit random values, so a fast keyed hash is the right
 * store for them: HMAC-SHA256 under a server pepper. Nobody can brute-force a 256-bit secret, and
 * a reconnect storm of thousands of devices costs microseconds each (a password KDF would cost
 * seconds of CPU). Without the pepper file a stolen database holds nothing usable.
 */

export const PEPPER_FILE = 'server.key';
const PEPPER_BYTES = 32;

/** A keyed hasher bound to one pepper. */
export type SecretHasher = {
  /** Hex HMAC-SHA256 of a secret. */
  hash(secret: string): string;
  /** Constant-time comparison of a secret against a stored hash. */
  verify(secret: string, storedHash: string): boolean;
};

export function createSecretHasher(pepper: Buffer): SecretHasher {
  if (pepper.length < 16) throw new Error('server pepper must be at least 16 bytes');
  const hash = (secret: string): string => createHmac('sha256', pepper).update(secret, 'utf8').digest('hex');
  return {
    hash,
    verify(secret, storedHash) {
      const actual = Buffer.from(hash(secret), 'hex');
      const expected = Buffer.from(storedHash, 'hex');
      return actual.length === expected.length && timingSafeEqual(actual, expected);
    },
  };
}

/** A new random secret: 32 bytes, base64url (43 characters). */
export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Reads the server pepper from `<dataDir>/server.key`, creating it (mode 0600) on first start.
 * The file holds the pepper as base64 on one line.
 */
export function loadOrCreatePepper(dataDir: string): Buffer {
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, PEPPER_FILE);
  if (existsSync(file)) {
    const pepper = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
    if (pepper.length < 16) throw new Error(`${file} is damaged: expected at least 16 bytes of base64`);
    return pepper;
  }
  const pepper = randomBytes(PEPPER_BYTES);
  writeFileSync(file, `${pepper.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return pepper;
}
