import net from 'node:net';
import { Duplex } from 'node:stream';
import { type Command, type Desired, topicFor } from '@edgeloop/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { clientOverStream, createLink, type Link, type LinkDeps } from '../src/link.ts';
import { createMemoryOutbox } from '../src/outbox.ts';
import { createPublisher } from '../src/publisher.ts';
import { createSequencer } from '../src/sequencer.ts';
import { eventually, type Observer, publishAs, startBroker, startObserver, type TestBroker } from './support/broker.ts';

const DEVICE = 'cam-link-01';
const PASSWORD = 'device-secret';
const credentials = { [DEVICE]: PASSWORD };
const statusTopic = topicFor(DEVICE, 'status');

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function broker(options: Omit<Parameters<typeof startBroker>[0], 'credentials'> = {}): Promise<TestBroker> {
  const started = await startBroker({ credentials, ...options });
  cleanups.push(() => started.close());
  return started;
}

async function observer(url: string, suffix = '1'): Promise<Observer> {
  const started = await startObserver(url, [`fleet/v1/devices/${DEVICE}/+`], suffix);
  cleanups.push(() => started.close());
  return started;
}

type Device = ReturnType<typeof device>;

/** A TCP connection to the broker that a test can turn into a black hole. */
function faultyConnection(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  let blackholed = false;
  const stream = new Duplex({
    write(chunk, _encoding, callback) {
      if (blackholed) return callback();
      socket.write(chunk, () => callback());
    },
    read() {},
    final(callback) {
      socket.end();
      callback();
    },
    destroy(error, callback) {
      socket.destroy();
      callback(error);
    },
  });
  socket.on('data', (data) => {
    if (!blackholed) stream.push(data);
  });
  socket.on('close', () => stream.destroy());
  socket.on('error', (error) => stream.destroy(error));
  return {
    stream,
    blackhole() {
      blackholed = true;
    },
  };
}

type DeviceOptions = Partial<LinkDeps> & { password?: string; maxInflight?: number; keepaliveS?: number };

function device(url: string, options: DeviceOptions = {}) {
  const { password, maxInflight, keepaliveS, ...overrides } = options;
  const sequencer = createSequencer({ clock: { now: () => Date.now() } });
  const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
  const holder: { link?: Link } = {};
  const publisher = createPublisher({ sequencer, outbox, afterAppend: () => holder.link?.flush() });
  const desired: Desired[] = [];
  const commands: Command[] = [];
  const invalidCommands: string[] = [];
  const connections: number[] = [];
  const link = createLink({
    deviceId: DEVICE,
    bootId: sequencer.bootId,
    mqtt: {
      url,
      username: DEVICE,
      password: password ?? PASSWORD,
      keepaliveS: keepaliveS ?? 5,
      connectTimeoutMs: 2000,
      reconnect: { initialMs: 50, maxMs: 400, jitter: 0.2, stableMs: 60_000 },
      maxInflight: maxInflight ?? 32,
    },
    outbox,
    publisher,
    birth: () => ({ agentVersion: '9.9.9', telemetryIntervalS: 10 }),
    onConnected: (connection) => connections.push(connection),
    onDesired: (message) => {
      desired.push(message);
    },
    onCommand: (command) => {
      commands.push(command);
    },
    onInvalidCommand: (requestId) => invalidCommands.push(requestId),
    ...overrides,
  });
  holder.link = link;
  cleanups.push(() => link.stop({ graceful: false, timeoutMs: 500 }));
  const event = (n: number) => publisher.publish('events', { type: 'test.event', severity: 'info', data: { n } });
  return { sequencer, outbox, publisher, link, desired, commands, invalidCommands, connections, event };
}

function statuses(watcher: Observer) {
  return watcher.json(statusTopic);
}

async function connected(subject: Device): Promise<void> {
  await eventually(() => subject.link.state === 'connected', 10_000, 'link connected');
}

describe('MQTT link against a real aedes broker', () => {
  it('publishes a retained birth after connecting', async () => {
    const server = await broker();
    const subject = device(server.url);
    const watcher = await observer(server.url);
    subject.link.start();
    await watcher.waitFor(() => statuses(watcher).length > 0, 10_000, 'birth');
    expect(statuses(watcher)[0]).toMatchObject({
      state: 'online',
      reason: 'birth',
      agentVersion: '9.9.9',
      keepaliveS: 5,
      telemetryIntervalS: 10,
      bootId: subject.sequencer.bootId,
      seq: 1,
    });
    await eventually(() => subject.outbox.stats().pending === 0, 5000, 'birth acked');
    // A subscriber that arrives later gets the birth as the retained status.
    const late = await observer(server.url, 'late');
    await late.waitFor(() => late.messages.some((m) => m.topic === statusTopic), 5000, 'retained birth');
    const retained = late.messages.find((m) => m.topic === statusTopic)!;
    expect(retained.retain).toBe(true);
    expect(JSON.parse(retained.payload)).toMatchObject({ state: 'online', seq: 1 });
    expect(subject.link.stats()).toMatchObject({ connects: 1, sent: 1, acked: 1, inflight: 0 });
  });

  it('leaves a will that the broker publishes when the socket dies without DISCONNECT, then comes back', async () => {
    const server = await broker();
    const subject = device(server.url);
    const watcher = await observer(server.url);
    subject.link.start();
    await watcher.waitFor(() => statuses(watcher).length === 1, 10_000, 'birth');
    subject.link.dropConnection();
    await watcher.waitFor(() => statuses(watcher).length >= 3, 10_000, 'will and second birth');
    const [birth, will, rebirth] = statuses(watcher);
    expect(birth).toMatchObject({ state: 'online', seq: 1, session: 1 });
    expect(will).toEqual({
      state: 'offline',
      reason: 'connection-lost',
      session: 1,
      seq: 0,
      bootId: subject.sequencer.bootId,
      msgId: `${subject.sequencer.bootId}-will-1`,
      ts: expect.any(Number),
    });
    expect(rebirth).toMatchObject({ state: 'online', reason: 'birth', seq: 2, session: 2 });
    expect(subject.connections).toEqual([1, 2]);
    expect(subject.link.stats()).toMatchObject({ connects: 2, disconnects: 1 });
  });

  it('sends no will on a graceful stop', async () => {
    const server = await broker();
    const subject = device(server.url);
    const watcher = await observer(server.url);
    subject.link.start();
    await watcher.waitFor(() => statuses(watcher).length === 1, 10_000, 'birth');
    await subject.link.stop({ graceful: true });
    expect(subject.link.state).toBe('stopped');
    // Give a will time to arrive: a broker publishes it as soon as it sees the socket close.
    const probe = subject.sequencer.next();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(statuses(watcher).filter((status) => status.state === 'offline')).toEqual([]);
    expect(probe.seq).toBe(2);
  });

  it('resubscribes after the broker restarts and receives desired and commands again', async () => {
    const first = await broker();
    const subject = device(first.url);
    subject.link.start();
    await connected(subject);
    const port = first.port;
    await first.close();
    await eventually(() => subject.link.state !== 'connected', 5000, 'link notices the broker is gone');

    const second = await broker({ port });
    const watcher = await observer(second.url);
    await eventually(() => subject.connections.length === 2, 10_000, 'reconnect');
    await eventually(() => subject.link.stats().subscribeFailures === 0 && subject.outbox.stats().pending === 0, 5000);
    await publishAs(watcher, topicFor(DEVICE, 'desired'), { version: 4, issuedAt: Date.now() }, { retain: true });
    await publishAs(watcher, topicFor(DEVICE, 'cmd'), { requestId: 'req-1', name: 'ping', args: {} });
    await eventually(() => subject.desired.length === 1 && subject.commands.length === 1, 5000, 'inbound messages');
    expect(subject.desired[0]).toMatchObject({ version: 4 });
    expect(subject.commands[0]).toMatchObject({ requestId: 'req-1', name: 'ping' });
  });

  it('delivers everything appended while the broker was down, exactly once per msgId, after it returns', async () => {
    const first = await broker();
    const subject = device(first.url);
    subject.link.start();
    await connected(subject);
    await eventually(() => subject.outbox.stats().pending === 0, 5000, 'birth acked');
    const port = first.port;
    await first.close();
    await eventually(() => subject.link.state !== 'connected', 5000, 'link down');

    const appended: string[] = [];
    for (let n = 0; n < 50; n += 1) {
      const result = subject.event(n);
      if (result.ok) appended.push(result.value.msgId);
    }
    expect(appended).toHaveLength(50);
    expect(subject.outbox.stats().pending).toBe(50);

    // The device is let in only once the observer listens, so nothing is published unseen.
    let admit: () => void = () => {};
    const admitted = new Promise<void>((resolve) => {
      admit = resolve;
    });
    const second = await broker({ port, admitDevices: admitted });
    const watcher = await observer(second.url);
    admit();
    const eventsTopic = topicFor(DEVICE, 'events');
    await watcher.waitFor(() => watcher.json(eventsTopic).length >= 50, 15_000, '50 events');
    await eventually(() => subject.outbox.stats().pending === 0, 5000, 'outbox drained');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const seen = watcher.json(eventsTopic).map((event) => event.msgId as string);
    expect(seen.sort()).toEqual([...appended].sort());
    expect(new Set(seen).size).toBe(seen.length);
    const seqs = watcher.json(eventsTopic).map((event) => event.seq as number);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  });

  it('keeps at most maxInflight messages unacknowledged', async () => {
    let release: () => void = () => {};
    let held = true;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const server = await broker({ beforeDevicePublish: () => (held ? gate : Promise.resolve()) });
    const subject = device(server.url, { maxInflight: 4 });
    for (let n = 0; n < 20; n += 1) subject.event(n);
    subject.link.start();
    await eventually(() => subject.link.stats().inflight === 4, 5000, 'four in flight');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(subject.link.stats().inflight).toBe(4);
    expect(subject.outbox.stats()).toMatchObject({ inflight: 4, pending: 21 });
    held = false;
    release();
    await eventually(() => subject.outbox.stats().pending === 0, 5000, 'all acked');
    expect(subject.link.stats()).toMatchObject({ sent: 21, acked: 21, inflight: 0 });
  });

  it('sends in-flight messages again after the connection drops before their PUBACK', async () => {
    let release: () => void = () => {};
    let held = true;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const server = await broker({ beforeDevicePublish: () => (held ? gate : Promise.resolve()) });
    const watcher = await observer(server.url);
    const subject = device(server.url, { maxInflight: 8 });
    const ids = Array.from({ length: 5 }, (_, n) => subject.event(n)).map((result) =>
      result.ok ? result.value.msgId : '',
    );
    subject.link.start();
    await eventually(() => subject.link.stats().inflight === 6, 5000, 'in flight');
    held = false;
    subject.link.dropConnection();
    await eventually(() => subject.connections.length === 2, 10_000, 'reconnect');
    await eventually(() => subject.outbox.stats().pending === 0, 5000, 'resent and acked');
    release();
    const eventsTopic = topicFor(DEVICE, 'events');
    await watcher.waitFor(() => ids.every((id) => watcher.json(eventsTopic).some((e) => e.msgId === id)), 5000, 'all');
    expect(subject.link.stats().sent).toBeGreaterThanOrEqual(12);
  });

  it('counts invalid inbound messages and answers a malformed command that has a requestId', async () => {
    const server = await broker();
    const watcher = await observer(server.url);
    const subject = device(server.url);
    subject.link.start();
    await connected(subject);
    await eventually(() => subject.outbox.stats().pending === 0, 5000);
    await publishAs(watcher, topicFor(DEVICE, 'desired'), 'not json at all');
    await publishAs(watcher, topicFor(DEVICE, 'desired'), { version: 'seven' });
    await publishAs(watcher, topicFor(DEVICE, 'cmd'), { requestId: 'req-bad', name: 'Bad Name' });
    await publishAs(watcher, topicFor(DEVICE, 'cmd'), { nothing: true });
    await publishAs(watcher, topicFor(DEVICE, 'cmd'), { requestId: 'req-ok', name: 'ping' });
    await eventually(() => subject.commands.length === 1, 5000, 'valid command');
    expect(subject.link.stats()).toMatchObject({ invalidInbound: 4, inboundCommands: 1, inboundDesired: 0 });
    expect(subject.invalidCommands).toEqual(['req-bad']);
    expect(subject.link.state).toBe('connected');
  });

  it('keeps retrying with backoff when the broker refuses its password', async () => {
    const server = await broker();
    const subject = device(server.url, { password: 'wrong' });
    subject.link.start();
    await eventually(() => subject.link.stats().connectFailures >= 3, 10_000, 'several refusals');
    const stats = subject.link.stats();
    expect(stats.connects).toBe(0);
    expect(stats.authFailures).toBeGreaterThanOrEqual(3);
    expect(stats.lastError).toMatch(/Bad username or password|Not authorized/i);
    expect(['backoff', 'connecting']).toContain(subject.link.state);
  });

  it('notices a socket that silently stops passing bytes through its keepalive and reconnects', async () => {
    const server = await broker();
    const connections: Array<ReturnType<typeof faultyConnection>> = [];
    const subject = device(server.url, {
      keepaliveS: 1,
      createClient: clientOverStream(() => {
        const connection = faultyConnection(server.port);
        connections.push(connection);
        return connection.stream;
      }),
    });
    subject.link.start();
    await connected(subject);
    // Blackhole: the socket stays open, but nothing passes in either direction any more.
    connections[0]!.blackhole();
    await eventually(() => subject.link.stats().disconnects === 1, 6000, 'keepalive timeout');
    await eventually(() => subject.link.stats().connects === 2, 5000, 'reconnected');
    expect(connections.length).toBeGreaterThanOrEqual(2);
    expect(subject.connections).toEqual([1, 2]);
  });
});
