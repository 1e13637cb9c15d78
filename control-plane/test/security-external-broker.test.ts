import { encode, messageId, topicFor, unwrap } from '@edgeloop/protocol';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closed, startOnDynsecMosquitto } from './external-broker-harness.ts';
import { eventually, newBootId, SYSTEM, type TestControlPlane } from './harness.ts';
import { type DynsecMosquitto, mosquittoMissing } from './mosquitto-dynsec.ts';

/*
 * security.test.ts's MQTT checks, in Mosquitto mode (--broker-url, --broker-auth dynsec): the
 * logins and access rules the control plane provisions on a real Mosquitto 2 of this suite's own.
 * Anonymous and wrong credentials are refused, a device publishes only on its own device-to-cloud
 * topics and subscribes only to its own desired and cmd topics, and revocation disconnects at once.
 */

const missing = mosquittoMissing();
if (missing && process.env.CI === 'true') throw new Error(`external broker security suite: ${missing}`);

describe.skipIf(missing !== null)('MQTT security on an external Mosquitto with dynamic security', () => {
  let broker: DynsecMosquitto;
  let t: TestControlPlane;
  const clients: MqttClient[] = [];

  const connectError = (options: IClientOptions) =>
    new Promise<(Error & { code?: number }) | null>((resolve) => {
      const client = mqtt.connect(broker.url, {
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 3_000,
        ...options,
      });
      clients.push(client);
      client.once('connect', () => {
        client.end(true);
        resolve(null);
      });
      client.once('error', (error) => {
        client.end(true);
        resolve(error);
      });
      client.on('error', () => {});
    });

  /** The QoS the broker granted (128 = refused); mqtt.js rejects a refused SUBACK, so read it from the error. */
  const grantedQos = async (client: MqttClient, topic: string) => {
    try {
      const [grant] = await client.subscribeAsync(topic, { qos: 1 });
      return grant?.qos;
    } catch (error) {
      return (error as { packet?: { granted?: number[] } }).packet?.granted?.[0];
    }
  };

  beforeAll(async () => {
    ({ broker, t } = await startOnDynsecMosquitto('external-security-1'));
  }, 30_000);

  afterAll(async () => {
    for (const client of clients) client.end(true);
    await t?.stop();
    await broker?.stop();
  });

  it('refuses anonymous connects, wrong passwords, unknown ids and a client id that is not the username', async () => {
    const enrolled = await t.enroll('sec-login');
    const password = enrolled.credentials.password;
    expect((await connectError({ clientId: 'sec-login' }))?.code).toBe(5);
    expect((await connectError({ clientId: 'sec-login', username: 'sec-login', password: `${password}x` }))?.code).toBe(
      5,
    );
    expect((await connectError({ clientId: 'sec-nobody', username: 'sec-nobody', password }))?.code).toBe(5);
    expect((await connectError({ clientId: 'sec-other', username: 'sec-login', password }))?.code).toBe(5);
    // The control plane's enrollment answer works, as a check that the refusals above are about the credentials.
    expect(await connectError({ clientId: 'sec-login', username: 'sec-login', password })).toBeNull();
  });

  it("does not store or deliver a publish on another device's topics, nor on its own cloud-to-device topics", async () => {
    const attacker = await t.device('sec-attacker');
    const victim = await t.device('sec-victim');
    const victimBoot = newBootId();
    const forged = encode('telemetry', {
      msgId: messageId(victimBoot, 1),
      bootId: victimBoot,
      seq: 1,
      ts: Date.now(),
      intervalS: 10,
      system: SYSTEM,
    });
    // MQTT 3.1.1 has no negative PUBACK: Mosquitto acks and drops the message.
    await attacker.client.publishAsync(topicFor('sec-victim', 'telemetry'), forged, { qos: 1 });
    const victimCommands: string[] = [];
    victim.client.on('message', (topic) => victimCommands.push(topic));
    await victim.client.subscribeAsync(topicFor('sec-victim', 'cmd'), { qos: 1 });
    await attacker.client.publishAsync(
      topicFor('sec-victim', 'cmd'),
      JSON.stringify({ requestId: 'forged', name: 'reboot', args: {} }),
      { qos: 1 },
    );
    // The attacker's own message, sent after: once it is stored, the forged ones had their turn.
    const own = await attacker.send('telemetry', { intervalS: 10, system: SYSTEM });
    await eventually(async () => (await t.store.messages.count('sec-attacker', own.msgId)) === 1);
    await t.cp.internals.ingest.flush();
    expect(await t.store.messages.count('sec-victim')).toBe(0);
    expect(victimCommands).toEqual([]);
  });

  it("refuses subscriptions to another device's topics, wildcards and $SYS with SUBACK 0x80", async () => {
    const attacker = await t.device('sec-sub-attacker');
    await t.enroll('sec-sub-victim');
    expect(await grantedQos(attacker.client, topicFor('sec-sub-victim', 'cmd'))).toBe(128);
    expect(await grantedQos(attacker.client, topicFor('sec-sub-victim', 'desired'))).toBe(128);
    expect(await grantedQos(attacker.client, 'fleet/v1/devices/+/cmd')).toBe(128);
    expect(await grantedQos(attacker.client, '#')).toBe(128);
    expect(await grantedQos(attacker.client, '$SYS/#')).toBe(128);
    expect(await grantedQos(attacker.client, topicFor('sec-sub-attacker', 'cmd'))).toBe(1);
    // Desired state of the victim published now does not reach the attacker; its own does.
    const seen: string[] = [];
    attacker.client.on('message', (topic) => seen.push(topic));
    await attacker.client.subscribeAsync(topicFor('sec-sub-attacker', 'desired'), { qos: 1 });
    await unwrap(t.client.devices.setDesired('sec-sub-victim', { telemetryIntervalS: 5 }));
    await unwrap(t.client.devices.setDesired('sec-sub-attacker', { telemetryIntervalS: 5 }));
    await eventually(() => seen.includes(topicFor('sec-sub-attacker', 'desired')));
    expect(seen).toEqual([topicFor('sec-sub-attacker', 'desired')]);
  });

  it('disconnects a device at its revocation, without waiting for a keepalive, and refuses it after', async () => {
    const d = await t.device('sec-revoked', { keepalive: 600 });
    await d.send('status', { state: 'online', reason: 'birth' });
    const gone = closed(d.client);
    const started = Date.now();
    await unwrap(t.client.devices.revoke('sec-revoked'));
    await gone;
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await connectError({ clientId: 'sec-revoked', username: 'sec-revoked', password: d.password }))?.code).toBe(
      5,
    );
  });
});
