import { topicFor } from '@edgeloop/protocol';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDynsecAdmin, type DynsecAdmin } from '../src/external-broker/dynsec.ts';
import { createSharedSubscriber, type SharedSubscriber } from '../src/external-broker/shared-subscriber.ts';
import { eventually } from './harness.ts';
import { type DynsecMosquitto, mosquittoMissing, startDynsecMosquitto } from './mosquitto-dynsec.ts';

/*
 * The ingest subscription on an external broker (issue 11 §3): a shared subscription under a
 * persistent session whose PUBACKs follow the store, on a real Mosquitto 2 of this suite's own
 * with dynamic security. Two replicas split the messages; one is killed with messages unacked and
 * comes back under the same client id: every message is stored, the store's dedupe by msgId
 * makes each exactly once.
 */

const missing = mosquittoMissing();
if (missing && process.env.CI === 'true') throw new Error(`shared-subscriber suite: ${missing}`);

describe.skipIf(missing !== null)('shared subscription with acks after the store, on Mosquitto', () => {
  let broker: DynsecMosquitto;
  let adminClient: MqttClient;
  let admin: DynsecAdmin;
  const clients: MqttClient[] = [];
  const subscribers: SharedSubscriber[] = [];
  const CP = { username: 'edgeloop-cp', password: 'control-plane-password-0123456789' };
  const DEVICES = 20;
  const PER_DEVICE = 60;

  const connect = (options: mqtt.IClientOptions) =>
    new Promise<MqttClient>((resolve, reject) => {
      const client = mqtt.connect(broker.url, { protocolVersion: 5, reconnectPeriod: 0, ...options });
      clients.push(client);
      client.once('connect', () => resolve(client));
      client.once('error', reject);
      client.on('error', () => {});
    });

  beforeAll(async () => {
    broker = await startDynsecMosquitto();
    adminClient = await connect({ clientId: 'edgeloop-admin', ...broker.admin });
    admin = await createDynsecAdmin({ client: adminClient });
    expect(
      await admin.send([
        {
          command: 'createRole',
          rolename: 'edgeloop-control-plane',
          acls: [
            { acltype: 'subscribePattern', topic: '$share/edgeloop/fleet/v1/devices/+/telemetry', allow: true },
            { acltype: 'subscribePattern', topic: 'fleet/v1/devices/+/telemetry', allow: true },
            { acltype: 'publishClientReceive', topic: 'fleet/v1/devices/#', allow: true },
          ],
        },
        {
          command: 'createClient',
          username: CP.username,
          password: CP.password,
          roles: [{ rolename: 'edgeloop-control-plane' }],
        },
      ]),
    ).toEqual([null, null]);
    for (let i = 0; i < DEVICES; i++) await admin.provisionDevice(`cam-${i}`, `cam-${i}-password-0123456789`);
  }, 30_000);

  afterAll(async () => {
    for (const subscriber of subscribers) subscriber.kill();
    await admin?.close();
    for (const client of clients) client.end(true);
    await broker?.stop();
  });

  it('stores every message exactly once while a replica is killed with messages unacknowledged and comes back', async () => {
    // The store: a commit every `commitMs` of whatever arrived (the ingest's batches), dedupe by msgId.
    const stored = new Set<string>();
    let deliveries = 0;
    const replicaOf = new Map<string, Set<string>>();
    const makeStore = (replica: string, commitMs: number) => {
      let batch: { msgId: string; ack: (ok: boolean) => void }[] = [];
      const timer = setInterval(() => {
        const committed = batch;
        batch = [];
        for (const { msgId, ack } of committed) {
          stored.add(msgId);
          ack(true);
        }
      }, commitMs);
      timer.unref();
      return (topic: string, payload: Buffer, ack: (ok: boolean) => void) => {
        deliveries++;
        const { msgId } = JSON.parse(payload.toString('utf8')) as { msgId: string };
        if (!replicaOf.has(replica)) replicaOf.set(replica, new Set());
        replicaOf.get(replica)!.add(msgId);
        expect(topic).toMatch(/^fleet\/v1\/devices\/cam-\d+\/telemetry$/);
        batch.push({ msgId, ack });
      };
    };
    const replica = async (name: string, clientId: string, commitMs = 5) => {
      const subscriber = createSharedSubscriber({
        url: broker.url,
        ...CP,
        clientId,
        shareGroup: 'edgeloop',
        filters: ['fleet/v1/devices/+/telemetry'],
        onMessage: makeStore(name, commitMs),
        reconnectMs: 100,
      });
      subscribers.push(subscriber);
      await subscriber.start();
      return subscriber;
    };
    // Replica one commits slowly, so it holds unacknowledged messages when it is killed.
    const one = await replica('one', 'edgeloop-cp-1', 10_000);
    const two = await replica('two', 'edgeloop-cp-2');

    const devices = await Promise.all(
      Array.from({ length: DEVICES }, (_, i) =>
        connect({ clientId: `cam-${i}`, username: `cam-${i}`, password: `cam-${i}-password-0123456789` }),
      ),
    );
    const publishAll = (from: number, to: number) =>
      Promise.all(
        devices.map(async (device, d) => {
          for (let n = from; n < to; n++)
            await device.publishAsync(topicFor(`cam-${d}`, 'telemetry'), JSON.stringify({ msgId: `m-${d}-${n}` }), {
              qos: 1,
            });
        }),
      );
    const first = publishAll(0, PER_DEVICE / 2);
    // Replica one dies mid-stream, with whatever it had not yet acknowledged.
    await eventually(async () => one.stats.received > 50);
    one.kill();
    expect(one.stats.acked).toBe(0);
    const heldByOne = new Set(replicaOf.get('one'));
    await first;
    // It comes back under the same client id: its session's unacknowledged messages come again.
    const back = await replica('one-again', 'edgeloop-cp-1');
    await publishAll(PER_DEVICE / 2, PER_DEVICE);
    await eventually(async () => stored.size === DEVICES * PER_DEVICE, 15_000);
    for (let d = 0; d < DEVICES; d++) for (let n = 0; n < PER_DEVICE; n++) expect(stored.has(`m-${d}-${n}`)).toBe(true);
    // What the killed replica held came again (DUP) to its successor, under the same session.
    expect(back.stats.redelivered).toBeGreaterThan(0);
    for (const msgId of heldByOne) expect(replicaOf.get('one-again')?.has(msgId)).toBe(true);
    // Both live replicas took a share of the rest.
    expect(replicaOf.get('two')?.size ?? 0).toBeGreaterThan(0);
    expect(deliveries).toBeGreaterThan(DEVICES * PER_DEVICE);
    await two.stop();
    await back.stop();
  });

  it('refuses to start with wrong credentials or a filter its role does not allow', async () => {
    const base = { url: broker.url, shareGroup: 'edgeloop', onMessage: () => {}, reconnectMs: 100 };
    await expect(
      createSharedSubscriber({
        ...base,
        username: CP.username,
        password: 'wrong',
        clientId: 'x1',
        filters: ['fleet/v1/devices/+/telemetry'],
      }).start(),
    ).rejects.toThrow(/refused the connection/);
    await expect(
      createSharedSubscriber({ ...base, ...CP, clientId: 'x2', filters: ['fleet/v1/devices/+/cmd'] }).start(),
    ).rejects.toThrow(/refused the subscription/);
  });
});
