import { encode, fleetFilter, messageId, topicFor, unwrap } from '@edgeloop/protocol';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countAllMessages } from '../src/db/sqlite/messages.ts';
import { eventually, newBootId, SYSTEM, startTestControlPlane, type TestControlPlane } from './harness.ts';

let t: TestControlPlane;

beforeAll(async () => {
  t = await startTestControlPlane({ ingest: { batchSize: 300 } });
});

afterAll(async () => {
  await t.stop();
});

const getDevice = (id: string) => unwrap(t.client.devices.get(id));

const withTemperature = (cpuC: number) => ({ ...SYSTEM, temperatures: { cpuC, gpuC: null } });

describe('ingest', () => {
  it('stores a message once even when the same msgId is published twice', async () => {
    const d = await t.device('dup-sender');
    const first = await d.send('telemetry', { intervalS: 10, system: SYSTEM });
    await d.send('telemetry', { intervalS: 10, system: SYSTEM, msgId: first.msgId, seq: first.seq });
    await d.send('events', {
      type: 'agent.started',
      severity: 'info',
      msgId: 'boot-dup-evt-1',
      bootId: 'bootdupe1',
      seq: 7,
    });
    await d.send('events', {
      type: 'agent.started',
      severity: 'info',
      msgId: 'boot-dup-evt-1',
      bootId: 'bootdupe1',
      seq: 7,
    });
    expect(await t.store.messages.count('dup-sender', first.msgId)).toBe(1);
    expect(await t.store.messages.count('dup-sender')).toBe(2);
    expect(t.cp.internals.ingest.stats().duplicates).toBeGreaterThanOrEqual(2);
  });

  it('acks a QoS 1 publish only after its row is in the database', async () => {
    const d = await t.device('puback-check');
    for (let i = 1; i <= 40; i++) {
      const { msgId } = await d.send('telemetry', { intervalS: 10, system: SYSTEM });
      // publishAsync resolved on PUBACK: the row must already be readable.
      expect(await t.store.messages.count('puback-check', msgId)).toBe(1);
    }
  });

  it('does not roll back latest telemetry or reported state on an out-of-order seq', async () => {
    const d = await t.device('out-of-order');
    await d.send('status', { state: 'online', reason: 'birth', seq: 1 });
    await d.send('telemetry', { intervalS: 10, system: withTemperature(50), seq: 5 });
    await d.send('telemetry', { intervalS: 10, system: withTemperature(90), seq: 3 });
    await d.send('reported', { agentVersion: '1.0.0', desiredVersion: 4, telemetryIntervalS: 10, seq: 8 });
    await d.send('reported', { agentVersion: '1.0.0', desiredVersion: 2, telemetryIntervalS: 10, seq: 6 });
    const body = await getDevice('out-of-order');
    expect(body.telemetry?.message.seq).toBe(5);
    expect(body.telemetry?.message.system.temperatures.cpuC).toBe(50);
    expect(body.reported?.message.seq).toBe(8);
    expect(body.reported?.message.desiredVersion).toBe(4);
    expect(await t.store.messages.count('out-of-order')).toBe(5);
  });

  it('keeps the latest state of the new boot when an outbox replays an older boot after the birth', async () => {
    const d = await t.device('replayer');
    const oldBoot = newBootId();
    await d.send('status', { state: 'online', reason: 'birth', seq: 1 });
    await d.send('telemetry', { intervalS: 10, system: withTemperature(40), seq: 2 });
    // Messages of a boot never seen before, arriving after the current boot's birth.
    await d.send('telemetry', { intervalS: 10, system: withTemperature(95), seq: 900, bootId: oldBoot });
    const body = await getDevice('replayer');
    expect(body.telemetry?.message.system.temperatures.cpuC).toBe(40);
    expect(body.device.bootId).toBe(d.bootId);
    expect(await t.store.messages.count('replayer')).toBe(3);
  });

  it('takes the new boot after a restart: the old connection will applies, then the new birth', async () => {
    const enrolled = await t.enroll('restarter');
    const password = enrolled.credentials.password;
    const bootA = newBootId();
    // As the agent does: the will and the birth of connection 1 of each boot carry session 1.
    const will = (bootId: string) => ({
      topic: topicFor('restarter', 'status'),
      payload: Buffer.from(
        encode('status', {
          msgId: `${bootId}-will-1`,
          bootId,
          seq: 0,
          ts: Date.now(),
          state: 'offline',
          reason: 'connection-lost',
          session: 1,
        }),
      ),
      qos: 1 as const,
      retain: true,
    });
    const birth = (bootId: string) =>
      encode('status', {
        msgId: messageId(bootId, 1),
        bootId,
        seq: 1,
        ts: Date.now(),
        state: 'online',
        reason: 'birth',
        session: 1,
      });
    const statuses: string[] = [];
    const unsubscribe = t.cp.internals.bus.subscribe((m) => {
      if ((m.type === 'device.online' || m.type === 'device.offline') && m.data.deviceId === 'restarter') {
        statuses.push(`${m.type}:${m.data.cause}`);
      }
    });
    const first = await t.connect('restarter', password, { will: will(bootA) });
    await first.publishAsync(topicFor('restarter', 'status'), birth(bootA), { qos: 1, retain: true });
    // The agent restarts with a new boot while the old socket is still open: a takeover.
    const bootB = newBootId();
    const second = await t.connect('restarter', password, { will: will(bootB) });
    await second.publishAsync(topicFor('restarter', 'status'), birth(bootB), { qos: 1, retain: true });
    await t.cp.internals.ingest.flush();
    unsubscribe();
    const body = await getDevice('restarter');
    expect(body.device.status).toBe('online');
    expect(body.device.bootId).toBe(bootB);
    expect(await t.store.messages.count('restarter', `${bootA}-will-1`)).toBe(1);
    expect(statuses).toEqual(['device.online:connect', 'device.offline:connection-lost', 'device.online:connect']);
    await first.endAsync(true);
  });

  it('ignores for status a will of an older boot that arrives after the new birth, but stores it', async () => {
    const d = await t.device('late-will');
    const oldBoot = newBootId();
    const ingest = t.cp.internals.ingest;
    await d.send('status', { state: 'online', reason: 'birth', bootId: oldBoot, seq: 1, msgId: messageId(oldBoot, 1) });
    await d.send('status', { state: 'online', reason: 'birth', seq: 1 });
    // The broker hands over the old connection's will late (as an external broker might).
    const willBody = encode('status', {
      msgId: `${oldBoot}-will-3`,
      bootId: oldBoot,
      seq: 0,
      ts: Date.now(),
      state: 'offline',
      reason: 'connection-lost',
    });
    const stored = new Promise<Error | null | undefined>((resolve) => {
      ingest.offer(
        {
          deviceId: 'late-will',
          channel: 'status',
          topic: topicFor('late-will', 'status'),
          payload: Buffer.from(willBody),
          qos: 1,
          will: true,
          liveSession: false,
        },
        resolve,
      );
    });
    expect(await stored).toBeNull();
    expect((await getDevice('late-will')).device.status).toBe('online');
    expect(await t.store.messages.count('late-will', `${oldBoot}-will-3`)).toBe(1);
  });

  it('marks a device offline when its connection drops without a will', async () => {
    const d = await t.device('drop-no-will');
    await d.send('status', { state: 'online', reason: 'birth' });
    d.client.stream.destroy();
    await eventually(async () => (await getDevice('drop-no-will')).device.status === 'offline');
  });

  it('stores a 20,000-message burst from 20 publishers exactly once in bounded batches', async () => {
    const publishers = 20;
    const perPublisher = 1_000;
    const devices = await Promise.all(
      Array.from({ length: publishers }, (_, i) => t.device(`burst-${String(i).padStart(2, '0')}`)),
    );
    const before = countAllMessages(t.store.db);
    await Promise.all(
      devices.map(async (d) => {
        const sends: Promise<unknown>[] = [];
        for (let i = 0; i < perPublisher; i++) sends.push(d.send('telemetry', { intervalS: 10, system: SYSTEM }));
        await Promise.all(sends);
      }),
    );
    expect(countAllMessages(t.store.db) - before).toBe(publishers * perPublisher);
    for (const d of devices) expect(await t.store.messages.count(d.id)).toBe(perPublisher);
    const stats = t.cp.internals.ingest.stats();
    expect(stats.maxBatchRows).toBeLessThanOrEqual(300);
    expect(stats.maxFlushMs).toBeGreaterThan(0);
  });
});

describe('overload', () => {
  it('survives a QoS 0 telemetry flood above the hard cap: sheds and counts, keeps serving', async () => {
    const small = await startTestControlPlane({ ingest: { highWater: 50, hardCap: 100, batchSize: 50 } });
    try {
      // An in-process subscriber on every telemetry topic puts mqemitter in the path (aedes#193).
      let routed = 0;
      const unsubscribe = await small.cp.internals.broker.subscribe(fleetFilter('telemetry'), () => {
        routed++;
      });
      const floodDevices = await Promise.all(Array.from({ length: 8 }, (_, i) => small.device(`flood-${i}`)));
      const perDevice = 3_000;
      const payloads = floodDevices.map((d) =>
        Array.from({ length: perDevice }, (_, i) =>
          encode('telemetry', {
            msgId: messageId(d.bootId, i + 1),
            bootId: d.bootId,
            seq: i + 1,
            ts: Date.now(),
            intervalS: 1,
            system: SYSTEM,
          }),
        ),
      );
      floodDevices.forEach((d, index) => {
        for (const payload of payloads[index]!) d.client.publish(topicFor(d.id, 'telemetry'), payload, { qos: 0 });
      });
      const ingest = small.cp.internals.ingest;
      const sent = floodDevices.length * perDevice;
      await eventually(() => {
        const s = ingest.stats();
        return s.accepted + s.dropped >= sent;
      }, 30_000);
      const stats = ingest.stats();
      expect(stats.accepted + stats.dropped).toBe(sent);
      expect(stats.dropped).toBeGreaterThan(0);
      await eventually(() => routed === sent, 10_000);
      await unsubscribe();
      const metrics = await (await small.raw('GET', '/metrics')).text();
      expect(metrics).toContain(`edgeloop_ingest_dropped_total{reason="overload"} ${stats.dropped}`);
      // Still serving: HTTP answers and a QoS 1 message is stored.
      expect((await small.raw('GET', '/healthz', { token: null })).status).toBe(200);
      const calm = await small.device('calm-device');
      const { msgId } = await calm.send('telemetry', { intervalS: 10, system: SYSTEM });
      expect(await small.store.messages.count('calm-device', msgId)).toBe(1);
    } finally {
      await small.stop();
    }
  });

  it('survives a QoS 1 flood from many pipelined publishers without losing an acked message', async () => {
    const small = await startTestControlPlane({ ingest: { highWater: 100, hardCap: 200, batchSize: 100 } });
    try {
      const publishers = await Promise.all(Array.from({ length: 10 }, (_, i) => small.device(`qos1-flood-${i}`)));
      const acked = await Promise.all(
        publishers.map(async (d) => {
          const sends = Array.from({ length: 1_500 }, () => d.send('telemetry', { intervalS: 1, system: SYSTEM }));
          return (await Promise.all(sends)).length;
        }),
      );
      const total = acked.reduce((a, b) => a + b, 0);
      expect(countAllMessages(small.store.db)).toBe(total);
      expect(small.cp.internals.ingest.stats().dropped).toBe(0);
    } finally {
      await small.stop();
    }
  });

  it('refuses nothing it acked when a client floods and disconnects mid-stream', async () => {
    const small = await startTestControlPlane();
    try {
      const enrolled = await small.enroll('vanisher');
      const client = await mqtt.connectAsync(small.started.mqttUrl, {
        clientId: 'vanisher',
        username: 'vanisher',
        password: enrolled.credentials.password,
        protocolVersion: 4,
        reconnectPeriod: 0,
      });
      const bootId = newBootId();
      const acked: string[] = [];
      for (let i = 1; i <= 500; i++) {
        const msgId = messageId(bootId, i);
        const payload = encode('telemetry', { msgId, bootId, seq: i, ts: Date.now(), intervalS: 1, system: SYSTEM });
        client.publish(topicFor('vanisher', 'telemetry'), payload, { qos: 1 }, (error) => {
          if (!error) acked.push(msgId);
        });
      }
      await eventually(() => acked.length >= 50);
      client.stream.destroy();
      await small.cp.internals.ingest.flush();
      for (const msgId of acked) expect(await small.store.messages.count('vanisher', msgId)).toBe(1);
    } finally {
      await small.stop();
    }
  });
});
