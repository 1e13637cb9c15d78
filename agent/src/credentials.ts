import { ROTATE_CREDENTIALS_COMMAND, RotateCredentialsArgs } from '@edgeloop/protocol';
import { CommandError, type Commands } from './commands.ts';
import { writeFileAtomic } from './desired-state.ts';
import type { ReconnectOutcome } from './link.ts';
import { type Logger, silentLogger } from './logger.ts';

/*
 * The device's secret and its rotation (the `rotate-credentials` command). The control plane
 * sends a new secret on the device's own command topic; the agent
 *   1. writes it to mqtt.passwordFile atomically (temp file 0600, fsync, rename, fsync dir), so a
 *      restart (even kill -9) right after uses it;
 *   2. reconnects with it (MQTT; HTTP downloads and uploads read the same holder): the broker
 *      promotes it at that login, and the old one stops working;
 *   3. answers ok once the broker accepted it. A refusal is tried again a few times, half a second
 *      apart: a broker that holds one password per client (Mosquitto's dynamic security) gets the
 *      new one from the control plane only once the command is out, so the first login can race
 *      it. If the broker still refuses it (or the attempts fail), it writes the old secret back, reconnects with that (it works until the rotation's
 *      deadline), reports an agent.fault event and answers `failed`.
 * Without a passwordFile (an inline password or EDGELOOP_MQTT_PASSWORD) a rotated secret could not
 * survive a restart: the command is refused and nothing changes.
 */

/** The credential the agent presents, read at every use (MQTT connect, HTTP Basic). */
export type DeviceCredentials = { readonly username: string; password: string };

/** Where the secret is kept across restarts. */
export type CredentialStore = {
  /** Durably replaces the stored secret (throws when it cannot). */
  save(password: string): void;
  /** For messages: where it is kept. */
  readonly where: string;
};

/** The secret as the one line of a file (mqtt.passwordFile), written atomically, mode 0600. */
export function fileCredentialStore(file: string): CredentialStore {
  return {
    where: file,
    save(password) {
      writeFileAtomic(file, `${password}\n`, { mode: 0o600 });
    },
  };
}

export type RotateCredentialsDeps = {
  readonly credentials: DeviceCredentials;
  /** Null: no passwordFile configured, rotation refused. */
  readonly store: CredentialStore | null;
  readonly link: { reconnect(): Promise<ReconnectOutcome> };
  /** Events for the control plane (rotated, or a fault when the new secret was refused). */
  readonly emit: (event: {
    type: string;
    severity: 'info' | 'error';
    message?: string;
    data?: Record<string, string | number | boolean | null>;
  }) => void;
  readonly logger?: Logger;
  /** Logins tried with the new secret before going back to the old one (default 4), and the pause between them. */
  readonly attempts?: number;
  readonly retryDelayMs?: number;
  readonly sleep?: (ms: number) => Promise<void>;
};

const sleepFor = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function registerRotateCredentials(commands: Commands, deps: RotateCredentialsDeps): void {
  const log = deps.logger ? deps.logger.child({ component: 'credentials' }) : silentLogger;
  let busy = false;
  commands.register(ROTATE_CREDENTIALS_COMMAND, {
    args: RotateCredentialsArgs,
    async run(args) {
      const store = deps.store;
      if (store === null) {
        throw new CommandError(
          'failed',
          'this agent reads its password from the config or the environment, not from mqtt.passwordFile: a rotated secret could not survive a restart, so it was not taken',
        );
      }
      if (busy) throw new CommandError('busy', 'a credential rotation is already under way');
      const { credentials } = deps;
      const previous = credentials.password;
      if (args.password === previous) return { reconnected: false, unchanged: true };
      busy = true;
      try {
        try {
          store.save(args.password);
        } catch (error) {
          throw new CommandError('failed', `the new secret could not be stored in ${store.where}: ${errorText(error)}`);
        }
        credentials.password = args.password;
        const attempts = Math.max(1, deps.attempts ?? 4);
        let outcome = await deps.link.reconnect();
        for (let attempt = 1; !outcome.ok && attempt < attempts; attempt++) {
          log.warn({ reason: outcome.error, attempt }, 'the new secret was refused: trying it again');
          await (deps.sleep ?? sleepFor)(deps.retryDelayMs ?? 500);
          outcome = await deps.link.reconnect();
        }
        if (outcome.ok) {
          log.info({ file: store.where }, 'rotated credentials: connected with the new secret');
          deps.emit({ type: 'agent.credentials-rotated', severity: 'info', data: { file: store.where } });
          return { reconnected: true, unchanged: false };
        }
        // Back to the old secret, which works until the rotation's deadline; the link reconnects.
        credentials.password = previous;
        let restored = true;
        try {
          store.save(previous);
        } catch (error) {
          restored = false;
          log.error({ err: error, file: store.where }, 'the old secret could not be written back');
        }
        const until = args.deadline !== undefined ? ` until ${new Date(args.deadline).toISOString()}` : '';
        const message = `the new secret was not accepted (${outcome.error}); kept the old one, which works${until}`;
        log.error({ reason: outcome.error, restored }, 'rotated credentials refused: back to the old secret');
        deps.emit({
          type: 'agent.fault',
          severity: 'error',
          message: message.slice(0, 2048),
          data: { code: 'credentials_rejected', restored },
        });
        throw new CommandError('failed', message);
      } finally {
        busy = false;
      }
    },
  });
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
