// npm run bench:ingest — ingest throughput against bare aedes, fleet-scale lag and memory, overload.
//
//   (a) bare aedes 1.2.0 fan-in at QoS 1 to a plain counting subscriber
//   (b) the control plane's ingest (validated, deduplicated, stored in SQLite, PUBACK after store)
//       with the same publishers; ratio b/a (target >= 0.9, issue 14)
//   (c) 5,000 simulated devices at one telemetry message per 10 s: p99 publish-to-stored lag
//       (target < 1 s), messages lost (target 0), control-plane RSS per connected device
//       (target <= 25 KiB), simulator RSS per device (target >= 50,000 devices per GiB, issue 14)
//   (d) a 2x overload (QoS 0 and QoS 1 offered at twice (b)): the broker must not crash; it sheds
//       QoS 0 (counted) and pushes back on QoS 1; the largest event-loop stall of each flood
//       (edgeloop_event_loop_delay_max_seconds) must stay <= 100 ms (issue 14).
//
// Environment: BENCH_DEVICES (5000), BENCH_STEADY_S (40), BENCH_MESSAGES (50000), BENCH_PARTS (ab,c,d;
// b alone runs only the control plane's rounds, for a profile).
import { type ChildProcess, execFile, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import { createControlPlane, loadConfig } from '@edgeloop/control-plane';
import { createApiClient, fleetFilter, unwrap } from '@edgeloop/protocol';
import { Aedes } from 'aedes';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import pino from 'pino';
import { reportResult } from './report.ts';

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
const PUBLISHERS = 20;
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 50_000);
const FLEET = Number(process.env.BENCH_DEVICES ?? 5000);
const STEADY_S = Number(process.env.BENCH_STEADY_S ?? 40);
const run = promisify(execFile);
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const KiB = 1024;

type PublisherResult = { published: number; acked: number; errors: number; seconds: number };

async function publishers(job: Record<string, unknown>): Promise<PublisherResult> {
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', join(root, 'bench/ingest-publishers.ts'), JSON.stringify(job)],
    {
      maxBuffer: 1 << 20,
      timeout: 600_000,
    },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as PublisherResult;
}

function metric(text: string, name: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name) && (line[name.length] === ' ' || line[name.length] === '{')) {
      total += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
    }
  }
  return total;
}

function metricLines(text: string, pattern: RegExp): string[] {
  return text.split('\n').filter((line) => !line.startsWith('#') && pattern.test(line));
}

// ------------------------------------------------------------------------------------------------
async function bareAedes(): Promise<number> {
  const broker = await Aedes.createBroker({});
  const server = createServer(broker.handle);
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const port = (server.address() as { port: number }).port;
  const subscriber = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'counter', protocolVersion: 4 });
  let received = 0;
  let allReceived: () => void = () => {};
  const done = new Promise<void>((resolveDone) => (allReceived = resolveDone));
  subscriber.on('message', () => {
    received += 1;
    if (received === MESSAGES) allReceived();
  });
  await subscriber.subscribeAsync(fleetFilter('telemetry'), { qos: 1 });
  const devices = Array.from({ length: PUBLISHERS }, (_, i) => ({ id: `pub-${i}`, password: 'x' }));
  const started = performance.now();
  const result = await publishers({
    url: `mqtt://127.0.0.1:${port}`,
    devices,
    messagesPerDevice: MESSAGES / PUBLISHERS,
    window: 50,
    qos: 1,
    rate: 0,
    seconds: 0,
  });
  await Promise.race([done, sleep(30_000)]);
  const seconds = (performance.now() - started) / 1000;
  await subscriber.endAsync();
  await new Promise<void>((closed) => broker.close(() => closed()));
  server.close();
  if (received !== MESSAGES || result.acked !== MESSAGES) {
    throw new Error(`bare aedes: published ${result.acked}, received ${received} of ${MESSAGES}`);
  }
  return MESSAGES / seconds;
}

async function inProcessControlPlane() {
  const dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-bench-'));
  const token = `bench-${randomBytes(16).toString('hex')}`;
  const config = loadConfig({
    env: process.env,
    overrides: { httpPort: 0, mqttPort: 0, host: '127.0.0.1', dataDir, adminToken: token, logLevel: 'silent' },
  });
  const cp = createControlPlane(config, { logger: pino({ level: 'silent' }) });
  const started = await cp.start();
  // The typed client over the app itself: no socket between the bench and the API.
  const client = createApiClient({
    baseUrl: 'http://control-plane.bench',
    token,
    fetch: async (input, init) => cp.internals.app.request(String(input), init),
  });
  const enroll = async (prefix: string, count: number) => {
    const devices: { id: string; password: string }[] = [];
    for (let i = 0; i < count; i++) {
      const enrolled = await unwrap(client.devices.enroll({ id: `${prefix}-${i}`, labels: {} }));
      devices.push({ id: enrolled.device.id, password: enrolled.credentials.password });
    }
    return devices;
  };
  const metricsText = () => unwrap(client.metrics());
  return {
    cp,
    started,
    dataDir,
    token,
    enroll,
    metricsText,
    async stop() {
      await cp.stop();
    },
    count(sql: string): number {
      const db = new Database(join(dataDir, 'edgeloop.db'), { readonly: true });
      try {
        return (db.prepare(sql).get() as { n: number }).n;
      } finally {
        db.close();
      }
    },
    remove() {
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function controlPlaneIngest(): Promise<{ rate: number; metrics: string }> {
  const cp = await inProcessControlPlane();
  const devices = await cp.enroll('pub', PUBLISHERS);
  const started = performance.now();
  const result = await publishers({
    url: cp.started.mqttUrl,
    devices,
    messagesPerDevice: MESSAGES / PUBLISHERS,
    window: 50,
    qos: 1,
    rate: 0,
    seconds: 0,
  });
  const seconds = (performance.now() - started) / 1000;
  const metrics = await cp.metricsText();
  await cp.stop();
  const stored = cp.count("SELECT COUNT(*) AS n FROM messages WHERE channel = 'telemetry'");
  cp.remove();
  if (result.acked !== MESSAGES || stored !== MESSAGES) {
    throw new Error(`control plane: acked ${result.acked}, stored ${stored} of ${MESSAGES}`);
  }
  return { rate: MESSAGES / seconds, metrics };
}

// ------------------------------------------------------------------------------------------------
type FleetReply = Record<string, unknown> & { type: string };

function ask(child: ChildProcess, request: unknown, expect: string, timeoutMs = 300_000): Promise<FleetReply> {
  return new Promise((done, reject) => {
    const timer = setTimeout(() => reject(new Error(`simulator did not answer ${expect} in time`)), timeoutMs);
    const onMessage = (message: FleetReply) => {
      if (message.type === 'error') {
        clearTimeout(timer);
        child.off('message', onMessage);
        reject(new Error(String(message.message)));
      } else if (message.type === expect) {
        clearTimeout(timer);
        child.off('message', onMessage);
        done(message);
      }
    };
    child.on('message', onMessage);
    if (request) child.send(request as never);
  });
}

/** RSS per idle connection of a bare aedes broker: the floor any aedes-based control plane pays. */
async function bareAedesPerConnection(
  count: number,
): Promise<{ perConnection: number; baseline: number; loaded: number }> {
  const broker = fork(join(root, 'bench/bare-broker.ts'), [], {
    execArgv: ['--import', 'tsx', '--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await ask(broker, null, 'ready');
  await sleep(1000);
  const baseline = Number((await ask(broker, { type: 'rss' }, 'rss')).rss);
  const clients = fork(
    join(root, 'bench/idle-clients.ts'),
    [JSON.stringify({ url: `mqtt://127.0.0.1:${ready.port}`, count })],
    {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  await ask(clients, null, 'connected');
  await sleep(5000);
  const loaded = Number((await ask(broker, { type: 'rss' }, 'rss')).rss);
  clients.send({ type: 'stop' });
  broker.send({ type: 'stop' });
  return { perConnection: (loaded - baseline) / count, baseline, loaded };
}

/** RSS after full collections: what the process really holds, not garbage waiting for a GC. */
async function settledRss(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(200);
  }
  return process.memoryUsage.rss();
}

/**
 * The control plane runs in this process (so its memory can be measured after a forced GC, as
 * the bare-aedes peer's is); the simulated fleet runs in a child process with its own memory.
 */
async function fleetScale() {
  const cp = await inProcessControlPlane();
  const url = cp.started.httpUrl;
  await sleep(2000);
  const cpBaseline = await settledRss();

  const sim = fork(
    join(root, 'bench/sim-fleet.ts'),
    [JSON.stringify({ url, token: cp.token, devices: FLEET, telemetryIntervalS: 10, connectRate: 500 })],
    {
      execArgv: ['--import', 'tsx', '--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  const ready = await ask(sim, null, 'ready');
  const simBaseline = Number(ready.rss);
  const enrollStart = performance.now();
  await ask(sim, { type: 'enroll' }, 'enrolled');
  const enrollS = (performance.now() - enrollStart) / 1000;
  const connectStart = performance.now();
  await ask(sim, { type: 'start' }, 'started');
  const connectS = (performance.now() - connectStart) / 1000;
  await sleep(5000);
  await ask(sim, { type: 'stats', resetLag: true }, 'stats');
  await sleep(STEADY_S * 1000);
  const steady = await ask(sim, { type: 'stats' }, 'stats');
  const cpLoaded = await settledRss();
  const simLoaded = Number(steady.rss);
  const metrics = await cp.metricsText();
  const stopped = await ask(sim, { type: 'stop' }, 'stopped');
  await cp.stop();
  const stored = cp.count("SELECT COUNT(*) AS n FROM messages WHERE device_id LIKE 'bench-%' AND seq > 0");
  cp.remove();
  const lag = (steady.stats as { lag: { p50: number; p95: number; p99: number; max: number; count: number } | null })
    .lag;
  return {
    enrollS,
    connectS,
    lag,
    appended: Number(stopped.appended),
    acked: Number(stopped.acked),
    unacked: Number(stopped.unacked),
    stored,
    cpPerDevice: (cpLoaded - cpBaseline) / FLEET,
    cpBaseline,
    cpLoaded,
    simPerDevice: (simLoaded - simBaseline) / FLEET,
    simBaseline,
    simLoaded,
    metrics,
  };
}

// ------------------------------------------------------------------------------------------------
async function overload(rate: number, qos: 0 | 1, seconds: number) {
  const cp = await inProcessControlPlane();
  const devices = await cp.enroll(`flood${qos}`, PUBLISHERS);
  // The stall under the flood alone, not the start and the enrolment before it.
  cp.cp.internals.eventLoop.reset();
  const result = await publishers({
    url: cp.started.mqttUrl,
    devices,
    messagesPerDevice: 0,
    window: 0,
    qos,
    rate,
    seconds,
  });
  const stallMs = cp.cp.internals.eventLoop.maxMs();
  const health = await cp.cp.internals.app.request('/healthz');
  const metrics = await cp.metricsText();
  await cp.stop();
  const stored = cp.count("SELECT COUNT(*) AS n FROM messages WHERE channel = 'telemetry'");
  cp.remove();
  return {
    offered: result.published,
    acked: result.acked,
    stored,
    healthy: health.ok,
    metrics,
    stallMs,
    seconds: result.seconds,
  };
}

// ------------------------------------------------------------------------------------------------
const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const verdict = (ok: boolean) => (ok ? 'meets target' : 'MISSES target');

console.log(`bench:ingest on ${process.version}, ${(await import('node:os')).cpus().length} cores\n`);
const parts = new Set((process.env.BENCH_PARTS ?? 'ab,c,d').split(','));
// (c) first: its memory is measured in this process, before other parts leave freed heap behind.
if (parts.has('c')) {
  console.log(`(c) ${fmt(FLEET)} simulated devices, telemetry every 10 s, ${STEADY_S} s steady window`);
  const c = await fleetScale();
  const lost = c.appended - c.stored;
  console.log(`  enrolled in ${fmt(c.enrollS, 1)} s, all connected in ${fmt(c.connectS, 1)} s`);
  if (c.lag) {
    console.log(
      `  publish-to-stored lag: p50 ${fmt(c.lag.p50)} ms, p95 ${fmt(c.lag.p95)} ms, p99 ${fmt(c.lag.p99)} ms, max ${fmt(c.lag.max)} ms over ${fmt(c.lag.count)} messages  (p99 < 1000 ms: ${verdict(c.lag.p99 < 1000)})`,
    );
  }
  console.log(
    `  messages appended by devices ${fmt(c.appended)}, acknowledged ${fmt(c.acked)}, stored ${fmt(c.stored)}, lost ${fmt(lost)}  (target 0: ${verdict(lost === 0)})`,
  );
  console.log(
    `  control plane RSS ${fmt(c.cpBaseline / 2 ** 20, 1)} MiB -> ${fmt(c.cpLoaded / 2 ** 20, 1)} MiB: ${fmt(c.cpPerDevice / KiB, 1)} KiB per device  (<= 25 KiB: ${verdict(c.cpPerDevice <= 25 * KiB)})`,
  );
  const peer = await bareAedesPerConnection(FLEET);
  console.log(
    `  peer: bare aedes 1.2 with ${fmt(FLEET)} idle connections: RSS ${fmt(peer.baseline / 2 ** 20, 1)} MiB -> ${fmt(peer.loaded / 2 ** 20, 1)} MiB: ${fmt(peer.perConnection / KiB, 1)} KiB per connection; control plane / bare aedes = ${fmt(c.cpPerDevice / peer.perConnection, 2)}`,
  );
  const perGiB = 2 ** 30 / c.simPerDevice;
  console.log(
    `  simulator RSS ${fmt(c.simBaseline / 2 ** 20, 1)} MiB -> ${fmt(c.simLoaded / 2 ** 20, 1)} MiB: ${fmt(c.simPerDevice / KiB, 1)} KiB per device = ${fmt(perGiB)} devices per GiB  (>= 50,000: ${verdict(perGiB >= 50_000)})`,
  );
  if (c.lag)
    reportResult({
      bench: 'bench:ingest',
      metric: `(c) ${fmt(FLEET)} simulated devices: publish-to-stored lag p99, messages lost`,
      value: `p99 ${fmt(c.lag.p99)} ms, lost ${fmt(lost)} of ${fmt(c.appended)}`,
      target: 'p99 < 1 s, lost 0',
      met: c.lag.p99 < 1000 && lost === 0,
    });
  reportResult({
    bench: 'bench:ingest',
    metric: '(c) control-plane RSS per connected device, vs bare aedes per idle connection',
    value: `${fmt(c.cpPerDevice / KiB, 1)} vs ${fmt(peer.perConnection / KiB, 1)} KiB`,
    target: '<= 25 KiB',
    met: c.cpPerDevice <= 25 * KiB,
  });
  reportResult({
    bench: 'bench:ingest',
    metric: '(c) simulator devices per GiB (RSS growth per device)',
    value: `${fmt(perGiB)} (${fmt(c.simPerDevice / KiB, 1)} KiB per device)`,
    target: '>= 50,000',
    met: perGiB >= 50_000,
  });
  for (const line of metricLines(c.metrics, /flush_max|event_loop|memory|heap/)) console.log(`      ${line}`);
}
if (parts.has('b')) {
  // (b) alone, for a profile of the control plane's ingest (node --cpu-prof) without the peer's frames.
  const rates: number[] = [];
  for (let round = 0; round < 3; round++) rates.push((await controlPlaneIngest()).rate);
  console.log(`\n(b) alone, 3 rounds: ${rates.map((x) => fmt(x)).join(', ')} msg/s`);
}
if (parts.has('ab')) {
  const rounds = 3;
  console.log(
    `\n(a)/(b) ${fmt(MESSAGES)} telemetry messages from ${PUBLISHERS} publishers, QoS 1, 50 in flight each; ${rounds} alternating rounds (this machine's load moves both alike)`,
  );
  const as: number[] = [];
  const bs: { rate: number; metrics: string }[] = [];
  for (let round = 0; round < rounds; round++) {
    as.push(await bareAedes());
    bs.push(await controlPlaneIngest());
  }
  const ratios = bs.map((b, i) => b.rate / (as[i] as number));
  const medianIndex = ratios.indexOf([...ratios].sort((x, y) => x - y)[Math.floor(rounds / 2)] as number);
  const a = as[medianIndex] as number;
  const b = bs[medianIndex] as { rate: number; metrics: string };
  console.log(`  rounds (a / b msg/s): ${as.map((x, i) => `${fmt(x)} / ${fmt(bs[i]?.rate ?? 0)}`).join(', ')}`);
  console.log(`  (a) bare aedes -> counting subscriber:   ${fmt(a)} msg/s  (median round)`);
  console.log(`  (b) control plane ingest -> SQLite:       ${fmt(b.rate)} msg/s`);
  console.log(
    `  b/a = ${fmt(b.rate / a, 2)} (median of ${ratios.map((r) => fmt(r, 2)).join(', ')})  (target >= 0.90: ${verdict(b.rate / a >= 0.9)})`,
  );
  reportResult({
    bench: 'bench:ingest',
    metric: '(a)/(b) stored msg/s, QoS 1: control plane (SQLite, PUBACK after store) vs bare aedes fan-in',
    value: `${fmt(b.rate)} vs ${fmt(a)} msg/s: ${fmt(b.rate / a, 2)}`,
    target: '>= 0.90',
    met: b.rate / a >= 0.9,
  });
  for (const line of metricLines(b.metrics, /flush|event_loop|batch/)) console.log(`      ${line}`);
}
if (parts.has('d')) {
  // Capacity first: QoS 0 offered faster than the control plane can store; what it stores per
  // second is its sustained capacity. Then 2x that capacity, at QoS 0 and at QoS 1.
  const flood = await overload(1_000_000, 0, 5);
  const capacity = flood.stored / flood.seconds;
  console.log(
    `\n(d) overload. Capacity probe: QoS 0 as fast as 20 publishers can send for 5 s: offered ${fmt(flood.offered)}, stored ${fmt(flood.stored)} (${fmt(capacity)} msg/s), dropped and counted ${fmt(metric(flood.metrics, 'edgeloop_ingest_dropped_total'))}, control plane ${flood.healthy ? 'alive' : 'DOWN'}`,
  );
  console.log(`    2x capacity = ${fmt(2 * capacity)} msg/s offered for 10 s:`);
  for (const qos of [0, 1] as const) {
    const d = await overload(2 * capacity, qos, 10);
    console.log(
      `  QoS ${qos}: offered ${fmt(d.offered)} (${fmt(d.offered / d.seconds)} msg/s achieved by the publishers), acknowledged ${fmt(d.acked)}, stored ${fmt(d.stored)}, dropped and counted ${fmt(metric(d.metrics, 'edgeloop_ingest_dropped_total'))}, control plane ${d.healthy ? 'alive (healthz 200)' : 'DOWN'}`,
    );
    console.log(
      `      largest event-loop stall during the flood ${fmt(d.stallMs)} ms  (<= 100 ms: ${verdict(d.stallMs <= 100)}); since the control plane started ${fmt(metric(d.metrics, 'edgeloop_event_loop_delay_max_seconds') * 1000)} ms`,
    );
    reportResult({
      bench: 'bench:ingest',
      metric: `(d) largest event-loop stall, 2x QoS ${qos} flood (${fmt(d.stored)} of ${fmt(d.offered)} offered stored)`,
      value: `${fmt(d.stallMs)} ms`,
      target: '<= 100 ms',
      met: d.stallMs <= 100,
    });
    for (const line of metricLines(d.metrics, /dropped|held|pushback|batch_limit/)) console.log(`      ${line}`);
  }
}
process.exit(0);
