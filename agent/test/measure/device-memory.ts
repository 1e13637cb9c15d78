// Measures memory per simulated device: N agents built by createAgent with a memory outbox, a
// memory desired store and a simulated system reader (what the simulator will do), each with its
// own mqtt.js client and TCP connection, against aedes.
//
//   node --expose-gc --import tsx agent/test/measure/device-memory.ts [devices=1000] [broker=child|inprocess]
//
// broker=child runs aedes in a child process so the numbers are the devices' alone; inprocess
// runs it in this process (its per-connection memory is then included).
import { fork } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { SystemMetrics } from '@edgeloop/protocol';
import { Aedes } from 'aedes';
import { type Agent, createAgent } from '../../src/agent.ts';
import { loadConfig } from '../../src/config.ts';
import { createMemoryDesiredStore } from '../../src/desired-state.ts';
import { createMemoryOutbox } from '../../src/outbox.ts';

async function startAedes(): Promise<number> {
  const broker = await Aedes.createBroker({
    authenticate: (_client, _username, password, done) => done(null, password?.toString() === 'pw'),
  });
  const server = net.createServer(broker.handle as (socket: net.Socket) => void);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return (server.address() as net.AddressInfo).port;
}

if (process.argv.includes('--broker-child')) {
  const port = await startAedes();
  process.send?.({ port });
} else {
  const devices = Number(process.argv[2] ?? 1000);
  const mode = process.argv[3] ?? 'child';
  let port: number;
  let child: ReturnType<typeof fork> | undefined;
  if (mode === 'inprocess') {
    port = await startAedes();
  } else {
    child = fork(fileURLToPath(import.meta.url), ['--broker-child'], { execArgv: ['--import', 'tsx'] });
    port = await new Promise<number>((resolve) => child!.once('message', (m) => resolve((m as { port: number }).port)));
  }
  const gc = (globalThis as { gc?: () => void }).gc;
  const settle = async () => {
    for (let i = 0; i < 3; i += 1) {
      gc?.();
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };
  const system: SystemMetrics = {
    cpu: { loadPct: 20, cores: 6 },
    memory: { usedBytes: 2e9, totalBytes: 8e9 },
    disk: { usedBytes: 1e10, totalBytes: 6.4e10 },
    temperatures: { cpuC: 48, gpuC: 46, zones: { 'CPU-therm': 48, 'GPU-therm': 46 } },
    gpu: { loadPct: 35 },
    uptimeS: 1000,
  };
  await settle();
  const before = process.memoryUsage();
  const agents: Agent[] = [];
  const started = Date.now();
  for (let i = 0; i < devices; i += 1) {
    const deviceId = `sim-${String(i).padStart(5, '0')}`;
    const loaded = loadConfig({
      fileText: JSON.stringify({
        deviceId,
        mqtt: { url: `mqtt://127.0.0.1:${port}`, password: 'pw', keepaliveS: 60 },
        dataDir: '/nonexistent',
        telemetry: { intervalS: 10 },
      }),
      env: {},
    });
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.error));
    const agent = createAgent({
      config: loaded.value,
      outbox: createMemoryOutbox({ maxBytes: 256 * 1024 }),
      desiredStore: createMemoryDesiredStore(),
      readSystem: async () => system,
      hardware: { arch: 'arm64', platform: 'linux' },
    });
    agents.push(agent);
    await agent.start();
    if (i % 100 === 99) await new Promise((resolve) => setImmediate(resolve));
  }
  const deadline = Date.now() + 120_000;
  while (agents.some((agent) => agent.link.state !== 'connected' || agent.outbox.stats().pending > 0)) {
    if (Date.now() > deadline) throw new Error('devices did not all connect and drain');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const connectedMs = Date.now() - started;
  await settle();
  const after = process.memoryUsage();
  const kib = (bytes: number) => (bytes / 1024).toFixed(1);
  const sent = agents.reduce((sum, agent) => sum + agent.link.stats().acked, 0);
  console.log(
    JSON.stringify(
      {
        devices,
        broker: mode,
        connectedAndDrainedMs: connectedMs,
        messagesAcked: sent,
        rssPerDeviceKiB: Number(kib((after.rss - before.rss) / devices)),
        heapUsedPerDeviceKiB: Number(kib((after.heapUsed - before.heapUsed) / devices)),
        externalPerDeviceKiB: Number(kib((after.external - before.external) / devices)),
        devicesPerGiB: Math.floor((1024 * 1024 * 1024) / ((after.rss - before.rss) / devices)),
        rssTotalMiB: Number((after.rss / 1048576).toFixed(1)),
      },
      null,
      2,
    ),
  );
  await Promise.all(agents.map((agent) => agent.stop({ graceful: false })));
  child?.kill();
  process.exit(0);
}
