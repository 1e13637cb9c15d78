import net, { type AddressInfo } from 'node:net';
import { createLink, createMemoryOutbox, createPublisher, createSequencer, type Link } from '@edgeloop/agent';
import { type Desired, topicFor } from '@edgeloop/protocol';
import { Aedes } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { NetworkFaults } from '../src/net-fault.ts';
import { createSimMqtt, type SimMqtt } from '../src/sim-mqtt.ts';
import { eventually } from './support.ts';

/*
 * The simulated devices' MQTT client (sim-mqtt.ts) under the agent's own link, against a real
 * aedes broker on port 0: what link.ts relies on from mqtt.js, and the network faults.
 */

const SECRET = 'device-secret';
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startBroker() {
  const broker = await Aedes.createBroker({
    authenticate: (client, username, password, done) => {
      const ok = username === 'watcher' || (username === client.id && password?.toString() === SECRET);
      if (ok) done(null, true);
      else done(Object.assign(new Error('bad credentials'), { returnCode: 4 }) as never, false);
    },
  });
  const server = net.createServer(broker.handle);
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const port = (server.address() as AddressInfo).port;
  cleanups.push(async () => {
    await new Promise<void>((done) => broker.close(() => done()));
    await new Promise<void>((done) => server.close(() => done()));
  });
  return { broker, port };
}

/** A TCP hop that hands every chunk on one byte at a time (packets split at every boundary). */
async function byteByByteProxy(port: number): Promise<number> {
  const sockets = new Set<net.Socket>();
  const trickle = (from: net.Socket, to: net.Socket) => {
    from.on('data', (chunk: Buffer) => {
      for (let i = 0; i < chunk.length; i++) to.write(chunk.subarray(i, i + 1));
    });
    from.on('close', () => to.destroy());
    from.on('error', () => to.destroy());
  };
  const server = net.createServer((inbound) => {
    const outbound = net.connect({ port, host: '127.0.0.1', noDelay: true });
    inbound.setNoDelay(true);
    sockets.add(inbound).add(outbound);
    trickle(inbound, outbound);
    trickle(outbound, inbound);
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((done) => server.close(() => done()));
  });
  return (server.address() as AddressInfo).port;
}

async function watch(port: number): Promise<{ client: MqttClient; seen: { topic: string; body: unknown }[] }> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'watcher', username: 'watcher' });
  const seen: { topic: string; body: unknown }[] = [];
  client.on('message', (topic, payload) => seen.push({ topic, body: JSON.parse(payload.toString()) }));
  await client.subscribeAsync('fleet/v1/devices/#', { qos: 1 });
  cleanups.push(() => client.endAsync());
  return { client, seen };
}

function device(hub: SimMqtt, id: string, port: number, options: { password?: string; keepaliveS?: number } = {}) {
  const faults = new NetworkFaults('127.0.0.1', port);
  const sequencer = createSequencer({ clock: { now: () => Date.now() } });
  const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
  const holder: { link?: Link } = {};
  const publisher = createPublisher({ sequencer, outbox, afterAppend: () => holder.link?.flush() });
  const desired: Desired[] = [];
  const link = createLink({
    deviceId: id,
    bootId: sequencer.bootId,
    mqtt: {
      url: `mqtt://127.0.0.1:${port}`,
      username: id,
      password: options.password ?? SECRET,
      keepaliveS: options.keepaliveS ?? 30,
      connectTimeoutMs: 1000,
      reconnect: { initialMs: 50, maxMs: 300, jitter: 0.2 },
      maxInflight: 8,
    },
    outbox,
    publisher,
    onDesired: (message) => {
      desired.push(message);
    },
    createClient: hub.clientFactory(faults),
  });
  holder.link = link;
  cleanups.push(() => link.stop({ graceful: false, timeoutMs: 500 }));
  const event = (n: number) => publisher.publish('events', { type: 'test.event', severity: 'info', data: { n } });
  return { faults, link, outbox, sequencer, desired, event };
}

const statuses = (seen: { topic: string; body: unknown }[], id: string) =>
  seen
    .filter((message) => message.topic === topicFor(id, 'status'))
    .map((message) => message.body as { reason: string });

describe('the simulated MQTT client under the agent link', () => {
  it('connects, publishes until every message is acknowledged and reads desired state, with every packet split into single bytes', async () => {
    const { port } = await startBroker();
    const proxied = await byteByByteProxy(port);
    const { client: watcher, seen } = await watch(port);
    const hub = createSimMqtt();
    const devices = [device(hub, 'sim-a', proxied), device(hub, 'sim-b', proxied)];
    for (const subject of devices) subject.link.start();
    await eventually(() => devices.every((subject) => subject.link.state === 'connected'), 10_000, 'connected');
    for (let n = 0; n < 30; n++) for (const subject of devices) subject.event(n);
    await eventually(() => devices.every((subject) => subject.outbox.pending === 0), 10_000, 'all acknowledged');
    for (const subject of devices) expect(subject.link.stats().acked).toBe(31); // the birth and 30 events
    for (const id of ['sim-a', 'sim-b']) {
      await eventually(
        () => seen.filter((message) => message.topic === topicFor(id, 'events')).length === 30,
        10_000,
        `30 events of ${id}`,
      );
    }
    const desired = { version: 7, issuedAt: Date.now(), config: { note: 'x'.repeat(300) } };
    await watcher.publishAsync(topicFor('sim-b', 'desired'), JSON.stringify(desired), { qos: 1, retain: false });
    await eventually(() => devices[1]?.desired.length === 1, 10_000, 'desired state read');
    expect(devices[1]?.desired[0]?.version).toBe(7);
    expect(devices[0]?.desired).toEqual([]);
    expect(devices.map((subject) => subject.link.stats().invalidInbound)).toEqual([0, 0]);
  });

  it('counts a refused password as an authentication failure and keeps trying', async () => {
    const { port } = await startBroker();
    const subject = device(createSimMqtt(), 'sim-refused', port, { password: 'wrong' });
    subject.link.start();
    await eventually(() => subject.link.stats().authFailures >= 2, 10_000, 'two refusals');
    expect(subject.link.stats().connects).toBe(0);
    expect(subject.link.stats().lastError).toMatch(/Connection refused/);
  });

  it('behind a partition: the broker publishes the will only after its keepalive, the device times out and comes back after heal', async () => {
    const { port } = await startBroker();
    const { seen } = await watch(port);
    const hub = createSimMqtt({ tickMs: 50 });
    const subject = device(hub, 'sim-cut', port, { keepaliveS: 1 });
    subject.link.start();
    await eventually(() => subject.link.state === 'connected', 10_000, 'connected');
    const cutAt = Date.now();
    subject.faults.partition();
    await eventually(() => statuses(seen, 'sim-cut').some((s) => s.reason === 'connection-lost'), 10_000, 'will');
    // aedes waits 1.5 x keepalive: a will at once would mean the socket was closed, not cut.
    expect(Date.now() - cutAt).toBeGreaterThanOrEqual(1000);
    await eventually(() => subject.link.stats().disconnects === 1, 10_000, 'keepalive timeout on the device');
    expect(subject.link.stats().lastError).toBe('Keepalive timeout');
    // Attempts during the partition never connect: their connect timeout ends them.
    await eventually(() => subject.link.stats().connectFailures >= 1, 10_000, 'a timed-out attempt');
    subject.faults.heal();
    await eventually(() => subject.link.stats().connects === 2, 10_000, 'reconnected');
    await eventually(() => statuses(seen, 'sim-cut').length === 3, 10_000, 'the second birth');
    expect(statuses(seen, 'sim-cut').map((s) => s.reason)).toEqual(['birth', 'connection-lost', 'birth']);
  });

  it('a killed socket makes the broker publish the will at once; a graceful stop leaves none', async () => {
    const { port } = await startBroker();
    const { seen } = await watch(port);
    const hub = createSimMqtt();
    const killed = device(hub, 'sim-killed', port);
    const stopped = device(hub, 'sim-stopped', port);
    killed.link.start();
    stopped.link.start();
    await eventually(() => killed.link.state === 'connected' && stopped.link.state === 'connected', 10_000, 'up');
    killed.faults.killSockets();
    await stopped.link.stop({ graceful: true });
    await eventually(() => statuses(seen, 'sim-killed').some((s) => s.reason === 'connection-lost'), 5000, 'will');
    await eventually(() => killed.link.stats().connects === 2, 10_000, 'the killed one reconnects');
    await new Promise((done) => setTimeout(done, 300));
    expect(statuses(seen, 'sim-stopped').map((s) => s.reason)).toEqual(['birth']);
    expect(hub.live).toBe(1);
  });
});
