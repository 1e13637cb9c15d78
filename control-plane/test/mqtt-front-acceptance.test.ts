import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as connectSocket, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type EnrollDeviceResponse, topicFor } from '@edgeloop/protocol';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './harness.ts';

/*
 * Issue 12's acceptance lines for the MQTT front, against `edgeloop serve` in a child process (so
 * the RSS measured is the control plane's alone) with its default limits:
 *  - four sockets that never log in, each announcing a 256 MB CONNECT and sending 120 MB, grow its
 *    RSS by at most 32 MiB, and it keeps serving; a logged-in device announcing a 100 MB PUBLISH
 *    is closed before 1 MB of it was read;
 *  - a storm of 2,000 connects from one address is rate-limited, and a device connecting from
 *    another address meanwhile gets in. How fast it gets in is measured in bench/mqtt-front.ts
 *    (no timed assertions in tests: this machine's load is not ours).
 * What the server read of a socket it closed comes from its debug log line (bytesRead).
 */

const MiB = 1024 * 1024;
const bin = fileURLToPath(new URL('../bin/edgeloop.js', import.meta.url));
const adminToken = `accept-admin-${randomBytes(12).toString('hex')}`;
let child: ChildProcess;
let dataDir: string;
let httpUrl: string;
let mqttPort: number;
const refusals: { cause: string; bytesRead: number }[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-front-'));
  child = spawn(process.execPath, [bin, 'serve', '--http-port', '0', '--mqtt-port', '0'], {
    env: {
      ...process.env,
      EDGELOOP_DATA_DIR: dataDir,
      EDGELOOP_HOST: '127.0.0.1',
      EDGELOOP_LOG_LEVEL: 'debug',
      EDGELOOP_ADMIN_TOKEN: adminToken,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let pendingLine = '';
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`edgeloop serve exited with ${code}`)));
    child.stdout!.on('data', (chunk: Buffer) => {
      const text = pendingLine + chunk.toString();
      const lines = text.split('\n');
      pendingLine = lines.pop() ?? '';
      for (const line of lines) {
        if (line.includes('mqtt socket refused')) refusals.push(JSON.parse(line) as (typeof refusals)[number]);
        else if (!line.startsWith('{')) stdout += `${line}\n`;
      }
      const http = /HTTP\s+(http:\/\/\S+)/.exec(stdout);
      const broker = /MQTT\s+mqtt:\/\/\S+:(\d+)/.exec(stdout);
      if (http && broker) {
        httpUrl = http[1]!;
        mqttPort = Number(broker[1]);
        resolve();
      }
    });
  });
}, 60_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function api(method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${httpUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function enroll(id: string): Promise<string> {
  const response = await api('POST', '/api/v1/devices', { id, labels: {} });
  expect(response.status).toBe(201);
  return ((await response.json()) as EnrollDeviceResponse).credentials.password;
}

async function metrics(): Promise<string> {
  return (await api('GET', '/metrics')).text();
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

function header(first: number, length: number): Buffer {
  const bytes = [first];
  let rest = length;
  do {
    let byte = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest > 0) byte |= 0x80;
    bytes.push(byte);
  } while (rest > 0);
  return Buffer.from(bytes);
}

function open(localAddress = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connectSocket({ port: mqttPort, host: '127.0.0.1', localAddress }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Writes up to `total` bytes of zeros while the socket takes them; resolves with what was written once it closed. */
async function sendUntilClosed(socket: Socket, total: number): Promise<number> {
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const piece = Buffer.alloc(64 * 1024);
  let written = 0;
  while (written < total && !socket.destroyed) {
    const more = socket.write(piece);
    written += piece.length;
    if (!more) await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), closed]);
  }
  await closed;
  return written;
}

async function connectDevice(id: string, password: string, localAddress?: string, timeoutMs = 5_000) {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
    clientId: id,
    username: id,
    password,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: timeoutMs,
    ...(localAddress ? { localAddress } : {}),
  } as mqtt.IClientOptions);
}

describe('the MQTT front of edgeloop serve, bounded before auth', () => {
  it('holds RSS within 32 MiB against four 256 MB CONNECTs of 120 MB each, and closes a 100 MB PUBLISH before 1 MB', async () => {
    const password = await enroll('front-device');
    // Warm: one login and publish, so the code paths and pools are allocated before the baseline.
    const warm = await connectDevice('front-device', password);
    await warm.publishAsync(topicFor('front-device', 'events'), 'warm', { qos: 1 });
    await warm.endAsync();
    const baseline = metric(await metrics(), 'process_resident_memory_bytes');
    expect(baseline).toBeGreaterThan(0);

    const attackers = await Promise.all([0, 1, 2, 3].map(() => open()));
    const written = await Promise.all(
      attackers.map((socket) => {
        socket.write(header(0x10, 256 * MiB - 1));
        return sendUntilClosed(socket, 120 * MiB);
      }),
    );
    const after = metric(await metrics(), 'process_resident_memory_bytes');
    expect(after - baseline, `RSS ${baseline} -> ${after}`).toBeLessThanOrEqual(32 * MiB);
    // Closed long before 120 MB: what the sender got into the socket buffers, nowhere near it.
    for (const bytes of written) expect(bytes).toBeLessThan(120 * MiB);
    // The log lines come through a pipe, after the closes.
    const connectRefusals = await eventually(() => {
      const found = refusals.filter((r) => r.cause === 'connect_too_large');
      return found.length >= 4 ? found : null;
    });
    expect(connectRefusals).toHaveLength(4);
    for (const refusal of connectRefusals ?? []) expect(refusal.bytesRead).toBeLessThan(MiB);

    // A logged-in device announcing a 100 MB PUBLISH.
    const socket = await open();
    const connack = new Promise<Buffer>((resolve) => socket.once('data', resolve));
    socket.write(
      mqttPacket.generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        clientId: 'front-device',
        keepalive: 30,
        username: 'front-device',
        password: Buffer.from(password),
      }),
    );
    expect([...(await connack)]).toEqual([0x20, 2, 0, 0]);
    const topic = Buffer.from(topicFor('front-device', 'telemetry'));
    socket.write(Buffer.concat([header(0x32, 100 * MiB), Buffer.from([0, topic.length]), topic, Buffer.from([0, 1])]));
    await sendUntilClosed(socket, 100 * MiB);
    const publishRefusal = await eventually(() => refusals.find((r) => r.cause === 'packet_too_large'));
    expect(publishRefusal?.bytesRead).toBeLessThan(MiB);

    // Still serving: HTTP and a device login.
    expect((await fetch(`${httpUrl}/healthz`)).status).toBe(200);
    const again = await connectDevice('front-device', password);
    await again.endAsync();
  }, 30_000);

  it('rate-limits 2,000 connects from one address while a device from another connects', async () => {
    const target = 'storm-target';
    await enroll(target);
    const password = await enroll('legit-device');
    const badConnect = mqttPacket.generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: target,
      keepalive: 30,
      username: target,
      password: Buffer.from('x'.repeat(43)),
    });
    const outcomes = { answered: 0, refused: 0 };
    const attempts: Promise<void>[] = [];
    const attempt = () =>
      new Promise<void>((resolve) => {
        const socket = connectSocket({ port: mqttPort, host: '127.0.0.1', localAddress: '127.0.0.2' });
        let answered = false;
        socket.once('connect', () => socket.write(badConnect));
        socket.on('data', () => {
          answered = true;
        });
        socket.on('error', () => undefined);
        socket.once('close', () => {
          if (answered) outcomes.answered++;
          else outcomes.refused++;
          resolve();
        });
      });
    // 2,000 connects in 5 s (on a quiet machine): twice the rate of the acceptance line.
    const stormStarted = Date.now();
    const storm = new Promise<void>((resolve) => {
      let sent = 0;
      const timer = setInterval(() => {
        for (let i = 0; i < 40 && sent < 2_000; i++, sent++) attempts.push(attempt());
        if (sent >= 2_000) {
          clearInterval(timer);
          resolve();
        }
      }, 100);
    });
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const device = await connectDevice('legit-device', password, undefined, 15_000);
    const stillStorming = outcomes.answered + outcomes.refused < 2_000;
    await storm;
    await Promise.all(attempts);
    const stormS = (Date.now() - stormStarted) / 1000;
    expect(device.connected).toBe(true);
    await device.endAsync();

    expect(stillStorming, 'the device connected while the storm went on').toBe(true);
    // Default budget: a burst of 200, then 20 a second: about 300 in 5 s get an answer (CONNACK 4).
    expect(outcomes.answered + outcomes.refused).toBe(2_000);
    expect(outcomes.answered).toBeLessThanOrEqual(200 + 20 * stormS + 10);
    expect(outcomes.refused).toBeGreaterThanOrEqual(1_000);
    const text = await metrics();
    expect(metric(text, 'edgeloop_mqtt_rejected_total{cause="rate_limited"}')).toBe(outcomes.refused);
    // The device whose credential was guessed at shows it.
    const detail = (await (await api('GET', `/api/v1/devices/${target}`)).json()) as {
      device: { healthReasons: string[] };
    };
    expect(detail.device.healthReasons).toContain('auth-failing');
  }, 30_000);
});
