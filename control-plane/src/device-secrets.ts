import type { Logger } from 'pino';
import type { DeviceCredential, DeviceCredentialRepository } from './db/repositories.ts';
import type { DeviceAccess } from './fleet.ts';
import type { Clock } from './ingest.ts';
import type { MetricsRegistry } from './metrics.ts';
import { generateSecret, type SecretHasher } from './secrets.ts';

/*
 * Device secrets with rotation and overlap. A rotation stores the hash of a new secret next to the
 * current one, with a deadline:
 *
 *   presented secret            before the deadline           at or after the deadline
 *   ------------------------    ---------------------------   --------------------------------
 *   the current one             accepted                      refused (expired)
 *   the next one                accepted, promoted: the old   accepted, promoted
 *                               one stops working at once
 *
 * Promotion is lazy: nothing runs at the deadline; the check reads the deadline, and the first
 * use of the next secret (MQTT CONNECT or an HTTP device request) makes it the current one.
 * MQTT (broker.ts) and HTTP device authentication (http/auth.ts) check secrets here.
 */

/** Which stored secret a presented one matched; `expired`: the old one, after its deadline. */
export type SecretMatch = 'current' | 'next' | 'expired';

/** The outcome of a secret check: `unknown` for no active device, `refused` for no match. */
export type SecretCheck = SecretMatch | 'unknown' | 'refused';

/** A stand-in hash, so an unknown id costs the same work as a known one. */
const NO_HASH = '0'.repeat(64);

/**
 * Which secret of the credential `secret` is (pure). Both hashes are compared whichever matches,
 * so the time taken does not tell a rotation is pending.
 */
export function matchSecret(
  credential: DeviceCredential,
  secret: string,
  now: number,
  verify: (secret: string, hash: string) => boolean,
): SecretMatch | null {
  const current = verify(secret, credential.secretHash);
  const next = verify(secret, credential.secretHashNext ?? NO_HASH) && credential.secretHashNext !== null;
  if (next) return 'next';
  if (!current) return null;
  const expired =
    credential.secretHashNext !== null &&
    credential.secretNextDeadline !== null &&
    now >= credential.secretNextDeadline;
  return expired ? 'expired' : 'current';
}

/** A rotation begun: the new secret (shown once) and when the old one stops working. */
export type RotatedSecret = { readonly password: string; readonly deadline: number };

export type DeviceSecrets = {
  /**
   * Checks a device's secret. A match of the pending next secret promotes it (the old one stops
   * working); the login still succeeds if that write fails (the next use promotes it). `lookup`
   * replaces the repository read (a route that reads the device row anyway).
   */
  check(id: string, secret: string, lookup?: (id: string) => Promise<DeviceCredential | null>): Promise<SecretCheck>;
  /** Begins a rotation: a new secret, valid with the old one for `overlapMs`. Null for no active device. */
  rotate(id: string, overlapMs: number): Promise<RotatedSecret | null>;
};

export type DeviceSecretsDeps = {
  readonly credentials: DeviceCredentialRepository;
  readonly hasher: SecretHasher;
  readonly clock: Clock;
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
  /**
   * A broker that keeps its own copy of device passwords (Mosquitto's dynamic security; one per
   * client, and changing it disconnects the device) gets a rotation's new one once the device
   * may have it: here, at the promotion (its first HTTP use); the fleet does it as it delivers
   * the rotation command. Absent: the broker asks `check`.
   */
  readonly access?: Pick<DeviceAccess, 'setPassword'>;
};

export function createDeviceSecrets(deps: DeviceSecretsDeps): DeviceSecrets {
  const { credentials, hasher, clock, logger } = deps;
  const rotations = deps.metrics.counter(
    'edgeloop_device_credential_rotations_total',
    'Device secret rotations: started, promoted (the device used the new secret), expired_secret_refused (the old one after its deadline)',
  );
  const verify = (secret: string, hash: string) => hasher.verify(secret, hash);

  return {
    async check(id, secret, lookup) {
      const credential = await (lookup ?? credentials.get)(id);
      if (credential === null) {
        verify(secret, NO_HASH);
        return 'unknown';
      }
      const match = matchSecret(credential, secret, clock.now(), verify);
      if (match === null) return 'refused';
      if (match === 'expired') {
        rotations.inc({ event: 'expired_secret_refused' });
        return match;
      }
      if (match === 'next') {
        try {
          if (await credentials.promote(id, credential.secretHashNext!)) {
            rotations.inc({ event: 'promoted' });
            await deps.access?.setPassword(id, secret);
          }
        } catch (error) {
          logger.error(
            { err: error, deviceId: id },
            'promoting the rotated secret (or handing it to the broker) failed; the next use retries',
          );
        }
      }
      return match;
    },

    async rotate(id, overlapMs) {
      const password = generateSecret();
      const now = clock.now();
      const deadline = now + Math.max(0, overlapMs);
      const begun = await credentials.beginRotation({ id, secretHashNext: hasher.hash(password), deadline, now });
      if (begun === null) return null;
      rotations.inc({ event: 'started' });
      return { password, deadline };
    },
  };
}
