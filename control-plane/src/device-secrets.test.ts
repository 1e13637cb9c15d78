import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DeviceCredential, DeviceCredentialRepository } from './db/repositories.ts';
import { createSqliteStore, type SqliteStore } from './db/sqlite/store.ts';
import { createDeviceSecrets, type DeviceSecrets, matchSecret } from './device-secrets.ts';
import { createMetricsRegistry, type MetricsRegistry } from './metrics.ts';
import { createSecretHasher, generateSecret } from './secrets.ts';

const T = 1_800_000_000_000;
const hasher = createSecretHasher(Buffer.alloc(32, 7));
const verify = (secret: string, hash: string) => hasher.verify(secret, hash);

describe('matchSecret', () => {
  const current = 'current-secret-0123456789';
  const next = 'next-secret-0123456789abc';
  const plain: DeviceCredential = { secretHash: hasher.hash(current), secretHashNext: null, secretNextDeadline: null };
  const rotating: DeviceCredential = { ...plain, secretHashNext: hasher.hash(next), secretNextDeadline: T + 1000 };

  it('takes the current secret without a rotation, at any time, and nothing else', () => {
    expect(matchSecret(plain, current, T, verify)).toBe('current');
    expect(matchSecret(plain, current, T + 10 ** 12, verify)).toBe('current');
    expect(matchSecret(plain, next, T, verify)).toBeNull();
    expect(matchSecret(plain, '', T, verify)).toBeNull();
  });

  it('takes both secrets before the deadline and calls the old one expired from the deadline on', () => {
    expect(matchSecret(rotating, current, T, verify)).toBe('current');
    expect(matchSecret(rotating, next, T, verify)).toBe('next');
    expect(matchSecret(rotating, current, T + 999, verify)).toBe('current');
    expect(matchSecret(rotating, current, T + 1000, verify)).toBe('expired');
    expect(matchSecret(rotating, next, T + 1000, verify)).toBe('next');
    expect(matchSecret(rotating, 'some-other-secret-000000', T, verify)).toBeNull();
  });

  it('compares the presented secret with both hashes whichever matches', () => {
    const seen: string[] = [];
    const counting = (secret: string, hash: string) => {
      seen.push(hash);
      return verify(secret, hash);
    };
    matchSecret(rotating, current, T, counting);
    matchSecret(rotating, next, T, counting);
    matchSecret(plain, current, T, counting);
    // Three checks, two comparisons each: a pending rotation does not change the work done.
    expect(seen).toHaveLength(6);
  });
});

describe('device secrets over a real SQLite store', () => {
  let dir: string;
  let store: SqliteStore;
  let metrics: MetricsRegistry;
  let now: number;
  const clock = { now: () => now };

  const secretsWith = (credentials: DeviceCredentialRepository = store.credentials): DeviceSecrets =>
    createDeviceSecrets({ credentials, hasher, clock, metrics, logger: pino({ level: 'silent' }) });
  /** The counter's value as /metrics renders it. */
  const rotations = (event: string) => {
    const line = metrics
      .render()
      .split('\n')
      .find((candidate) => candidate.startsWith(`edgeloop_device_credential_rotations_total{event="${event}"} `));
    return line === undefined ? 0 : Number(line.split(' ')[1]);
  };

  const enroll = async (id: string) => {
    const password = generateSecret();
    const enrolled = await store.devices.enroll({ id, labels: {}, secretHash: hasher.hash(password), now });
    if (!enrolled.ok) throw new Error(enrolled.error.message);
    return password;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'edgeloop-device-secrets-'));
    store = createSqliteStore({ dataDir: dir });
    metrics = createMetricsRegistry();
    now = T;
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('accepts both secrets during the overlap until the new one is used, then only the new one', async () => {
    const secrets = secretsWith();
    const old = await enroll('cam-1');
    const rotated = await secrets.rotate('cam-1', 60_000);
    expect(rotated).toEqual({ password: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), deadline: T + 60_000 });
    expect(await secrets.check('cam-1', old)).toBe('current');
    expect(await secrets.check('cam-1', old)).toBe('current');
    expect(await secrets.check('cam-1', rotated!.password)).toBe('next');
    // Promoted: the new secret is the current one, the old one is refused, well before the deadline.
    expect(await secrets.check('cam-1', rotated!.password)).toBe('current');
    expect(await secrets.check('cam-1', old)).toBe('refused');
    expect(await store.credentials.get('cam-1')).toMatchObject({ secretHashNext: null, secretNextDeadline: null });
    expect(rotations('started')).toBe(1);
    expect(rotations('promoted')).toBe(1);
  });

  it('refuses the old secret from the deadline on and still takes the new one', async () => {
    const secrets = secretsWith();
    const old = await enroll('cam-1');
    const rotated = await secrets.rotate('cam-1', 60_000);
    now = T + 59_999;
    expect(await secrets.check('cam-1', old)).toBe('current');
    now = T + 60_000;
    expect(await secrets.check('cam-1', old)).toBe('expired');
    expect(rotations('expired_secret_refused')).toBe(1);
    expect(await secrets.check('cam-1', rotated!.password)).toBe('next');
    expect(await secrets.check('cam-1', old)).toBe('refused');
  });

  it('with no overlap refuses the old secret at once', async () => {
    const secrets = secretsWith();
    const old = await enroll('cam-1');
    const rotated = await secrets.rotate('cam-1', 0);
    expect(rotated?.deadline).toBe(T);
    expect(await secrets.check('cam-1', old)).toBe('expired');
    expect(await secrets.check('cam-1', rotated!.password)).toBe('next');
  });

  it('keeps the current secret when a second rotation replaces a pending one, whose secret then fails', async () => {
    const secrets = secretsWith();
    const old = await enroll('cam-1');
    const first = await secrets.rotate('cam-1', 60_000);
    const second = await secrets.rotate('cam-1', 60_000);
    expect(await secrets.check('cam-1', first!.password)).toBe('refused');
    expect(await secrets.check('cam-1', old)).toBe('current');
    expect(await secrets.check('cam-1', second!.password)).toBe('next');
  });

  it('answers unknown for an unknown or revoked device, and rotates nothing for it', async () => {
    const secrets = secretsWith();
    const old = await enroll('cam-1');
    expect(await secrets.check('cam-nobody', old)).toBe('unknown');
    expect(await secrets.rotate('cam-nobody', 1000)).toBeNull();
    await store.devices.revoke('cam-1', T + 1);
    expect(await secrets.check('cam-1', old)).toBe('unknown');
    expect(await secrets.rotate('cam-1', 1000)).toBeNull();
    expect(rotations('started')).toBe(0);
  });

  it('lets a login with the new secret in when promoting it fails, and promotes at the next use', async () => {
    let failPromote = true;
    const flaky: DeviceCredentialRepository = {
      ...store.credentials,
      async promote(id, hash) {
        if (failPromote) throw new Error('database is locked');
        return store.credentials.promote(id, hash);
      },
    };
    const secrets = secretsWith(flaky);
    const old = await enroll('cam-1');
    const rotated = await secrets.rotate('cam-1', 60_000);
    expect(await secrets.check('cam-1', rotated!.password)).toBe('next');
    expect(await secrets.check('cam-1', old)).toBe('current');
    failPromote = false;
    expect(await secrets.check('cam-1', rotated!.password)).toBe('next');
    expect(await secrets.check('cam-1', old)).toBe('refused');
    expect(rotations('promoted')).toBe(1);
  });

  it('checks against the credential a lookup gives instead of reading the repository', async () => {
    const secrets = secretsWith();
    await enroll('cam-1');
    const stranger = generateSecret();
    const lookup = async (): Promise<DeviceCredential> => ({
      secretHash: hasher.hash(stranger),
      secretHashNext: null,
      secretNextDeadline: null,
    });
    expect(await secrets.check('cam-1', stranger, lookup)).toBe('current');
    expect(await secrets.check('cam-1', stranger, async () => null)).toBe('unknown');
  });
});
