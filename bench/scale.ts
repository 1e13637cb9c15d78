// bench:scale (issue 11 §6, part a): stored QoS 1 telemetry throughput with 1, 2 and 3 control-plane
// replicas (`edgeloop serve --broker-url`, real processes) behind one Mosquitto 2 with dynamic
// security and one PostgreSQL database, against a bare mqtt.js counter on a shared subscription of
// its own over the same Mosquitto in the same run. Stored means counted in PostgreSQL's messages
// table; the figure is messages / seconds from the publishers' first message until the last one
// is stored (the bare counter: until the last one is received).
//
// Phases, in this order, each with fresh msgIds (a new publisher process, so new bootIds):
//   enroll   replica 1 enrolls the devices (dynsec provisioning), then stops, and its broker
//            session is purged (a clean-start connect under its id), so nothing waits for it;
//   bare     the bare counter alone ($share/bare/...), no replica subscribed at all;
//   1, 2, 3  replica 1 starts, then replica 2 joins it, then replica 3: a replica keeps running
//            into the next phase and every phase waits until all its messages are stored, so no
//            stopped session ever exists to queue a phase's share (Mosquitto 2.0.11 hands an
//            offline member of a shared subscription its round-robin share, queued in its session)
//            and no phase starts with another's backlog.
// Mosquitto runs with max_queued_messages 0: its default (1000 queued per client beyond those in
// flight) drops a lagging subscriber's messages, and a replica under a flood lags.
//
// Env: SCALE_DEVICES (200), SCALE_MESSAGES (messages per device per phase, 100), SCALE_WINDOW (QoS 1
// messages in flight per publisher, 4), EDGELOOP_TEST_POSTGRES_URL (postgres://postgres@127.0.0.1:5432/postgres).
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApiClient, unwrap } from '@edgeloop/protocol';
import mqtt from 'mqtt';
import { createDynsecAdmin } from '../control-plane/src/external-broker/dynsec.ts';
import { mosquittoMissing, startDynsecMosquitto } from '../control-plane/test/mosquitto-dynsec.ts';
import { reportResult } from './report.ts';
import { countStored, metricTotal, pg, type Replica, type ReplicaSetup, startReplica } from './scale-replicas.ts';

const DEVICES = Number(process.env.SCALE_DEVICES ?? 200);
const PER_DEVICE = Number(process.env.SCALE_MESSAGES ?? 100);
const WINDOW = Number(process.env.SCALE_WINDOW ?? 4);
const TOTAL = DEVICES * PER_DEVICE;
const PG_ADMIN_URL = process.env.EDGELOOP_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const PUBLISHERS = fileURLToPath(new URL('./ingest-publishers.ts', import.meta.url));
const PHASE_TIMEOUT_MS = 180_000;

const missing = mosquittoMissing();
if (missing) {
  console.error(`bench:scale needs Mosquitto with dynsec: ${missing}`);
  process.exit(1);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The publishers of one phase in a child process; resolves with what it reports. */
function publish(url: string, devices: { id: string; password: string }[]) {
  const job = { url, devices, messagesPerDevice: PER_DEVICE, window: WINDOW, qos: 1, rate: 0, seconds: 0 };
  const child: ChildProcess = fork(PUBLISHERS, [JSON.stringify(job)], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString('utf8');
  });
  return new Promise<{ published: number; acked: number; errors: number; seconds: number }>((resolve, reject) => {
    child.once('exit', (code) => {
      const line = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0) reject(new Error(`publishers exited with ${code}: ${out}`));
      else resolve(JSON.parse(line));
    });
  });
}

type PhaseResult = {
  readonly name: string;
  readonly seconds: number;
  readonly perSecond: number;
  readonly publishS: number;
};

async function phase(
  name: string,
  url: string,
  devices: { id: string; password: string }[],
  counted: () => Promise<number>,
): Promise<PhaseResult> {
  const base = await counted();
  const started = performance.now();
  const published = publish(url, devices);
  let publishS = 0;
  let failed: unknown = null;
  void published.then(
    (result) => {
      publishS = result.seconds;
      if (result.acked !== TOTAL) failed = new Error(`${name}: the broker acknowledged ${result.acked} of ${TOTAL}`);
    },
    (error: unknown) => {
      failed = error;
    },
  );
  for (;;) {
    if (failed) throw failed;
    const got = (await counted()) - base;
    if (got >= TOTAL) break;
    if (performance.now() - started > PHASE_TIMEOUT_MS)
      throw new Error(`${name}: ${got} of ${TOTAL} after ${PHASE_TIMEOUT_MS} ms`);
    await sleep(25);
  }
  const seconds = (performance.now() - started) / 1000;
  await published;
  const result = { name, seconds, perSecond: TOTAL / seconds, publishS };
  console.log(
    `${name.padEnd(12)} ${TOTAL} msgs stored in ${seconds.toFixed(2)} s = ${Math.round(result.perSecond)} msg/s ` +
      `(publishers done in ${publishS.toFixed(2)} s)`,
  );
  return result;
}

const broker = await startDynsecMosquitto({ extraConfig: ['max_queued_messages 0'] });
const databaseName = `edgeloop_bench_scale_${process.pid}_${randomBytes(3).toString('hex')}`;
const adminDb = new pg.Client({ connectionString: PG_ADMIN_URL });
await adminDb.connect();
await adminDb.query(`CREATE DATABASE ${databaseName}`);
const databaseUrl = (() => {
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${databaseName}`;
  return url.toString();
})();
const dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-bench-scale-'));
const setup: ReplicaSetup = {
  brokerUrl: broker.url,
  brokerUsername: broker.admin.username,
  brokerPassword: broker.admin.password,
  databaseUrl,
  dataDir,
  adminToken: `bench-scale-${randomBytes(12).toString('hex')}`,
};
const replicas: Replica[] = [];
const db = new pg.Client({ connectionString: databaseUrl });
let bareClient: mqtt.MqttClient | null = null;

try {
  console.log(
    `bench:scale: ${DEVICES} devices x ${PER_DEVICE} QoS 1 telemetry per phase, window ${WINDOW}, ` +
      `${cpus().length} cores, Mosquitto ${broker.url} (dynsec), PostgreSQL ${databaseName}`,
  );
  // Enrollment through replica 1, which then goes, its session with it.
  const enroller = await startReplica(setup, 'bench-scale-1');
  await db.connect();
  const api = createApiClient({ baseUrl: enroller.http, token: setup.adminToken });
  const devices: { id: string; password: string }[] = [];
  const enrollStarted = performance.now();
  for (let i = 0; i < DEVICES; i += 10) {
    const ids = Array.from({ length: Math.min(10, DEVICES - i) }, (_, j) => `scale-${String(i + j).padStart(5, '0')}`);
    const enrolled = await Promise.all(ids.map((id) => unwrap(api.devices.enroll({ id, labels: { bench: 'scale' } }))));
    for (const [j, result] of enrolled.entries()) devices.push({ id: ids[j]!, password: result.credentials.password });
  }
  const enrollS = (performance.now() - enrollStarted) / 1000;
  console.log(
    `enrolled ${DEVICES} devices in ${enrollS.toFixed(1)} s (${((enrollS * 1000) / DEVICES).toFixed(0)} ms each)`,
  );
  if ((await enroller.stop()) !== 0) throw new Error(`replica 1 did not stop cleanly: ${enroller.log()}`);
  const purge = await mqtt.connectAsync(broker.url, {
    clientId: 'bench-scale-1',
    ...broker.admin,
    protocolVersion: 5,
    clean: true,
    reconnectPeriod: 0,
  });
  await purge.endAsync();

  // The bare counter: its own dynsec client, a shared subscription of its own, counting only.
  const adminClient = await mqtt.connectAsync(broker.url, {
    clientId: 'bench-scale-admin',
    ...broker.admin,
    protocolVersion: 5,
    reconnectPeriod: 0,
  });
  const admin = await createDynsecAdmin({ client: adminClient });
  const barePassword = randomBytes(18).toString('base64url');
  const errors = await admin.send([
    {
      command: 'createRole',
      rolename: 'bare-counter',
      acls: [
        { acltype: 'subscribePattern', topic: '$share/bare/fleet/v1/devices/+/telemetry', allow: true },
        { acltype: 'subscribePattern', topic: 'fleet/v1/devices/+/telemetry', allow: true },
        { acltype: 'publishClientReceive', topic: 'fleet/v1/devices/#', allow: true },
      ],
    },
    {
      command: 'createClient',
      username: 'bare-counter',
      password: barePassword,
      roles: [{ rolename: 'bare-counter' }],
    },
  ]);
  if (errors.some((error) => error !== null)) throw new Error(`dynsec refused the bare counter: ${errors.join(', ')}`);
  await adminClient.endAsync();
  let bareReceived = 0;
  bareClient = await mqtt.connectAsync(broker.url, {
    clientId: 'bench-scale-bare',
    username: 'bare-counter',
    password: barePassword,
    protocolVersion: 5,
    clean: true,
    reconnectPeriod: 0,
  });
  bareClient.on('error', () => {});
  bareClient.on('message', () => {
    bareReceived++;
  });
  const granted = await bareClient.subscribeAsync('$share/bare/fleet/v1/devices/+/telemetry', { qos: 1 });
  if (granted.some((grant) => grant.qos >= 0x80)) throw new Error('the broker refused the bare subscription');
  const bare = await phase('bare', broker.url, devices, () => Promise.resolve(bareReceived));
  // Clean start, no expiry: its session goes with it.
  await bareClient.endAsync();
  bareClient = null;

  const stored = () => countStored(db, 'telemetry');
  const results: PhaseResult[] = [];
  for (let n = 1; n <= 3; n++) {
    const replica = await startReplica(setup, `bench-scale-${n}`);
    replicas.push(replica);
    const accepted = () =>
      Promise.all(replicas.map((r) => metricTotal(r, setup.adminToken, 'edgeloop_ingest_accepted_total')));
    const before = await accepted();
    results.push(await phase(`${n} replica${n > 1 ? 's' : ''}`, broker.url, devices, stored));
    const after = await accepted();
    console.log(`             stored by replica: ${after.map((total, i) => total - (before[i] ?? 0)).join(' / ')}`);
  }

  const one = results[0]!;
  for (const result of results) {
    const replicasCount = results.indexOf(result) + 1;
    reportResult({
      bench: 'bench:scale',
      metric: `stored QoS 1 telemetry, ${replicasCount} replica${replicasCount > 1 ? 's' : ''} vs bare counter`,
      value:
        `${Math.round(result.perSecond)} msg/s vs ${Math.round(bare.perSecond)} msg/s: ${(result.perSecond / bare.perSecond).toFixed(2)}` +
        (replicasCount > 1 ? `; vs 1 replica: ${(result.perSecond / one.perSecond).toFixed(2)}` : ''),
    });
  }
  console.log(
    `On ${cpus().length} cores the replicas, Mosquitto, PostgreSQL and the publishers share the CPUs: ` +
      `2 and 3 replicas cannot scale linearly here (ideal: 2.00 and 3.00 vs 1 replica).`,
  );
} finally {
  bareClient?.end(true);
  await Promise.all(replicas.map((replica) => replica.stop()));
  await db.end().catch(() => undefined);
  await adminDb.query(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`).catch(() => undefined);
  await adminDb.end();
  await broker.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(0);
