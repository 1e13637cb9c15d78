// npm run bench:rollout — how fast a failing canary is reverted, and what jitter does to downloads.
//
//   A. A bad model (inference latency x3, detections -60%) rolled out to a simulated fleet whose
//      devices run the agent's real model manager. Measured: time from the first failing canary
//      gate window (the SSE `rollout.verdict` event) to every canary device running the previous
//      model again, against gate interval x failing windows required (target <= 1.2x).
//   B. Peak concurrent model downloads when a stage hands the model to every device at once,
//      without and with jitter (each device's start spread over `jitterS`).
//
// Environment: BENCH_DEVICES (300), BENCH_MODEL_BYTES (4 MiB).
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ApiClient, createApiClient, type ModelRef, type ServerEvent, unwrap } from '@edgeloop/protocol';
import { createFleet, type Fleet } from '@edgeloop/simulator';
import { createModelKit, type ModelKit } from '../simulator/test/model-kit.ts';
import { freePort, spawnControlPlane } from '../simulator/test/support.ts';
import { reportResult } from './report.ts';

const DEVICES = Number(process.env.BENCH_DEVICES ?? 300);
const MODEL_BYTES = Number(process.env.BENCH_MODEL_BYTES ?? 4 * 1024 * 1024);
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

type Setup = {
  url: string;
  token: string;
  kit: ModelKit;
  fleet: Fleet;
  v1: ModelRef;
  cp: ChildProcess;
  client: ApiClient;
  stop(): Promise<void>;
};

async function setUp(label: string): Promise<Setup> {
  const work = mkdtempSync(join(tmpdir(), `edgeloop-bench-rollout-${label}-`));
  const token = `bench-${randomBytes(12).toString('hex')}`;
  const httpPort = await freePort();
  const mqttPort = await freePort();
  const url = `http://127.0.0.1:${httpPort}`;
  const kit = createModelKit(() => url, token);
  const cp = (
    await spawnControlPlane({
      httpPort,
      mqttPort,
      dataDir: join(work, 'cp'),
      token,
      trustedKeys: kit.publicKeyPath,
      rolloutsTickMs: 100,
    })
  ).child;
  const client = createApiClient({ baseUrl: url, token });
  const v1 = await kit.publish('det', '1.0.0', 1);
  const fleet = createFleet({
    controlPlaneUrl: url,
    token,
    devices: DEVICES,
    prefix: `b${label}`,
    sites: ['lyon', 'oslo', 'porto'],
    labels: { bench: label },
    keepaliveS: 30,
    telemetryIntervalS: 1,
    cameraFps: 15,
    outboxMaxBytes: 256 * 1024,
    connectRate: 500,
    models: { trustedKeyPems: [kit.publicKeyPem], local: v1, healthCheckMs: 300 },
  });
  await fleet.enroll();
  await fleet.start();
  await fleet.waitFor((stats) => stats.connected === DEVICES, 120_000);
  return {
    url,
    token,
    kit,
    fleet,
    v1,
    cp,
    client,
    async stop() {
      await fleet.stop({ kill: true });
      cp.kill('SIGKILL');
      await new Promise((done) => cp.once('exit', done));
      kit.dispose();
      rmSync(work, { recursive: true, force: true });
    },
  };
}

/** Follows the SSE stream and remembers when each event arrived; resolves once the stream is open. */
async function watchEvents(setup: Setup, signal: AbortSignal) {
  const seen: (ServerEvent & { receivedAt: number })[] = [];
  const stream = await unwrap(setup.client.openEvents({ types: ['rollout.verdict', 'rollout.rolled-back'], signal }));
  void (async () => {
    try {
      for await (const event of stream) seen.push({ ...event, receivedAt: Date.now() });
    } catch {
      // aborted
    }
  })();
  return seen;
}

const onModel = (fleet: Fleet, ids: readonly string[], model: ModelRef) => {
  const byId = new Map(fleet.devices.map((device) => [device.id, device]));
  return ids.filter((id) => byId.get(id)?.agent?.models?.report().active?.sha256 === model.sha256).length;
};

async function revertLatency(gateIntervalS: number, failingWindows: number) {
  const setup = await setUp(`a${gateIntervalS}`);
  try {
    setup.fleet.setModelBehaviour('det@2.0.0', { latencyFactor: 3, detectionFactor: 0.4 });
    const v2 = await setup.kit.publish('det', '2.0.0', 2);
    const controller = new AbortController();
    const events = await watchEvents(setup, controller.signal);
    const created = await unwrap(
      setup.client.rollouts.create({
        modelId: v2.id,
        selector: { labels: {} },
        stages: [
          { name: 'canary', kind: 'canary' },
          { name: '100%', kind: 'percent', percent: 100 },
        ],
        canary: { perGroup: 3, minSize: 10, maxSize: 30 },
        evidence: { minDevices: 3, minReportingShare: 0.8, minFrames: 50, soakS: 2, failMinS: 0 },
        // Gate windows are consecutive and judged once each: the window is the evaluation interval.
        gates: { windowS: gateIntervalS, failingWindowsRequired: failingWindows },
      }),
    );
    const canary = created.cohorts.canary;
    const deadline = Date.now() + 180_000;
    let firstFail: number | null = null;
    let allBack: number | null = null;
    let rolledBackAt: number | null = null;
    while (Date.now() < deadline && allBack === null) {
      await sleep(20);
      if (firstFail === null) {
        const fail = events.find((event) => event.type === 'rollout.verdict' && event.data.verdict === 'fail');
        if (fail) firstFail = fail.receivedAt;
      }
      rolledBackAt ??= events.find((event) => event.type === 'rollout.rolled-back')?.receivedAt ?? null;
      if (firstFail !== null && rolledBackAt !== null && onModel(setup.fleet, canary, setup.v1) === canary.length) {
        allBack = Date.now();
      }
    }
    controller.abort();
    if (firstFail === null || allBack === null || rolledBackAt === null)
      throw new Error('the bad model was not rolled back in time');
    const bound = gateIntervalS * failingWindows * 1000;
    return {
      gateIntervalS,
      failingWindows,
      canary: canary.length,
      firstFailToRollbackMs: rolledBackAt - firstFail,
      firstFailToAllRevertedMs: allBack - firstFail,
      ratio: (allBack - firstFail) / bound,
    };
  } finally {
    await setup.stop();
  }
}

async function downloadPeak(jitterS: number) {
  const setup = await setUp(`b${jitterS}`);
  try {
    const v2 = await setup.kit.publish('det', '2.0.0', 2, MODEL_BYTES);
    const started = Date.now();
    const created = await unwrap(
      setup.client.rollouts.create({
        modelId: v2.id,
        selector: { labels: {} },
        stages: [{ name: 'everyone', kind: 'percent', percent: 100 }],
        evidence: { minDevices: 3, minReportingShare: 0.8, minFrames: 10, soakS: 1 },
        gates: { windowS: 4 },
        jitterS,
      }),
    );
    const deadline = Date.now() + 300_000;
    const everyone = setup.fleet.devices.map((device) => device.id);
    while (Date.now() < deadline && onModel(setup.fleet, everyone, v2) < DEVICES) await sleep(100);
    void created;
    const seconds = (Date.now() - started) / 1000;
    const metrics = await unwrap(setup.client.metrics());
    const value = (name: string) =>
      Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(metrics)?.[1] ?? Number.NaN);
    return {
      jitterS,
      devicesUpdated: onModel(setup.fleet, everyone, v2),
      seconds,
      peak: value('edgeloop_model_downloads_peak'),
      bytesServed: value('edgeloop_model_download_bytes_total'),
    };
  } finally {
    await setup.stop();
  }
}

console.log(`bench:rollout on ${process.version}: ${DEVICES} simulated devices running the agent's model manager\n`);
console.log('A. first failing canary window -> every canary back on the previous model');
for (const [interval, windows] of [
  [2, 2],
  [4, 2],
  [2, 3],
] as const) {
  const a = await revertLatency(interval, windows);
  console.log(
    `  gate interval ${a.gateIntervalS} s x ${a.failingWindows} failing windows = ${a.gateIntervalS * a.failingWindows} s bound; canary ${a.canary} devices: ` +
      `rollback decided after ${(a.firstFailToRollbackMs / 1000).toFixed(2)} s, all canaries reverted after ${(a.firstFailToAllRevertedMs / 1000).toFixed(2)} s ` +
      `-> ${a.ratio.toFixed(2)}x  (target <= 1.2x: ${a.ratio <= 1.2 ? 'meets target' : 'MISSES target'})`,
  );
  reportResult({
    bench: 'bench:rollout',
    metric: `first failing canary window -> all canaries reverted, vs gate ${a.gateIntervalS} s x ${a.failingWindows} windows`,
    value: `${(a.firstFailToAllRevertedMs / 1000).toFixed(2)} s: ${a.ratio.toFixed(2)}x`,
    target: '<= 1.2x',
    met: a.ratio <= 1.2,
  });
}
console.log(
  `\nB. peak concurrent downloads, one stage handing a ${(MODEL_BYTES / 2 ** 20).toFixed(1)} MiB model to all ${DEVICES} devices`,
);
for (const jitterS of [0, 30]) {
  const b = await downloadPeak(jitterS);
  console.log(
    `  jitter ${String(b.jitterS).padStart(2)} s: peak ${b.peak} concurrent downloads; ${b.devicesUpdated} devices updated in ${b.seconds.toFixed(1)} s; ${(b.bytesServed / 2 ** 20).toFixed(0)} MiB served`,
  );
  reportResult({
    bench: 'bench:rollout',
    metric: `peak concurrent model downloads, one stage to ${DEVICES} devices, jitter ${b.jitterS} s`,
    value: `${b.peak}`,
  });
}
process.exit(0);
