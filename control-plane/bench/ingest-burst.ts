// Ingest numbers (a benchmark, not a test): npx tsx control-plane/bench/ingest-burst.ts
//   (a) bare aedes fan-in at QoS 1 to one counting subscriber, (b) the control plane's ingest of
//   the same burst (acked = stored in SQLite), b/a, max flush ms, event-loop delay p99/max during
//   the burst, and (c) control-plane RSS per connected idle device. The broker / control plane runs
//   in a child process; publishers run here, so they do not share its event loop.
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { encode, messageId, topicFor } from '@edgeloop/protocol';
import mqtt, { type MqttClient } from 'mqtt';

const PUBLISHERS = Number(process.env.PUBLISHERS ?? 20);
const PER_PUBLISHER = Number(process.env.PER_PUBLISHER ?? 1_000);
const IDLE_DEVICES = Number(process.env.IDLE_DEVICES ?? 1_000);
const TELEMETRY_INTERVAL_S = Number(process.env.TELEMETRY_INTERVAL_S ?? 10);
const STEADY_S = Number(process.env.STEADY_S ?? 30);
const SYSTEM = {
  cpu: { loadPct: 12.5, cores: 4 },
  memory: { usedBytes: 1e9, totalBytes: 8e9 },
  disk: { usedBytes: 5e9, totalBytes: 64e9 },
  temperatures: { cpuC: 48, gpuC: null, zones: { 'CPU-therm': 47.5, 'GPU-therm': 45 } },
  uptimeS: 100,
};

type Child = { process: ChildProcess; ask<T>(message: unknown): Promise<T> };

function startChild(): Child {
  const child = fork(new URL('./control-plane-child.ts', import.meta.url), [], {
    execArgv: ['--import', 'tsx', '--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return {
    process: child,
    ask: <T>(message: unknown) =>
      new Promise<T>((resolve) => {
        child.once('message', (reply) => resolve(reply as T));
        child.send(message as never);
      }),
  };
}

function payloads(): string[] {
  const bootId = `boot${randomBytes(6).toString('hex')}`;
  return Array.from({ length: PER_PUBLISHER }, (_, i) =>
    encode('telemetry', {
      msgId: messageId(bootId, i + 1),
      bootId,
      seq: i + 1,
      ts: Date.now(),
      intervalS: 10,
      system: SYSTEM,
    }),
  );
}

/** Publishes every body at QoS 1, pipelined; resolves when all are acked. */
async function burst(clients: MqttClient[], ids: string[], bodies: string[][]): Promise<void> {
  await Promise.all(
    clients.map((client, index) =>
      Promise.all(
        bodies[index]!.map((body) => client.publishAsync(topicFor(ids[index]!, 'telemetry'), body, { qos: 1 })),
      ),
    ),
  );
}

async function bareAedes(): Promise<number> {
  const child = startChild();
  const { mqttUrl } = await child.ask<{ mqttUrl: string }>({ cmd: 'start-aedes' });
  const subscriber = await mqtt.connectAsync(mqttUrl, { clientId: 'counter', protocolVersion: 4 });
  const total = PUBLISHERS * PER_PUBLISHER;
  let count = 0;
  let resolveAll: () => void = () => undefined;
  const all = new Promise<void>((resolve) => {
    resolveAll = resolve;
  });
  subscriber.on('message', () => {
    if (++count === total) resolveAll();
  });
  await subscriber.subscribeAsync('fleet/v1/devices/+/telemetry', { qos: 1 });
  const ids = Array.from({ length: PUBLISHERS }, (_, i) => `bare-${i}`);
  const clients = await Promise.all(ids.map((id) => mqtt.connectAsync(mqttUrl, { clientId: id, protocolVersion: 4 })));
  const bodies = ids.map(payloads);
  const started = performance.now();
  await burst(clients, ids, bodies);
  await all;
  const elapsed = performance.now() - started;
  await Promise.all([...clients, subscriber].map((c) => c.endAsync(true)));
  await child.ask({ cmd: 'stop' });
  child.process.kill();
  return elapsed;
}

async function controlPlaneIngest() {
  const child = startChild();
  const { mqttUrl, passwords } = await child.ask<{ mqttUrl: string; passwords: Record<string, string> }>({
    cmd: 'start-cp',
    devices: PUBLISHERS,
  });
  const ids = Object.keys(passwords);
  const clients = await Promise.all(
    ids.map((id) =>
      mqtt.connectAsync(mqttUrl, { clientId: id, username: id, password: passwords[id], protocolVersion: 4 }),
    ),
  );
  const bodies = ids.map(payloads);
  await child.ask({ cmd: 'reset' });
  const started = performance.now();
  await burst(clients, ids, bodies);
  const elapsed = performance.now() - started;
  const { stats, loop } = await child.ask<{
    stats: { flushes: number; maxBatchRows: number; maxFlushMs: number; accepted: number };
    loop: { p99: number; max: number };
  }>({ cmd: 'stats' });
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await child.ask({ cmd: 'stop' });
  child.process.kill();
  return { elapsed, stats, loop };
}

function rssKiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1] ?? Number.NaN);
}

async function idleDeviceMemory() {
  const child = startChild();
  const { mqttUrl, passwords } = await child.ask<{ mqttUrl: string; passwords: Record<string, string> }>({
    cmd: 'start-cp',
    devices: IDLE_DEVICES,
  });
  await child.ask({ cmd: 'gc' });
  const before = rssKiB(child.process.pid!);
  const clients: MqttClient[] = [];
  for (const [id, password] of Object.entries(passwords)) {
    const client = await mqtt.connectAsync(mqttUrl, {
      clientId: id,
      username: id,
      password,
      protocolVersion: 4,
      keepalive: 30,
    });
    const bootId = `boot${randomBytes(6).toString('hex')}`;
    await client.publishAsync(
      topicFor(id, 'status'),
      encode('status', {
        msgId: messageId(bootId, 1),
        bootId,
        seq: 1,
        ts: Date.now(),
        state: 'online',
        reason: 'birth',
      }),
      { qos: 1, retain: true },
    );
    await client.subscribeAsync([topicFor(id, 'desired'), topicFor(id, 'cmd')], { qos: 1 });
    clients.push(client);
  }
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  await child.ask({ cmd: 'gc' });
  const after = rssKiB(child.process.pid!);

  // Steady state: every device sends one telemetry message per TELEMETRY_INTERVAL_S, jittered;
  // PUBACK comes after the row is stored, so publish-to-ack is publish-to-stored.
  await child.ask({ cmd: 'reset' });
  const lags: number[] = [];
  const ids = Object.keys(passwords);
  const deadline = performance.now() + STEADY_S * 1000;
  await Promise.all(
    clients.map(async (client, index) => {
      const id = ids[index]!;
      const bootId = `boot${randomBytes(6).toString('hex')}`;
      let seq = 1;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * TELEMETRY_INTERVAL_S * 1000));
      while (performance.now() < deadline) {
        seq++;
        const body = encode('telemetry', {
          msgId: messageId(bootId, seq),
          bootId,
          seq,
          ts: Date.now(),
          intervalS: TELEMETRY_INTERVAL_S,
          system: SYSTEM,
        });
        const sent = performance.now();
        await client.publishAsync(topicFor(id, 'telemetry'), body, { qos: 1 });
        lags.push(performance.now() - sent);
        await new Promise((resolve) => setTimeout(resolve, TELEMETRY_INTERVAL_S * 1000));
      }
    }),
  );
  const { loop } = await child.ask<{ loop: { p99: number; max: number } }>({ cmd: 'stats' });
  lags.sort((a, b) => a - b);
  const quantile = (q: number) => lags[Math.min(lags.length - 1, Math.floor(q * lags.length))] ?? Number.NaN;
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await child.ask({ cmd: 'stop' });
  child.process.kill();
  return {
    before,
    after,
    perDeviceKiB: (after - before) / IDLE_DEVICES,
    steady: { messages: lags.length, p50: quantile(0.5), p99: quantile(0.99), max: lags.at(-1) ?? Number.NaN, loop },
  };
}

const total = PUBLISHERS * PER_PUBLISHER;
const bare = await bareAedes();
const cp = await controlPlaneIngest();
const bareRate = total / (bare / 1000);
const cpRate = total / (cp.elapsed / 1000);
console.log(`burst: ${PUBLISHERS} publishers x ${PER_PUBLISHER} QoS 1 telemetry messages (${total})`);
console.log(`(a) bare aedes fan-in to a counting subscriber: ${bareRate.toFixed(0)} msg/s (${bare.toFixed(0)} ms)`);
console.log(`(b) control plane, acked = stored in SQLite:    ${cpRate.toFixed(0)} msg/s (${cp.elapsed.toFixed(0)} ms)`);
console.log(`    b/a = ${(cpRate / bareRate).toFixed(2)}`);
console.log(
  `    ${cp.stats.accepted} stored in ${cp.stats.flushes} flushes, max batch ${cp.stats.maxBatchRows} rows, max flush ${cp.stats.maxFlushMs.toFixed(1)} ms`,
);
console.log(
  `    control-plane event-loop delay during the burst: p99 ${cp.loop.p99.toFixed(1)} ms, max ${cp.loop.max.toFixed(1)} ms`,
);
const memory = await idleDeviceMemory();
console.log(
  `(c) ${IDLE_DEVICES} idle connected devices: RSS ${(memory.before / 1024).toFixed(1)} -> ${(memory.after / 1024).toFixed(1)} MiB, ${memory.perDeviceKiB.toFixed(1)} KiB per device`,
);
const steady = memory.steady;
console.log(
  `    then one message per ${TELEMETRY_INTERVAL_S} s each for ${STEADY_S} s: ${steady.messages} messages, publish-to-stored p50 ${steady.p50.toFixed(1)} ms, p99 ${steady.p99.toFixed(1)} ms, max ${steady.max.toFixed(1)} ms; event-loop delay p99 ${steady.loop.p99.toFixed(1)} ms, max ${steady.loop.max.toFixed(1)} ms`,
);
