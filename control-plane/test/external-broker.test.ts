import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decode,
  encode,
  messageId,
  ReadyzResponse,
  ROTATE_CREDENTIALS_COMMAND,
  RotateCredentialsArgs,
  topicFor,
  unwrap,
} from '@edgeloop/protocol';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultReplicaId, topicMatches } from '../src/external-broker/external-broker.ts';
import { brokerEndpoint } from '../src/external-broker/open.ts';
import { closed, publishBirth, startOnDynsecMosquitto } from './external-broker-harness.ts';
import { eventually, newBootId, SYSTEM, startTestControlPlane, type TestControlPlane } from './harness.ts';
import { type DynsecMosquitto, mosquittoMissing } from './mosquitto-dynsec.ts';

/*
 * `edgeloop serve --broker-url` (issue 11 §3) against a real Mosquitto 2 with dynamic security of
 * this suite's own: the control plane provisions each device it enrolls there, ingests through a
 * shared subscription (PUBACK after the commit) and publishes desired state and commands; devices
 * are real mqtt.js clients with the credentials the HTTP API gave. Without the Debian packages the
 * suite is skipped with the reason, and under CI=true it fails instead.
 */

const missing = mosquittoMissing();
if (missing && process.env.CI === 'true') throw new Error(`external broker suite: ${missing}`);

describe('external broker helpers', () => {
  it('matches topic filters as MQTT does', () => {
    expect(topicMatches('fleet/v1/devices/+/reply', 'fleet/v1/devices/cam-1/reply')).toBe(true);
    expect(topicMatches('fleet/v1/devices/+/reply', 'fleet/v1/devices/cam-1/telemetry')).toBe(false);
    expect(topicMatches('fleet/v1/devices/+/reply', 'fleet/v1/devices/cam-1/reply/x')).toBe(false);
    expect(topicMatches('fleet/v1/#', 'fleet/v1/devices/cam-1/status')).toBe(true);
    expect(topicMatches('fleet/v1/#', 'fleet/v1')).toBe(true);
    expect(topicMatches('fleet/v1/#', 'fleet/v2/x')).toBe(false);
  });

  it('derives a replica id that is stable for one host and data dir and differs for another', () => {
    const id = defaultReplicaId('cp-host.example', '/var/lib/edgeloop');
    expect(id).toBe(defaultReplicaId('cp-host.example', '/var/lib/edgeloop'));
    expect(id).toMatch(/^edgeloop-cp-host-example-[0-9a-f]{10}$/);
    expect(defaultReplicaId('cp-host.example', '/var/lib/edgeloop-2')).not.toBe(id);
    expect(defaultReplicaId('other', '/var/lib/edgeloop')).not.toBe(id);
  });

  it('tells devices the endpoint of the broker URL, the port defaulting by scheme', () => {
    expect(brokerEndpoint('mqtt://broker.example')).toEqual({
      host: 'broker.example',
      port: 1883,
      url: 'mqtt://broker.example:1883',
    });
    expect(brokerEndpoint('mqtts://broker.example:9883')).toEqual({
      host: 'broker.example',
      port: 9883,
      url: 'mqtts://broker.example:9883',
    });
    expect(brokerEndpoint('mqtt://[::1]:1884')).toEqual({ host: '::1', port: 1884, url: 'mqtt://[::1]:1884' });
  });
});

describe.skipIf(missing !== null)('a control plane on an external Mosquitto (--broker-url)', () => {
  let broker: DynsecMosquitto;
  let t: TestControlPlane;
  const others: MqttClient[] = [];

  /** An mqtt.js connect that resolves with the client or the refusal, never retrying. */
  const tryConnect = (options: mqtt.IClientOptions) =>
    new Promise<{ client: MqttClient } | { error: Error & { code?: number } }>((resolve) => {
      const client = mqtt.connect(broker.url, { reconnectPeriod: 0, connectTimeout: 3_000, ...options });
      others.push(client);
      client.once('connect', () => resolve({ client }));
      client.once('error', (error) => {
        client.end(true);
        resolve({ error });
      });
      client.on('error', () => {});
    });

  beforeAll(async () => {
    ({ broker, t } = await startOnDynsecMosquitto('external-test-1'));
  }, 30_000);

  afterAll(async () => {
    for (const client of others) client.end(true);
    await t?.stop();
    await broker?.stop();
  });

  it('fails to start with a clear error when the broker refuses the control plane or is not there', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-ext-refused-'));
    try {
      await expect(
        startTestControlPlane({
          dataDir,
          brokerUrl: broker.url,
          brokerUsername: broker.admin.username,
          brokerPassword: 'not-the-password',
          replicaId: 'external-test-refused',
        }),
      ).rejects.toThrow(
        new RegExp(`^cannot connect to the broker at ${broker.url}: .*(Bad username or password|Not authorized)`),
      );
      await expect(
        startTestControlPlane({
          dataDir,
          brokerUrl: 'mqtt://127.0.0.1:1',
          brokerPassword: 'whatever-password',
          replicaId: 'external-test-absent',
        }),
      ).rejects.toMatchObject({ name: 'ExternalBrokerError', code: 'external_broker_unavailable' });
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('tells devices the external broker at enrollment and is ready once connected to it', async () => {
    expect(t.started.mqttUrl).toBe(broker.url);
    expect(t.started.mqttTlsUrl).toBeNull();
    const enrolled = await t.enroll('ext-enrolled');
    expect(enrolled.mqtt).toEqual({ host: '127.0.0.1', port: broker.port, url: broker.url });
    const ready = ReadyzResponse.parse(await (await t.raw('GET', '/readyz')).json());
    expect(ready.ok).toBe(true);
    expect(ready.checks.find((check) => check.name === 'mqtt')?.detail).toBe(
      `connected to the external broker ${broker.url}`,
    );
  });

  it('stores status and telemetry, delivers desired state retained and answers a command', async () => {
    const d = await t.device('ext-cam-1', { labels: { site: 'north' } });
    await d.send('status', { state: 'online', reason: 'birth', agentVersion: '0.3.0', keepaliveS: 30 });
    await d.send('telemetry', { intervalS: 10, system: SYSTEM });
    const detail = await eventually(async () => {
      const got = await unwrap(t.client.devices.get('ext-cam-1'));
      return got.device.status === 'online' && got.telemetry !== null ? got : null;
    });
    expect(detail?.device.agentVersion).toBe('0.3.0');
    expect(detail?.telemetry?.message.system.cpu.loadPct).toBe(SYSTEM.cpu.loadPct);
    expect(t.cp.internals.broker.isConnected('ext-cam-1')).toBe(true);

    const { desired } = await unwrap(t.client.devices.setDesired('ext-cam-1', { telemetryIntervalS: 7 }));
    // Subscribed after the publish: only a retained copy can reach it.
    const retained = new Promise<{ payload: Buffer; retain: boolean }>((resolve) => {
      d.client.on('message', (topic, payload, packet) => {
        if (topic === topicFor('ext-cam-1', 'desired')) resolve({ payload, retain: packet.retain });
      });
    });
    await d.client.subscribeAsync(topicFor('ext-cam-1', 'desired'), { qos: 1 });
    const delivered = await retained;
    expect(delivered.retain).toBe(true);
    expect(JSON.parse(delivered.payload.toString())).toEqual(desired);

    await d.answerCommands((command) => ({ ok: true, data: { echo: command.args } }));
    const answered = await unwrap(t.client.devices.command('ext-cam-1', { name: 'ping', args: { n: 3 } }));
    expect(answered.reply).toMatchObject({ ok: true, data: { echo: { n: 3 } } });
    await eventually(async () => (await t.store.messages.count('ext-cam-1', answered.reply.msgId)) === 1);
  });

  it('marks a device offline when the broker publishes its will', async () => {
    const enrolled = await t.enroll('ext-will-cam');
    const bootId = newBootId();
    const will = encode('status', {
      msgId: messageId(bootId, 1_000_000),
      bootId,
      seq: 1_000_000,
      ts: Date.now(),
      state: 'offline',
      reason: 'connection-lost',
    });
    const client = await t.connect('ext-will-cam', enrolled.credentials.password, {
      will: { topic: topicFor('ext-will-cam', 'status'), payload: Buffer.from(will), qos: 1, retain: true },
    });
    await publishBirth(client, 'ext-will-cam', bootId, { retain: true });
    await eventually(async () => (await unwrap(t.client.devices.get('ext-will-cam'))).device.status === 'online');
    // A dead connection (no DISCONNECT): Mosquitto publishes the will at once.
    client.stream.destroy();
    await eventually(async () => (await unwrap(t.client.devices.get('ext-will-cam'))).device.status === 'offline');
    expect(t.cp.internals.broker.isConnected('ext-will-cam')).toBe(false);
  });

  it('disconnects a revoked device at once, and it cannot log in again', async () => {
    const d = await t.device('ext-revoked');
    await d.send('status', { state: 'online', reason: 'birth' });
    const gone = closed(d.client);
    await unwrap(t.client.devices.revoke('ext-revoked'));
    await gone;
    const again = await tryConnect({ clientId: 'ext-revoked', username: 'ext-revoked', password: d.password });
    expect('error' in again && again.error.code).toBe(5);
    expect(t.cp.internals.ingest.knows('ext-revoked')).toBe(false);
  });

  it('hands a rotated secret to Mosquitto as it delivers it: the agent logs in with the new one, the old one is refused', async () => {
    const enrolled = await t.enroll('ext-rotate');
    const old = enrolled.credentials.password;
    const bootId = newBootId();
    let seq = 1;
    // What edgeloop-agent does with rotate-credentials: a new session with the new secret, then the answer on it.
    const login = async (password: string): Promise<MqttClient> => {
      const client = await t.connect('ext-rotate', password);
      client.on('message', (_topic, payload) => {
        const command = decode('cmd', payload);
        if (!command.ok || command.value.name !== ROTATE_CREDENTIALS_COMMAND) return;
        const args = RotateCredentialsArgs.parse(command.value.args);
        void (async () => {
          await client.endAsync(true);
          // As edgeloop-agent does: Mosquitto gets the new password only once the command is out,
          // so a refused first login is tried again, half a second apart.
          let next: MqttClient | null = null;
          for (let attempt = 0; next === null && attempt < 6; attempt++) {
            if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 500));
            next = await login(args.password).catch(() => null);
          }
          if (next === null) return;
          seq++;
          const reply = encode('reply', {
            msgId: messageId(bootId, seq),
            bootId,
            seq,
            ts: Date.now(),
            requestId: command.value.requestId,
            ok: true,
            data: { reconnected: true },
          });
          await next.publishAsync(topicFor('ext-rotate', 'reply'), reply, { qos: 1 });
        })().catch(() => undefined);
      });
      await client.subscribeAsync(topicFor('ext-rotate', 'cmd'), { qos: 1 });
      return client;
    };
    const first = await login(old);
    await publishBirth(first, 'ext-rotate', bootId);
    await eventually(() => t.cp.internals.broker.isConnected('ext-rotate'));
    const rotated = await unwrap(t.client.devices.rotateCredentials('ext-rotate'));
    expect(rotated.delivery).toEqual({ state: 'applied' });
    const withOld = await tryConnect({ clientId: 'ext-rotate', username: 'ext-rotate', password: old });
    expect('error' in withOld && withOld.error.code).toBe(5);
    const withNew = await tryConnect({ clientId: 'ext-rotate', username: 'ext-rotate', password: rotated.password });
    expect('client' in withNew).toBe(true);
  });
});
