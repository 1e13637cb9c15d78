import { Writable } from 'node:stream';
import { topicFor, unwrap } from '@edgeloop/protocol';
import mqtt, { type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestControlPlane, type TestControlPlane } from './harness.ts';
import { closedByServer, connectPacket, fixedHeader, openSocket, publishStart, writeZeros } from './mqtt-raw.ts';

/*
 * The MQTT front of a real control plane (real aedes, real sockets on 127.0.0.1): sizes judged on
 * the fixed header, the CONNECT deadline, the pending cap, auth-failing and client-id-flapping.
 * What the server read before it closed a socket comes from its own debug log line (bytesRead).
 */

type Refusal = { cause: string; detail: string; bytesRead: number };

const refusals: Refusal[] = [];
const logSink = new Writable({
  write(chunk: Buffer, _encoding, done) {
    for (const line of chunk.toString().split('\n')) {
      if (!line.includes('mqtt socket refused')) continue;
      refusals.push(JSON.parse(line) as Refusal);
    }
    done();
  },
});

let t: TestControlPlane;
let port: number;

beforeAll(async () => {
  t = await startTestControlPlane(
    {
      mqtt: { connectDeadlineMs: 400, maxPendingConnections: 6, maxConnectBytes: 4096 },
      health: { sweepIntervalMs: 100 },
    },
    { logger: pino({ level: 'debug' }, logSink) },
  );
  port = t.started.mqttPort;
});

afterAll(async () => {
  await t.stop();
});

async function rejected(cause: string): Promise<number> {
  const text = await unwrap(t.client.metrics());
  const line = text.split('\n').find((l) => l.startsWith(`edgeloop_mqtt_rejected_total{cause="${cause}"} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

async function reasonsOf(id: string): Promise<{ health: string; healthReasons: string[] }> {
  return (await unwrap(t.client.devices.get(id))).device;
}

describe('packet sizes, judged on the fixed header', () => {
  it('closes a socket announcing a 256 MB CONNECT after reading at most one chunk of it', async () => {
    const before = await rejected('connect_too_large');
    const socket = await openSocket(port);
    const closed = closedByServer(socket);
    socket.write(fixedHeader(0x10, 256 * 1024 * 1024 - 1));
    const written = await writeZeros(socket, 32 * 1024 * 1024);
    const answer = await closed;
    expect(answer).toHaveLength(0); // no CONNACK: the broker never saw a packet
    expect(await rejected('connect_too_large')).toBe(before + 1);
    const refusal = refusals.findLast((r) => r.cause === 'connect_too_large')!;
    expect(refusal.detail).toContain('over the limit of 4096');
    expect(refusal.bytesRead).toBeLessThan(1024 * 1024);
    expect(written).toBeLessThan(32 * 1024 * 1024);
  });

  it('closes a logged-in device announcing a 100 MB PUBLISH before 1 MB is read, and keeps its neighbours', async () => {
    const enrolled = await t.enroll('big-publisher');
    const neighbour = await t.device('quiet-neighbour');
    const before = await rejected('packet_too_large');
    const socket = await openSocket(port);
    const closed = closedByServer(socket);
    const connack = new Promise<Buffer>((resolve) => socket.once('data', resolve));
    socket.write(connectPacket('big-publisher', enrolled.credentials.password));
    expect([...(await connack)]).toEqual([0x20, 2, 0, 0]);
    const length = 100 * 1024 * 1024;
    socket.write(publishStart(topicFor('big-publisher', 'telemetry'), length));
    await writeZeros(socket, 16 * 1024 * 1024);
    await closed;
    expect(await rejected('packet_too_large')).toBe(before + 1);
    const refusal = refusals.findLast((r) => r.cause === 'packet_too_large')!;
    expect(refusal.bytesRead).toBeLessThan(1024 * 1024);
    expect(refusal.detail).toContain(`announces ${length}`);
    expect(neighbour.client.connected).toBe(true);
    await neighbour.client.publishAsync(topicFor('quiet-neighbour', 'events'), 'still served', { qos: 1 });
  });

  it('takes a CONNECT with a will under the pre-login limit, and closes one over it', async () => {
    const enrolled = await t.enroll('will-sizes');
    const status = topicFor('will-sizes', 'status');
    const fits = await openSocket(port);
    const fitsClosed = closedByServer(fits);
    const fitsAnswer = new Promise<Buffer>((resolve) => fits.once('data', resolve));
    fits.write(
      connectPacket('will-sizes', enrolled.credentials.password, { topic: status, payload: Buffer.alloc(3000) }),
    );
    expect([...(await fitsAnswer)]).toEqual([0x20, 2, 0, 0]);
    fits.end(mqttPacket.generate({ cmd: 'disconnect' }));
    await fitsClosed;

    const over = await openSocket(port);
    const overClosed = closedByServer(over);
    over.write(
      connectPacket('will-sizes', enrolled.credentials.password, { topic: status, payload: Buffer.alloc(5000) }),
    );
    expect(await overClosed).toHaveLength(0);
  });

  it('closes a socket whose first packet is not a CONNECT', async () => {
    const before = await rejected('malformed');
    const socket = await openSocket(port);
    const closed = closedByServer(socket);
    socket.write(mqttPacket.generate({ cmd: 'pingreq' }));
    await closed;
    expect(await rejected('malformed')).toBe(before + 1);
  });
});

describe('sockets that do not log in', () => {
  it('closes a silent socket and a CONNECT sent too slowly at the deadline', async () => {
    const before = await rejected('connect_deadline');
    const silent = await openSocket(port);
    const slow = await openSocket(port);
    const started = Date.now();
    const closed = Promise.all([closedByServer(silent), closedByServer(slow)]);
    const packet = connectPacket('slow-loris', 'x'.repeat(43));
    let at = 0;
    const drip = setInterval(() => {
      if (at < packet.length && !slow.destroyed) slow.write(packet.subarray(at, ++at));
    }, 50);
    await closed;
    clearInterval(drip);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(350);
    expect(elapsed).toBeLessThan(5_000);
    expect(await rejected('connect_deadline')).toBe(before + 2);
  });

  it('refuses sockets past the pending cap at accept, and serves again once they are gone', async () => {
    const enrolled = await t.enroll('after-the-crowd');
    const before = await rejected('max_pending');
    const crowd = await Promise.all(Array.from({ length: 6 }, () => openSocket(port)));
    const crowdClosed = Promise.all(crowd.map(closedByServer));
    const extra = await openSocket(port);
    await closedByServer(extra);
    expect(await rejected('max_pending')).toBe(before + 1);
    await crowdClosed; // the deadline
    const client = await t.connect('after-the-crowd', enrolled.credentials.password);
    expect(client.connected).toBe(true);
    await client.endAsync();
  });
});

describe('device issues as health reasons', () => {
  it('shows auth-failing on a device whose credential keeps failing, and clears it at its next login', async () => {
    const enrolled = await t.enroll('stale-secret');
    for (let i = 0; i < 3; i++) {
      await expect(t.connect('stale-secret', 'x'.repeat(43))).rejects.toMatchObject({ code: 4 });
    }
    await eventually(async () => (await reasonsOf('stale-secret')).healthReasons.includes('auth-failing'));
    expect((await reasonsOf('stale-secret')).health).toBe('unknown');
    // Failures for ids nobody enrolled leave nothing behind.
    const tracked = t.cp.internals.deviceIssues.size;
    for (let i = 0; i < 20; i++) {
      await expect(t.connect(`nobody-${i}`, 'x'.repeat(43))).rejects.toMatchObject({ code: 4 });
    }
    expect(t.cp.internals.deviceIssues.size).toBe(tracked);
    const client = await t.connect('stale-secret', enrolled.credentials.password);
    await eventually(async () => !(await reasonsOf('stale-secret')).healthReasons.includes('auth-failing'));
    await client.endAsync();
  });

  it('stops two processes fighting over one id: client-id-flapping, and the takeovers stop', async () => {
    const enrolled = await t.enroll('twin');
    const options = {
      clientId: 'twin',
      username: 'twin',
      password: enrolled.credentials.password,
      protocolVersion: 4 as const,
      reconnectPeriod: 100,
      connectTimeout: 2_000,
    };
    const connects = { a: 0, b: 0 };
    const twins: MqttClient[] = [];
    for (const name of ['a', 'b'] as const) {
      const client = mqtt.connect(t.started.mqttUrl, options);
      client.on('connect', () => connects[name]++);
      client.on('error', () => undefined);
      twins.push(client);
    }
    try {
      await eventually(async () => (await reasonsOf('twin')).healthReasons.includes('client-id-flapping'), 10_000);
      const settled = connects.a + connects.b;
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      // About 15 attempts each in that time; none of them took the id over.
      expect(connects.a + connects.b - settled).toBeLessThanOrEqual(1);
      expect(twins.filter((client) => client.connected)).toHaveLength(1);
      expect(t.cp.internals.broker.isConnected('twin')).toBe(true);
    } finally {
      await Promise.all(twins.map((client) => client.endAsync(true)));
    }
  });
});
