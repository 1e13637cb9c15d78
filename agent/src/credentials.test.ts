import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decode, type Reply, ROTATE_CREDENTIALS_COMMAND } from '@edgeloop/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createCommands } from './commands.ts';
import {
  type CredentialStore,
  type DeviceCredentials,
  fileCredentialStore,
  registerRotateCredentials,
} from './credentials.ts';
import type { ReconnectOutcome } from './link.ts';
import { createMemoryOutbox } from './outbox.ts';
import { createPublisher } from './publisher.ts';
import { createSequencer } from './sequencer.ts';

const OLD = 'old-secret-0123456789abcdefghij';
const NEW = 'new-secret-0123456789abcdefghij';
const DEADLINE = Date.UTC(2030, 0, 1);

let dir: string;
let file: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'edgeloop-credentials-'));
  file = path.join(dir, 'mqtt.secret');
  writeFileSync(file, `${OLD}\n`, { mode: 0o644 });
  chmodSync(file, 0o644);
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

type Event = { type: string; severity: string; message?: string; data?: Record<string, unknown> };

/**
 * The command table with rotate-credentials registered over a link whose reconnect answers
 * `outcomes` in turn (and records the password it would log in with).
 */
function setup(options: { store?: CredentialStore | null; outcomes?: ReconnectOutcome[]; hold?: Promise<void> } = {}) {
  const clock = { now: () => 1_000 };
  const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
  const publisher = createPublisher({ sequencer: createSequencer({ clock, bootId: 'boot-rotate' }), outbox });
  const commands = createCommands({ publisher, clock });
  const credentials: DeviceCredentials = { username: 'cam-1', password: OLD };
  const logins: string[] = [];
  const events: Event[] = [];
  const pauses: number[] = [];
  const outcomes = [...(options.outcomes ?? [{ ok: true }])];
  registerRotateCredentials(commands, {
    credentials,
    store: options.store === undefined ? fileCredentialStore(file) : options.store,
    link: {
      async reconnect() {
        logins.push(credentials.password);
        await options.hold;
        return outcomes.shift() ?? { ok: true };
      },
    },
    emit: (event) => events.push(event),
    sleep: async (ms) => {
      pauses.push(ms);
    },
  });
  const replies = (): Reply[] =>
    outbox
      .nextBatch(100)
      .filter((entry) => entry.channel === 'reply')
      .map((entry) => {
        outbox.ack(entry.msgId);
        const decoded = decode('reply', entry.payload);
        if (!decoded.ok) throw new Error(decoded.error.message);
        return decoded.value;
      });
  const rotate = (requestId: string, password = NEW) =>
    commands.handle({ requestId, name: ROTATE_CREDENTIALS_COMMAND, args: { password, deadline: DEADLINE } });
  return { credentials, logins, events, replies, rotate, pauses };
}

describe('rotate-credentials', () => {
  it('stores the new secret in a new 0600 file renamed over the old one, then reconnects with it and answers ok', async () => {
    const before = statSync(file);
    const { credentials, logins, events, replies, rotate } = setup();
    await rotate('r1');
    expect(readFileSync(file, 'utf8')).toBe(`${NEW}\n`);
    const after = statSync(file);
    expect(after.mode & 0o777).toBe(0o600);
    // Renamed into place (a new inode), not rewritten in place; no temp file is left.
    expect(after.ino).not.toBe(before.ino);
    expect(readdirSync(dir)).toEqual(['mqtt.secret']);
    // The link's login already read the new secret; HTTP clients read the same holder.
    expect(logins).toEqual([NEW]);
    expect(credentials.password).toBe(NEW);
    expect(replies()).toEqual([
      expect.objectContaining({ requestId: 'r1', ok: true, data: { reconnected: true, unchanged: false } }),
    ]);
    expect(events).toEqual([{ type: 'agent.credentials-rotated', severity: 'info', data: { file } }]);
  });

  it('tries a refused new secret again, half a second apart, and answers ok when a later login is accepted', async () => {
    const refused: ReconnectOutcome = { ok: false, error: 'Connection refused: Not authorized' };
    const { credentials, logins, replies, rotate, pauses } = setup({ outcomes: [refused, refused, { ok: true }] });
    await rotate('r2b');
    expect(logins).toEqual([NEW, NEW, NEW]);
    expect(pauses).toEqual([500, 500]);
    expect(credentials.password).toBe(NEW);
    expect(readFileSync(file, 'utf8')).toBe(`${NEW}\n`);
    expect(replies()[0]).toMatchObject({ requestId: 'r2b', ok: true, data: { reconnected: true, unchanged: false } });
  });

  it('writes the old secret back and answers failed when the broker refuses the new one at every attempt', async () => {
    const refused: ReconnectOutcome = { ok: false, error: 'Connection refused: Bad username or password' };
    const { credentials, logins, events, replies, rotate, pauses } = setup({
      outcomes: [refused, refused, refused, refused],
    });
    await rotate('r2');
    expect(logins).toEqual([NEW, NEW, NEW, NEW]);
    expect(pauses).toHaveLength(3);
    expect(credentials.password).toBe(OLD);
    expect(readFileSync(file, 'utf8')).toBe(`${OLD}\n`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const [reply] = replies();
    expect(reply).toMatchObject({ requestId: 'r2', ok: false, error: { code: 'failed' } });
    if (reply && !reply.ok) {
      expect(reply.error.message).toContain('Bad username or password');
      expect(reply.error.message).toContain(`kept the old one, which works until ${new Date(DEADLINE).toISOString()}`);
      expect(reply.error.message).not.toContain(NEW);
    }
    expect(events).toEqual([
      expect.objectContaining({
        type: 'agent.fault',
        severity: 'error',
        data: { code: 'credentials_rejected', restored: true },
      }),
    ]);
  });

  it('is refused without a passwordFile, and nothing changes', async () => {
    const { credentials, logins, replies, rotate } = setup({ store: null });
    await rotate('r3');
    expect(replies()[0]).toMatchObject({ requestId: 'r3', ok: false, error: { code: 'failed' } });
    expect(logins).toEqual([]);
    expect(credentials.password).toBe(OLD);
    expect(readFileSync(file, 'utf8')).toBe(`${OLD}\n`);
  });

  it('answers failed and keeps the old secret when the file cannot be written', async () => {
    const { credentials, logins, replies, rotate } = setup({
      store: fileCredentialStore(path.join(file, 'not-a-dir', 'secret')),
    });
    await rotate('r4');
    const [reply] = replies();
    expect(reply).toMatchObject({ ok: false, error: { code: 'failed' } });
    if (reply && !reply.ok) expect(reply.error.message).toMatch(/could not be stored in/);
    expect(logins).toEqual([]);
    expect(credentials.password).toBe(OLD);
  });

  it('takes a repeated delivery of the secret it holds without reconnecting', async () => {
    const { logins, replies, rotate } = setup();
    await rotate('r5');
    await rotate('r6');
    expect(logins).toEqual([NEW]);
    expect(replies().map((reply) => (reply.ok ? reply.data : null))).toEqual([
      { reconnected: true, unchanged: false },
      { reconnected: false, unchanged: true },
    ]);
  });

  it('answers busy to a second rotation while the first one reconnects', async () => {
    let release = () => {};
    const hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { replies, rotate } = setup({ hold });
    const first = rotate('r7');
    await new Promise((resolve) => setImmediate(resolve));
    await rotate('r8', 'other-secret-0123456789abcdefgh');
    release();
    await first;
    const answers = replies();
    expect(answers.find((reply) => reply.requestId === 'r8')).toMatchObject({ ok: false, error: { code: 'busy' } });
    expect(answers.find((reply) => reply.requestId === 'r7')).toMatchObject({ ok: true });
    expect(readFileSync(file, 'utf8')).toBe(`${NEW}\n`);
  });

  it('refuses a secret shorter than 16 characters as invalid args', async () => {
    const { logins, replies, rotate } = setup();
    await rotate('r9', 'short');
    expect(replies()[0]).toMatchObject({ ok: false, error: { code: 'invalid_args' } });
    expect(logins).toEqual([]);
    expect(readFileSync(file, 'utf8')).toBe(`${OLD}\n`);
  });
});
