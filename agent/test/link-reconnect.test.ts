import net from 'node:net';
import { decode, topicFor } from '@edgeloop/protocol';
import { Aedes } from 'aedes';
import { afterEach, describe, expect, it } from 'vitest';
import { createLink, type Link } from '../src/link.ts';
import { createMemoryOutbox } from '../src/outbox.ts';
import { createPublisher } from '../src/publisher.ts';
import { createSequencer } from '../src/sequencer.ts';
import { eventually } from './support/broker.ts';

/*
 * link.reconnect() (credential rotation) against a real aedes broker whose accepted passwords a
 * test changes while it runs, as the control plane's rotation does.
 */

const DEVICE = 'cam-rotate-01';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A broker that lets DEVICE in with any password in `accepted`, recording every login and status publish. */
async function startRotatingBroker(accepted: Set<string>) {
  const logins: { password: string; accepted: boolean }[] = [];
  const statuses: { state: string; reason: string; msgId: string }[] = [];
  const events: string[] = [];
  const broker = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      const secret = password?.toString() ?? '';
      const ok = client.id === DEVICE && username === DEVICE && accepted.has(secret);
      logins.push({ password: secret, accepted: ok });
      if (!ok) return done(Object.assign(new Error('bad credentials'), { returnCode: 4 }), false);
      done(null, true);
    },
  });
  broker.on('publish', (packet) => {
    if (packet.topic === topicFor(DEVICE, 'status')) {
      const decoded = decode('status', packet.payload as Buffer);
      if (decoded.ok) {
        statuses.push({ state: decoded.value.state, reason: decoded.value.reason, msgId: decoded.value.msgId });
      }
    } else if (packet.topic === topicFor(DEVICE, 'events')) {
      const decoded = decode('events', packet.payload as Buffer);
      if (decoded.ok) events.push(decoded.value.msgId);
    }
  });
  const server = net.createServer(broker.handle as (socket: net.Socket) => void);
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const url = `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await new Promise<void>((resolve) => broker.close(() => resolve()));
  });
  return { url, logins, statuses, events };
}

/** A link that reads its password from `holder` at every attempt, as the agent's does. */
function device(url: string, holder: { password: string }) {
  const sequencer = createSequencer({ clock: { now: () => Date.now() } });
  const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
  const box: { link?: Link } = {};
  const publisher = createPublisher({ sequencer, outbox, afterAppend: () => box.link?.flush() });
  const link = createLink({
    deviceId: DEVICE,
    bootId: sequencer.bootId,
    mqtt: {
      url,
      username: DEVICE,
      password: 'the-configured-one-is-not-read',
      keepaliveS: 5,
      connectTimeoutMs: 2000,
      reconnect: { initialMs: 50, maxMs: 200, jitter: 0.2, stableMs: 60_000 },
      maxInflight: 4,
    },
    outbox,
    publisher,
    readPassword: () => holder.password,
  });
  box.link = link;
  cleanups.push(() => link.stop({ graceful: false, timeoutMs: 500 }));
  return { link, outbox, publisher };
}

describe('link.reconnect', () => {
  it('ends the session without its will and logs in again with the password read anew', async () => {
    const accepted = new Set(['secret-a']);
    const broker = await startRotatingBroker(accepted);
    const holder = { password: 'secret-a' };
    const { link } = device(broker.url, holder);
    link.start();
    await eventually(() => link.state === 'connected', 10_000, 'first connect');
    accepted.add('secret-b');
    holder.password = 'secret-b';

    expect(await link.reconnect()).toEqual({ ok: true });
    expect(link.state).toBe('connected');
    expect(broker.logins).toEqual([
      { password: 'secret-a', accepted: true },
      { password: 'secret-b', accepted: true },
    ]);
    const births = () => new Set(broker.statuses.map((status) => status.msgId));
    await eventually(() => births().size >= 2, 5_000, 'second birth');
    // DISCONNECT first: the broker dropped the will, so nobody saw the device go offline. (A
    // birth in flight at the reconnect is sent again on the new session: at least once.)
    expect(births().size).toBe(2);
    expect(broker.statuses.every((status) => status.state === 'online' && status.reason === 'birth')).toBe(true);
    expect(link.stats()).toMatchObject({ connects: 2, disconnects: 1, connectFailures: 0 });
  });

  it('says why when the broker refuses the new password, and goes on reconnecting with the password of each attempt', async () => {
    const accepted = new Set(['secret-a']);
    const broker = await startRotatingBroker(accepted);
    const holder = { password: 'secret-a' };
    const { link } = device(broker.url, holder);
    link.start();
    await eventually(() => link.state === 'connected', 10_000, 'first connect');
    holder.password = 'secret-b';

    const outcome = await link.reconnect();
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expect(outcome.error).toMatch(/Bad username or password|Not authorized/);
    expect(link.state).not.toBe('connected');
    // The caller puts the old secret back; the backoff's next attempt reads it.
    holder.password = 'secret-a';
    await eventually(() => link.state === 'connected', 10_000, 'back on the old secret');
    expect(broker.logins.slice(0, 2)).toEqual([
      { password: 'secret-a', accepted: true },
      { password: 'secret-b', accepted: false },
    ]);
    expect(broker.logins.at(-1)).toEqual({ password: 'secret-a', accepted: true });
    expect(link.stats().authFailures).toBeGreaterThanOrEqual(1);
  });

  it('sends what was in flight at the reconnect on the new session', async () => {
    const accepted = new Set(['secret-a', 'secret-b']);
    const broker = await startRotatingBroker(accepted);
    const holder = { password: 'secret-a' };
    const { link, outbox, publisher } = device(broker.url, holder);
    link.start();
    await eventually(() => link.state === 'connected', 10_000, 'first connect');
    const sent = Array.from({ length: 40 }, (_, n) => {
      const published = publisher.publish('events', { type: 'test.event', severity: 'info', data: { n } });
      if (!published.ok) throw new Error(published.error.message);
      return published.value.msgId;
    });
    holder.password = 'secret-b';
    expect(await link.reconnect()).toEqual({ ok: true });
    await eventually(() => outbox.pending === 0, 10_000, 'outbox drained');
    expect(new Set(broker.events)).toEqual(new Set(sent));
  });

  it('answers at once on a link that was never started or is stopped', async () => {
    const broker = await startRotatingBroker(new Set(['secret-a']));
    const { link } = device(broker.url, { password: 'secret-a' });
    expect(await link.reconnect()).toEqual({ ok: false, error: 'the link is idle' });
    link.start();
    await eventually(() => link.state === 'connected', 10_000, 'connect');
    await link.stop();
    expect(await link.reconnect()).toEqual({ ok: false, error: 'the link is stopped' });
    expect(broker.logins).toHaveLength(1);
  });

  it('settles a pending reconnect as superseded when another one begins', async () => {
    const broker = await startRotatingBroker(new Set(['secret-a']));
    const { link } = device(broker.url, { password: 'secret-a' });
    link.start();
    await eventually(() => link.state === 'connected', 10_000, 'connect');
    const first = link.reconnect();
    const second = link.reconnect();
    expect(await first).toEqual({ ok: false, error: 'superseded by another reconnect' });
    expect(await second).toEqual({ ok: true });
    expect(link.state).toBe('connected');
  });
});
