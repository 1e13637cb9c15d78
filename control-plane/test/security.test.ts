import { encode, MAX_PAYLOAD_BYTES, messageId, topicFor, unwrap } from '@edgeloop/protocol';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, newBootId, SYSTEM, startTestControlPlane, type TestControlPlane } from './harness.ts';

let t: TestControlPlane;

beforeAll(async () => {
  t = await startTestControlPlane();
});

afterAll(async () => {
  await t.stop();
});

function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (!client.connected) resolve();
    client.once('close', () => resolve());
  });
}

async function connectError(id: string, password: string | undefined, options: Record<string, unknown> = {}) {
  try {
    const client = await t.connect(id, password as string, options);
    await client.endAsync(true);
    return null;
  } catch (error) {
    return error as Error & { code?: number };
  }
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await t.raw('GET', '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

const messagesOf = (deviceId: string) => t.store.messages.count(deviceId);

/** The QoS the broker granted (128 = refused); mqtt.js rejects a refused SUBACK, so read it from the error. */
async function grantedQos(client: MqttClient, topic: string): Promise<number | undefined> {
  try {
    const [grant] = await client.subscribeAsync(topic, { qos: 1 });
    return grant?.qos;
  } catch (error) {
    return (error as { packet?: { granted?: number[] } }).packet?.granted?.[0];
  }
}

describe('MQTT authentication', () => {
  it('refuses an anonymous connect with CONNACK 4', async () => {
    const enrolled = await t.enroll('anon-target');
    expect(enrolled.credentials.password).toHaveLength(43);
    const error = await connectError('anon-target', undefined, { username: undefined, password: undefined });
    expect(error?.code).toBe(4);
  });

  it('refuses a wrong password with CONNACK 4 and a username other than the client id with 5', async () => {
    const enrolled = await t.enroll('wrong-pass');
    expect((await connectError('wrong-pass', `${enrolled.credentials.password.slice(0, -2)}xx`))?.code).toBe(4);
    expect((await connectError('wrong-pass', enrolled.credentials.password, { username: 'other-dev' }))?.code).toBe(5);
    expect((await connectError('never-enrolled', enrolled.credentials.password))?.code).toBe(4);
    expect(await metric('edgeloop_mqtt_auth_failures_total', '{reason="bad_password"}')).toBeGreaterThanOrEqual(1);
  });

  it('refuses a last will on another device topic or on a non-status topic of its own', async () => {
    const enrolled = await t.enroll('will-owner');
    await t.enroll('will-victim');
    const password = enrolled.credentials.password;
    const payload = encode('status', {
      msgId: 'bootaaaa-will-1',
      bootId: 'bootaaaa',
      seq: 0,
      ts: Date.now(),
      state: 'offline',
      reason: 'connection-lost',
    });
    const foreign = await connectError('will-owner', password, {
      will: { topic: topicFor('will-victim', 'status'), payload, qos: 1, retain: true },
    });
    expect(foreign?.code).toBe(5);
    const ownTelemetry = await connectError('will-owner', password, {
      will: { topic: topicFor('will-owner', 'telemetry'), payload, qos: 1, retain: false },
    });
    expect(ownTelemetry?.code).toBe(5);
    const own = await connectError('will-owner', password, {
      will: { topic: topicFor('will-owner', 'status'), payload, qos: 1, retain: true },
    });
    expect(own).toBeNull();
  });
});

describe('MQTT access rules', () => {
  it('closes the connection of a device publishing to another device topic and stores nothing', async () => {
    await t.enroll('victim-b');
    const a = await t.device('intruder-a');
    const denialsBefore = await metric('edgeloop_mqtt_acl_denials_total', '{action="publish"}');
    const bootId = newBootId();
    const payload = encode('telemetry', {
      msgId: messageId(bootId, 1),
      bootId,
      seq: 1,
      ts: Date.now(),
      intervalS: 10,
      system: SYSTEM,
    });
    const gone = closed(a.client);
    a.client.publish(topicFor('victim-b', 'telemetry'), payload, { qos: 1 });
    await gone;
    expect(await messagesOf('victim-b')).toBe(0);
    expect(await metric('edgeloop_mqtt_acl_denials_total', '{action="publish"}')).toBe(denialsBefore + 1);
  });

  it('refuses retained publishes on anything but the status topic', async () => {
    const d = await t.device('retain-abuser');
    const gone = closed(d.client);
    void d.send('telemetry', { intervalS: 10, system: SYSTEM }, { retain: true }).catch(() => undefined);
    await gone;
    expect(await messagesOf('retain-abuser')).toBe(0);
  });

  it('refuses publishing to a cloud-to-device topic of its own', async () => {
    const d = await t.device('desired-forger');
    const gone = closed(d.client);
    d.client.publish(topicFor('desired-forger', 'desired'), JSON.stringify({ version: 99, issuedAt: 1 }), { qos: 1 });
    await gone;
  });

  it('grants only the device own desired and cmd topics; wildcards, $SYS and other devices get 0x80', async () => {
    await t.enroll('other-c');
    const d = await t.device('subscriber-d');
    const refused = [
      '#',
      '+/#',
      '+/v1/devices/subscriber-d/desired',
      'fleet/v1/devices/+/desired',
      'fleet/v1/devices/#',
      '$SYS/#',
      topicFor('other-c', 'desired'),
      topicFor('other-c', 'cmd'),
      topicFor('subscriber-d', 'telemetry'),
    ];
    for (const topic of refused) expect(await grantedQos(d.client, topic), topic).toBe(128);
    expect(await metric('edgeloop_mqtt_acl_denials_total', '{action="subscribe"}')).toBeGreaterThanOrEqual(
      refused.length,
    );
    const own = await d.client.subscribeAsync([topicFor('subscriber-d', 'desired'), topicFor('subscriber-d', 'cmd')], {
      qos: 1,
    });
    expect(own.map((grant) => grant.qos)).toEqual([1, 1]);
    expect(d.client.connected).toBe(true);
  });

  it('grants QoS 1 to a subscription that asks for QoS 2', async () => {
    const d = await t.device('qos2-asker');
    const granted = await d.client.subscribeAsync([topicFor('qos2-asker', 'desired'), topicFor('qos2-asker', 'cmd')], {
      qos: 2,
    });
    expect(granted.map((grant) => grant.qos)).toEqual([1, 1]);
  });
});

describe('enrollment ids', () => {
  it.each([['__proto__'], ['a/b'], ['+'], ['#'], [''], ['a'.repeat(64)], ['a'.repeat(65)], ['constructor'], ['Cam-1']])(
    'refuses %j with 422',
    async (id) => {
      const response = await t.raw('POST', '/api/v1/devices', { body: { id, labels: {} } });
      expect(response.status).toBe(422);
      const body = (await response.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('unprocessable');
      expect(body.error.message.length).toBeGreaterThan(0);
    },
  );

  it('refuses a missing id with 422', async () => {
    const response = await t.raw('POST', '/api/v1/devices', { body: { labels: {} } });
    expect(response.status).toBe(422);
  });
});

describe('revocation', () => {
  it('disconnects a revoked device at once and refuses its reconnect', async () => {
    const d = await t.device('to-revoke');
    await d.send('status', { state: 'online', reason: 'birth' });
    const gone = closed(d.client);
    const response = await t.raw('DELETE', '/api/v1/devices/to-revoke');
    expect(response.status).toBe(204);
    await gone;
    expect((await connectError('to-revoke', d.password))?.code).toBe(4);
    expect((await t.raw('GET', '/api/v1/devices/to-revoke')).status).toBe(404);
    expect((await t.raw('DELETE', '/api/v1/devices/to-revoke')).status).toBe(404);
  });

  it('lets a revoked id enroll again with a new credential', async () => {
    const first = await t.enroll('re-enrolled');
    await t.raw('DELETE', '/api/v1/devices/re-enrolled');
    const second = await t.enroll('re-enrolled');
    expect(second.credentials.password).not.toBe(first.credentials.password);
    expect((await connectError('re-enrolled', first.credentials.password))?.code).toBe(4);
    expect(await connectError('re-enrolled', second.credentials.password)).toBeNull();
  });
});

describe('bad payloads', () => {
  it('dead-letters malformed JSON, wrong schemas and a payload over the limit (but within the packet limit), counts them and keeps serving', async () => {
    const bad = await t.device('bad-payloads');
    const good = await t.device('good-neighbour');
    const before = {
      json: await metric('edgeloop_ingest_rejected_total', '{reason="invalid_json"}'),
      schema: await metric('edgeloop_ingest_rejected_total', '{reason="invalid_schema"}'),
      size: await metric('edgeloop_ingest_rejected_total', '{reason="payload_too_large"}'),
    };
    const telemetryTopic = topicFor('bad-payloads', 'telemetry');
    await bad.client.publishAsync(telemetryTopic, '{"msgId": "oops"', { qos: 1 });
    await bad.client.publishAsync(telemetryTopic, JSON.stringify({ hello: 'world' }), { qos: 1 });
    await bad.client.publishAsync(topicFor('bad-payloads', 'events'), Buffer.from([0xff, 0xfe, 0x00]), { qos: 1 });
    await bad.client.publishAsync(telemetryTopic, Buffer.alloc(MAX_PAYLOAD_BYTES + 1024, 0x7b), { qos: 1 });
    await good.send('telemetry', { intervalS: 10, system: SYSTEM });

    expect(await metric('edgeloop_ingest_rejected_total', '{reason="invalid_json"}')).toBe(before.json + 1);
    expect(await metric('edgeloop_ingest_rejected_total', '{reason="invalid_schema"}')).toBe(before.schema + 1);
    expect(await metric('edgeloop_ingest_rejected_total', '{reason="invalid_utf8"}')).toBeGreaterThanOrEqual(1);
    expect(await metric('edgeloop_ingest_rejected_total', '{reason="payload_too_large"}')).toBe(before.size + 1);

    const letters = await unwrap(t.client.deadLetters.list({ deviceId: 'bad-payloads' }));
    expect(letters.items.map((l) => l.reason).sort()).toEqual([
      'invalid_json',
      'invalid_schema',
      'invalid_utf8',
      'payload_too_large',
    ]);
    const big = letters.items.find((l) => l.reason === 'payload_too_large')!;
    expect(big.payloadSize).toBe(MAX_PAYLOAD_BYTES + 1024);
    expect(Buffer.from(big.payloadExcerpt, 'base64')).toHaveLength(1024);
    expect(letters.items.find((l) => l.reason === 'invalid_schema')!.detail).toContain('msgId');

    // The connection stays, the device's next good message is stored, the server keeps serving.
    expect(bad.client.connected).toBe(true);
    await bad.send('telemetry', { intervalS: 10, system: SYSTEM });
    expect(await messagesOf('bad-payloads')).toBe(1);
    expect(await messagesOf('good-neighbour')).toBe(1);
    const health = await t.raw('GET', '/healthz', { token: null });
    expect(health.status).toBe(200);
  });

  it('publishes ingest.rejected events that carry the reason', async () => {
    const seen: string[] = [];
    const unsubscribe = t.cp.internals.bus.subscribe((message) => {
      if (message.type === 'ingest.rejected') seen.push(message.data.reason);
    });
    const d = await t.device('rejected-events');
    await d.client.publishAsync(topicFor('rejected-events', 'reported'), 'not json', { qos: 1 });
    await eventually(() => seen.includes('invalid_json'));
    unsubscribe();
  });
});
