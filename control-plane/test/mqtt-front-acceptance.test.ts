import { topicFor } from '@edgeloop/protocol';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './harness.ts';
import {
  attemptConnect,
  closedByServer,
  connectPacket,
  fixedHeader,
  openSocket,
  publishStart,
  type ServeChild,
  startServeChild,
  writeZeros,
} from './mqtt-raw.ts';

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
let serve: ServeChild;
let mqttPort: number;

beforeAll(async () => {
  serve = await startServeChild();
  mqttPort = serve.mqttPort;
}, 60_000);

afterAll(async () => {
  await serve?.stop();
});

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
    const password = await serve.enroll('front-device');
    // Warm: one login and publish, so the code paths and pools are allocated before the baseline.
    const warm = await connectDevice('front-device', password);
    await warm.publishAsync(topicFor('front-device', 'events'), 'warm', { qos: 1 });
    await warm.endAsync();
    const baseline = await serve.metric('process_resident_memory_bytes');
    expect(baseline).toBeGreaterThan(0);

    const attackers = await Promise.all([0, 1, 2, 3].map(() => openSocket(mqttPort)));
    const written = await Promise.all(
      attackers.map(async (socket) => {
        const closed = closedByServer(socket);
        socket.write(fixedHeader(0x10, 256 * MiB - 1));
        const bytes = await writeZeros(socket, 120 * MiB);
        await closed;
        return bytes;
      }),
    );
    const after = await serve.metric('process_resident_memory_bytes');
    expect(after - baseline, `RSS ${baseline} -> ${after}`).toBeLessThanOrEqual(32 * MiB);
    // Closed long before 120 MB: what the sender got into the socket buffers, nowhere near it.
    for (const bytes of written) expect(bytes).toBeLessThan(120 * MiB);
    // The log lines come through a pipe, after the closes.
    const connectRefusals = await eventually(() => {
      const found = serve.refusals.filter((r) => r.cause === 'connect_too_large');
      return found.length >= 4 ? found : null;
    });
    expect(connectRefusals).toHaveLength(4);
    for (const refusal of connectRefusals ?? []) expect(refusal.bytesRead).toBeLessThan(MiB);

    // A logged-in device announcing a 100 MB PUBLISH.
    const socket = await openSocket(mqttPort);
    const connack = new Promise<Buffer>((resolve) => socket.once('data', resolve));
    socket.write(connectPacket('front-device', password));
    expect([...(await connack)]).toEqual([0x20, 2, 0, 0]);
    const closed = closedByServer(socket);
    socket.write(publishStart(topicFor('front-device', 'telemetry'), 100 * MiB));
    await writeZeros(socket, 100 * MiB);
    await closed;
    const publishRefusal = await eventually(() => serve.refusals.find((r) => r.cause === 'packet_too_large'));
    expect(publishRefusal?.bytesRead).toBeLessThan(MiB);

    // Still serving: HTTP and a device login.
    expect((await fetch(`${serve.httpUrl}/healthz`)).status).toBe(200);
    const again = await connectDevice('front-device', password);
    await again.endAsync();
  }, 30_000);

  it('rate-limits 2,000 connects from one address while a device from another connects', async () => {
    const target = 'storm-target';
    await serve.enroll(target);
    const password = await serve.enroll('legit-device');
    const badConnect = connectPacket(target, 'x'.repeat(43));
    const outcomes = { answered: 0, refused: 0 };
    const attempts: Promise<void>[] = [];
    const attempt = () =>
      attemptConnect(mqttPort, '127.0.0.2', badConnect).then((answered) => {
        if (answered) outcomes.answered++;
        else outcomes.refused++;
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
    expect(await serve.metric('edgeloop_mqtt_rejected_total{cause="rate_limited"}')).toBe(outcomes.refused);
    // The device whose credential was guessed at shows it.
    const detail = (await (await serve.api('GET', `/api/v1/devices/${target}`)).json()) as {
      device: { healthReasons: string[] };
    };
    expect(detail.device.healthReasons).toContain('auth-failing');
  }, 30_000);
});
