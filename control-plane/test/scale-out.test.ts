import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApiClient, encode, messageId, topicFor, unwrap } from '@edgeloop/protocol';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  countStored,
  metricTotal,
  pg,
  type Replica,
  type ReplicaSetup,
  startReplica,
} from '../../bench/scale-replicas.ts';
import { serviceGate } from '../../test-services.ts';
import { newBootId, SYSTEM } from './harness.ts';
import { type DynsecMosquitto, mosquittoMissing, startDynsecMosquitto } from './mosquitto-dynsec.ts';
import { type ScratchDatabase, scratchDatabase } from './postgres-service.ts';

/*
 * Issue 11's acceptance test for scale-out: 3 control-plane replicas (real `edgeloop serve`
 * processes) behind a Mosquitto 2 with dynamic security of this suite's own, on one scratch
 * PostgreSQL database. 200 enrolled devices, each a real mqtt.js client that behaves like the
 * agent (MQTT 3.1.1, clean session, a retained birth on every connect, QoS 1 telemetry with a
 * per-boot seq, one message in flight as the agent's outbox sends them), and a third of them
 * reboot mid-run (a new bootId, a new connection, a new birth) so that old-boot messages can
 * reach one replica after the new birth reached another. While they publish, replica 2 is
 * SIGKILLed (its unacknowledged messages stay in its broker session) and restarted under the same
 * replica id, and replica 3 is stopped cleanly (started again once the devices are done). Then
 * PostgreSQL must hold every published message exactly once, and each device row the newest
 * state by (bootId, session, seq).
 *
 * Skipped, with the reason, without PostgreSQL or without Mosquitto and its dynsec plugin; under
 * CI=true a missing Mosquitto fails instead (the global setup does the same for PostgreSQL).
 */

const postgres = serviceGate('postgres');
const missing = mosquittoMissing();
if (missing && process.env.CI === 'true') throw new Error(`scale-out suite: ${missing}`);
const skipReason = !postgres.run ? `PostgreSQL unreachable: ${postgres.unreachable}` : missing;
if (skipReason) console.warn(`scale-out suite skipped: ${skipReason}`);

const DEVICES = 200;
/** Telemetry per boot (a rebooting device sends two boots of this). */
const TELEMETRY_PER_BOOT = 14;
/** Every REBOOT_EVERY-th device reboots once, half-way through. */
const REBOOT_EVERY = 3;
/** Pause between one device's messages: spreads the publishing over the kill, the restart and the stop. */
const PACE_MS = 300;

type SimDevice = {
  readonly id: string;
  readonly password: string;
  /** Every boot it announced with a birth, in order. */
  readonly boots: string[];
  /** Last telemetry seq per boot. */
  readonly lastSeq: Map<string, number>;
  /** msgIds the broker acknowledged. */
  readonly published: string[];
  errors: number;
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(skipReason !== null)('3 replicas behind Mosquitto on one PostgreSQL database', () => {
  let broker: DynsecMosquitto;
  let database: ScratchDatabase;
  let db: pg.Client;
  let dataDir: string;
  let setup: ReplicaSetup;
  const replicas = new Set<Replica>();
  const clients = new Set<MqttClient>();

  const start = async (replicaId: string) => {
    const replica = await startReplica(setup, replicaId);
    replicas.add(replica);
    void replica.exited.then(() => replicas.delete(replica));
    return replica;
  };

  beforeAll(async () => {
    broker = await startDynsecMosquitto();
    database = scratchDatabase('edgeloop_scale');
    await database.create();
    db = new pg.Client({ connectionString: database.url });
    await db.connect();
    dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-scale-'));
    setup = {
      brokerUrl: broker.url,
      brokerUsername: broker.admin.username,
      brokerPassword: broker.admin.password,
      databaseUrl: database.url,
      dataDir,
      adminToken: `scale-admin-${randomBytes(12).toString('hex')}`,
    };
  }, 60_000);

  afterAll(async () => {
    for (const client of clients) client.end(true);
    await Promise.all([...replicas].map((replica) => replica.kill()));
    await db?.end();
    await database?.drop();
    await broker?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  /** Connects like the agent: MQTT 3.1.1, clean session, a retained will of this connection. */
  const connect = (device: SimDevice, bootId: string) =>
    new Promise<MqttClient>((resolve, reject) => {
      const will = encode('status', {
        msgId: `${bootId}-will-1`,
        bootId,
        seq: 0,
        ts: Date.now(),
        state: 'offline',
        reason: 'connection-lost',
        session: 1,
      });
      const client = mqtt.connect(broker.url, {
        clientId: device.id,
        username: device.id,
        password: device.password,
        protocolVersion: 4,
        clean: true,
        keepalive: 30,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
        will: { topic: topicFor(device.id, 'status'), payload: Buffer.from(will), qos: 1, retain: true },
      });
      clients.add(client);
      client.on('error', () => {
        device.errors++;
      });
      client.once('connect', () => resolve(client));
      client.once('close', () => reject(new Error(`${device.id} closed before CONNACK`)));
    });

  /** One boot: a connection, its birth, `count` telemetry messages, then a clean DISCONNECT (no will). */
  const runBoot = async (device: SimDevice, count: number) => {
    const bootId = newBootId();
    const client = await connect(device, bootId);
    const send = async (payload: string, msgId: string, retain = false) => {
      const topic = topicFor(device.id, payload.includes('"state"') ? 'status' : 'telemetry');
      await client.publishAsync(topic, payload, { qos: 1, retain });
      device.published.push(msgId);
    };
    const birth = messageId(bootId, 1);
    const status = encode('status', {
      msgId: birth,
      bootId,
      seq: 1,
      ts: Date.now(),
      state: 'online',
      reason: 'birth',
      session: 1,
      agentVersion: '0.3.0',
      keepaliveS: 30,
      telemetryIntervalS: 1,
    });
    await send(status, birth, true);
    device.boots.push(bootId);
    for (let seq = 2; seq < 2 + count; seq++) {
      await sleep(PACE_MS * (0.5 + Math.random()));
      const msgId = messageId(bootId, seq);
      await send(encode('telemetry', { msgId, bootId, seq, ts: Date.now(), intervalS: 1, system: SYSTEM }), msgId);
      device.lastSeq.set(bootId, seq);
    }
    return client;
  };

  /** What the run left, for the checks below. */
  type Run = {
    devices: SimDevice[];
    published: number;
    enrollMs: number;
    killedAt: number;
    stoppedAt: number;
    beforeRestart: number;
    /** What replica 3 had stored when it was stopped. */
    threeStored: number;
  };
  let run: Run;

  beforeAll(async () => {
    const one = await start('scale-cp-1');
    // The first replica has migrated the database; the other two start against it together.
    let [two, three] = await Promise.all([start('scale-cp-2'), start('scale-cp-3')]);
    const api = [one, two, three].map((replica) => createApiClient({ baseUrl: replica.http, token: setup.adminToken }));

    // Enrollment goes through all three replicas (each provisions the device on Mosquitto's dynsec).
    const devices: SimDevice[] = [];
    const ids = Array.from({ length: DEVICES }, (_, i) => `so-cam-${String(i).padStart(3, '0')}`);
    const enrollStarted = Date.now();
    for (let i = 0; i < ids.length; i += 12) {
      const slice = ids.slice(i, i + 12);
      const enrolled = await Promise.all(
        slice.map((id, j) => unwrap(api[(i + j) % 3]!.devices.enroll({ id, labels: { fleet: 'scale' } }))),
      );
      for (const [j, result] of enrolled.entries())
        devices.push({
          id: slice[j]!,
          password: result.credentials.password,
          boots: [],
          lastSeq: new Map(),
          published: [],
          errors: 0,
        });
    }
    const enrollMs = Date.now() - enrollStarted;

    // Every device publishes; every REBOOT_EVERY-th one reboots half-way through.
    const publishing = Promise.all(
      devices.map(async (device, index) => {
        await sleep(Math.random() * PACE_MS);
        if (index % REBOOT_EVERY === 0) {
          const first = await runBoot(device, TELEMETRY_PER_BOOT / 2);
          await first.endAsync();
          clients.delete(first);
          return runBoot(device, TELEMETRY_PER_BOOT / 2);
        }
        return runBoot(device, TELEMETRY_PER_BOOT);
      }),
    );
    const expectedTotal = devices.reduce(
      (sum, _, index) => sum + (index % REBOOT_EVERY === 0 ? 2 + TELEMETRY_PER_BOOT : 1 + TELEMETRY_PER_BOOT),
      0,
    );

    // Replica 3 stops cleanly once a fifth is stored, before the reboots.
    while ((await countStored(db)) < expectedTotal / 5) await sleep(50);
    const threeStored = await metricTotal(three, setup.adminToken, 'edgeloop_ingest_accepted_total');
    const stoppedAt = await countStored(db);
    const stopStarted = Date.now();
    // Not awaited here: the clean shutdown takes seconds (acks in flight settle first).
    const threeStopped = three.stop().then((code) => ({ code, ms: Date.now() - stopStarted }));
    // Replica 2 dies while the reboots are under way, with whatever it had not acknowledged yet
    // (new births among it), and comes back under the same replica id (so the same broker session).
    const rebooting = devices.filter((_, index) => index % REBOOT_EVERY === 0);
    while (rebooting.filter((device) => device.boots.length === 2).length < rebooting.length / 4) await sleep(20);
    expect(await two.kill()).toBe('SIGKILL');
    const killedAt = await countStored(db);
    two = await start('scale-cp-2');

    const connected = await publishing;
    const { code: threeExit, ms: stopMs } = await threeStopped;
    expect(threeExit).toBe(0);
    const published = devices.reduce((sum, device) => sum + device.published.length, 0);

    // Mosquitto 2.0.11 may queue a stopped member's round-robin share of a shared subscription in
    // its persistent session (two bare shared subscribers, one stopped cleanly, show it); in these
    // runs the count settled before replica 3 was back and it stored nothing after its restart.
    // Either way the count must settle at the published total, before or after it is back.
    const waitStored = async (ms: number) => {
      const deadline = Date.now() + ms;
      let stored = await countStored(db);
      let last = { stored, at: Date.now() };
      while (stored < published && Date.now() < deadline) {
        await sleep(100);
        stored = await countStored(db);
        if (stored !== last.stored) last = { stored, at: Date.now() };
        // Settled: nothing new for a second.
        else if (Date.now() - last.at > 1_000) break;
      }
      return stored;
    };
    const beforeRestart = await waitStored(5_000);
    three = await start('scale-cp-3');
    await waitStored(30_000);
    const shares = await Promise.all(
      [one, two, three].map((replica) => metricTotal(replica, setup.adminToken, 'edgeloop_ingest_accepted_total')),
    );
    for (const client of connected) await client.endAsync();
    for (const replica of [one, two, three]) expect(await replica.stop()).toBe(0);
    run = { devices, published, enrollMs, killedAt, stoppedAt, beforeRestart, threeStored };
    console.info(
      `scale-out: ${DEVICES} devices enrolled in ${enrollMs} ms; ${published} messages published; replica 2 ` +
        `SIGKILLed at ${killedAt} stored, replica 3 sent SIGTERM at ${stoppedAt} (exited after ${stopMs} ms); ${beforeRestart} stored before ` +
        `replica 3 came back, ${await countStored(db)} after; replica 3 had stored ${threeStored} when stopped; ` +
        `since their last starts the replicas stored ${shares.join(' / ')}`,
    );
  }, 120_000);

  it('published every message the devices sent, with no client error, while both replicas went away', () => {
    const expected = run.devices.reduce(
      (sum, _, index) => sum + (index % REBOOT_EVERY === 0 ? 2 + TELEMETRY_PER_BOOT : 1 + TELEMETRY_PER_BOOT),
      0,
    );
    expect(run.published).toBe(expected);
    expect(run.devices.reduce((sum, device) => sum + device.errors, 0)).toBe(0);
    // Publishing went on after both events (otherwise they would prove nothing).
    expect(run.killedAt).toBeLessThan(run.published);
    expect(run.stoppedAt).toBeLessThan(run.published);
  });

  it('stores every published message exactly once', async () => {
    const rows = await db.query<{ device_id: string; msg_id: string; n: string }>(
      'SELECT device_id, msg_id, count(*) AS n FROM messages GROUP BY device_id, msg_id',
    );
    const storedPairs = new Map(rows.rows.map((row) => [`${row.device_id} ${row.msg_id}`, Number(row.n)]));
    const publishedPairs = run.devices.flatMap((device) => device.published.map((msgId) => `${device.id} ${msgId}`));
    const lost = publishedPairs.filter((pair) => !storedPairs.has(pair));
    expect(lost.slice(0, 5), `${lost.length} published messages not stored`).toEqual([]);
    expect([...storedPairs.values()].filter((n) => n !== 1)).toEqual([]);
    expect(storedPairs.size).toBe(run.published);
    expect(await countStored(db)).toBe(run.published);
    const dead = await db.query<{ n: string }>('SELECT count(*) AS n FROM dead_letters');
    expect(Number(dead.rows[0]?.n)).toBe(0);
  });

  type Row = {
    id: string;
    boot_ids: string[];
    status: string;
    status_boot_id: string | null;
    status_seq: string | null;
    status_session: number | null;
    telemetry_boot_id: string | null;
    telemetry_seq: string | null;
  };
  const deviceRows = async () => {
    const result = await db.query<Row>(
      `SELECT id, boot_ids, status, status_boot_id, status_seq, status_session, telemetry_boot_id, telemetry_seq
         FROM devices WHERE id LIKE 'so-cam-%' ORDER BY id`,
    );
    expect(result.rows).toHaveLength(DEVICES);
    return result.rows.map((row) => ({ row, device: run.devices.find((d) => d.id === row.id)! }));
  };
  /** The arrival order of one device's stored messages: on a failure it tells why. */
  const arrivals = async (deviceId: string | undefined) => {
    if (!deviceId) return '';
    const result = await db.query<{ channel: string; boot_id: string; seq: string; received_at: string }>(
      'SELECT channel, boot_id, seq, received_at FROM messages WHERE device_id = $1 ORDER BY received_at, id',
      [deviceId],
    );
    return `${deviceId} stored in this order: ${result.rows.map((r) => `${r.channel} ${r.boot_id}#${r.seq} @${r.received_at}`).join(', ')}`;
  };

  it('makes the last boot each device announced with a birth its current boot, and that birth its status', async () => {
    const wrong: string[] = [];
    for (const { row, device } of await deviceRows()) {
      const current = device.boots.at(-1)!;
      const expected = { bootIds: device.boots, status: 'online', bootId: current, seq: 1, session: 1 };
      const actual = {
        bootIds: row.boot_ids.slice(-device.boots.length),
        status: row.status,
        bootId: row.status_boot_id,
        seq: Number(row.status_seq),
        session: row.status_session,
      };
      if (JSON.stringify(actual) !== JSON.stringify(expected))
        wrong.push(`${row.id}: ${JSON.stringify(actual)} != ${JSON.stringify(expected)}`);
    }
    const why = await arrivals(wrong[0]?.split(':')[0]);
    expect(wrong.slice(0, 5), `${wrong.length} devices with the wrong status; ${why}`).toEqual([]);
  });

  /*
   * With several replicas the messages of a new boot can be stored before its birth (the birth sat
   * unacknowledged in a killed replica's broker session until it came back). Rule 2 of
   * device-state.ts folds nothing of them when stored; the commit that makes the boot current looks
   * up the boot's newest stored telemetry and reported state and applies them (BootCatchUp in
   * db/repositories.ts). This run makes the late births happen every time (replica 2 is killed
   * while a quarter of the reboots are done, holding half of the fleet's messages in flight).
   */
  it('keeps the newest telemetry of the current boot for every device, births stored late included', async () => {
    const wrong: string[] = [];
    for (const { row, device } of await deviceRows()) {
      const current = device.boots.at(-1)!;
      const expected = { bootId: current, seq: device.lastSeq.get(current) };
      const actual = { bootId: row.telemetry_boot_id, seq: Number(row.telemetry_seq) };
      if (JSON.stringify(actual) !== JSON.stringify(expected))
        wrong.push(`${row.id}: ${JSON.stringify(actual)} != ${JSON.stringify(expected)}`);
    }
    const why = await arrivals(wrong[0]?.split(':')[0]);
    expect(wrong.slice(0, 5), `${wrong.length} devices not at their newest telemetry; ${why}`).toEqual([]);
  });

  it('keeps the newest telemetry of the current boot for every device with a single boot, whichever replica stored what', async () => {
    // The part of the rule that holds today: devices that did not reboot have one boot, so every
    // telemetry is of the current boot and only seq orders it, across all writers.
    const wrong: string[] = [];
    for (const { row, device } of await deviceRows()) {
      if (device.boots.length !== 1) continue;
      const current = device.boots[0]!;
      const expected = { bootId: current, seq: device.lastSeq.get(current) };
      const actual = { bootId: row.telemetry_boot_id, seq: Number(row.telemetry_seq) };
      if (JSON.stringify(actual) !== JSON.stringify(expected))
        wrong.push(`${row.id}: ${JSON.stringify(actual)} != ${JSON.stringify(expected)}`);
    }
    const why = await arrivals(wrong[0]?.split(':')[0]);
    expect(wrong.slice(0, 5), `${wrong.length} single-boot devices not at their newest telemetry; ${why}`).toEqual([]);
  });
});
