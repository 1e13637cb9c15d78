// Cost of one rollout gate evaluation and one engine tick at fleet scale (not a test).
//
//   npx tsx control-plane/bench/rollout-window.ts        (BENCH_DEVICES=1000, BENCH_ROWS=30)
//
// For each store (SQLite file; PostgreSQL when one answers on 127.0.0.1:5432):
//   window   telemetrySamples over the evaluation window (BENCH_ROWS messages per device inside
//            it, three times as many older ones outside it) + buildDeviceWindows
//   tick     one full engine pass over a running rollout targeting every device (reads the
//            rollout, assignments and device snapshots, evaluates, plans, writes the verdict),
//            and one between evaluations (reads and plans only)
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { CONFIDENCE_BINS } from '@edgeloop/protocol';
import pg from 'pg';
import pino from 'pino';
import { createPostgresStore } from '../src/db/postgres/store.ts';
import type { NewMessage, Store } from '../src/db/repositories.ts';
import { createSqliteStore } from '../src/db/sqlite/store.ts';
import { initialLiveState } from '../src/device-state.ts';
import { createEventBus } from '../src/events.ts';
import { createMetricsRegistry } from '../src/metrics.ts';
import { selectCohorts } from '../src/rollouts/cohorts.ts';
import { createRolloutEngine } from '../src/rollouts/engine.ts';
import { RolloutSpec } from '../src/rollouts/spec.ts';
import { buildDeviceWindows } from '../src/rollouts/windows.ts';

const DEVICES = Number(process.env.BENCH_DEVICES ?? 1000);
const ROWS = Number(process.env.BENCH_ROWS ?? 30);
const RUNS = 7;
const T0 = 1_800_000_000_000;
const INTERVAL_MS = 10_000;
const OLD = { id: 'det@1.0.0', name: 'det', version: '1.0.0', sha256: 'a'.repeat(64) };
const NEW = { id: 'det@2.0.0', name: 'det', version: '2.0.0', sha256: 'b'.repeat(64) };

function telemetryBody(deviceId: string, seq: number, onNew: boolean): string {
  const frames = 250;
  return JSON.stringify({
    msgId: `${deviceId}-${seq}`,
    bootId: 'bootbench1',
    seq,
    ts: T0,
    intervalS: 10,
    system: {
      cpu: { loadPct: 40, cores: 4 },
      memory: { usedBytes: 1e9, totalBytes: 4e9 },
      disk: { usedBytes: 1e10, totalBytes: 6.4e10 },
      temperatures: { cpuC: 55, gpuC: 50, zones: { 'CPU-therm': 55, 'GPU-therm': 50 } },
      uptimeS: 1000,
    },
    pipeline: {
      windowS: 10,
      framesIn: frames,
      framesProcessed: frames,
      framesDropped: 0,
      inferenceErrors: 0,
      fps: 25,
      latencyMs: Object.fromEntries(
        ['queue', 'preprocess', 'inference', 'postprocess', 'total'].map((stage) => [
          stage,
          { count: frames, p50: 10, p95: 20, p99: 25, max: 30 },
        ]),
      ),
      detectionsPer1000: { car: 1500, person: 700, bicycle: 120 },
      confidenceHistogram: Array.from({ length: CONFIDENCE_BINS }, (_, bin) => (bin === 15 ? 80 : 5)),
      nearThresholdShare: 0.1,
      lastInferenceAt: T0,
      provider: { requested: ['cuda', 'cpu'], active: 'cuda' },
      model: onNew ? NEW : OLD,
      camera: { black: false, frozen: false, blurred: false, sceneChange: false, brightness: 120, sharpness: 300 },
    },
  });
}

async function fill(store: Store, ids: readonly string[]): Promise<{ windowFrom: number; now: number }> {
  for (const id of ids) {
    const enrolled = await store.devices.enroll({ id, labels: { fleet: 'bench' }, secretHash: 'x', now: T0 });
    if (!enrolled.ok) throw new Error(enrolled.error.message);
  }
  const total = ROWS * 4;
  const now = T0 + total * INTERVAL_MS;
  const windowFrom = now - ROWS * INTERVAL_MS;
  let batch: NewMessage[] = [];
  for (let round = 0; round < total; round++) {
    for (const [index, deviceId] of ids.entries()) {
      const receivedAt = T0 + round * INTERVAL_MS + index;
      batch.push({
        deviceId,
        channel: 'telemetry',
        msgId: `${deviceId}-${round}`,
        bootId: 'bootbench1',
        seq: round + 1,
        deviceTs: receivedAt,
        receivedAt,
        body: telemetryBody(deviceId, round + 1, index % 10 === 0),
      });
      if (batch.length >= 2000) {
        await store.ingest.commit({ messages: batch, deadLetters: [], devices: [] });
        batch = [];
      }
    }
  }
  await store.ingest.commit({
    messages: batch,
    deadLetters: [],
    devices: ids.map((id) => ({
      state: { ...initialLiveState(id, T0), status: 'online' as const },
      reported: { agentVersion: '1.0.0', hardware: { profile: 'orin-nano' }, model: { active: OLD } },
    })),
  });
  return { windowFrom, now };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function measure(name: string, store: Store): Promise<void> {
  const ids = Array.from({ length: DEVICES }, (_, i) => `bench-${String(i).padStart(5, '0')}`);
  const filled = performance.now();
  const { windowFrom, now } = await fill(store, ids);
  const fillS = (performance.now() - filled) / 1000;

  const windowMs: number[] = [];
  let samples = 0;
  for (let run = 0; run < RUNS; run++) {
    const started = performance.now();
    const rows = await store.messages.telemetrySamples({ from: windowFrom, to: now });
    const windows = buildDeviceWindows(rows, new Set(ids));
    windowMs.push(performance.now() - started);
    samples = rows.length;
    if (windows.size !== DEVICES) throw new Error(`expected ${DEVICES} device windows, got ${windows.size}`);
  }

  // One running rollout over every device, in its canary stage, evaluation due at every tick.
  await store.models.create({
    id: NEW.id,
    name: 'det',
    version: '2.0.0',
    sha256: NEW.sha256,
    sizeBytes: 1000,
    releaseCounter: 2,
    adapter: 'yolo',
    keyId: 'bench',
    issuedAt: T0,
    expiresAt: T0 + 1e12,
    signed: '{}',
    manifest: {},
    createdAt: T0,
    uploadedBy: null,
  });
  const spec = RolloutSpec.parse({
    modelId: NEW.id,
    stages: [
      { name: 'canary', kind: 'canary' },
      { name: '100%', kind: 'percent', percent: 100 },
    ],
    gates: { intervalS: 0.05, windowS: ROWS * 10 },
    evidence: { soakS: 1e9 },
  });
  const cohorts = selectCohorts(
    'bench',
    ids.map((id) => ({ id, hardware: 'orin-nano', site: null })),
    spec.canary,
  );
  await store.rollouts.create(
    {
      id: 'bench',
      modelId: NEW.id,
      spec,
      status: 'running',
      stageIndex: 0,
      stageStartedAt: windowFrom,
      failingWindows: 0,
      lastEvaluatedAt: null,
      cohorts,
      reason: null,
      version: 1,
      createdAt: T0,
      updatedAt: T0,
      createdBy: null,
    },
    { rolloutId: 'bench', at: T0, type: 'created', stage: null, data: {} },
  );
  await store.rollouts.putAssignments(
    cohorts.canary.map((deviceId) => ({
      rolloutId: 'bench',
      deviceId,
      mode: 'active',
      stageIndex: 0,
      state: 'active',
      previous: OLD,
      assignedAt: T0,
      updatedAt: T0,
      reason: null,
    })),
  );
  // Windows are judged once each, after they close (plus a grace of up to 2 s): start past it.
  let clock = now + 2_000;
  const engine = createRolloutEngine({
    store,
    fleet: { setDesired: async () => null },
    bus: createEventBus({ clock: { now: () => clock } }),
    clock: { now: () => clock },
    timers: { setInterval: () => ({}), clearInterval: () => {} },
    metrics: createMetricsRegistry(),
    logger: pino({ level: 'silent' }),
    lock: store.openLeaderLock(0x6265_6e63),
    tickMs: 1000,
    leaderRetryMs: 0,
    windowSliceMs: Number(process.env.BENCH_SLICE_MS ?? 30_000),
  });
  const tickMs: number[] = [];
  // The longest the event loop is blocked during evaluating ticks (the window is read in slices).
  const blocked = monitorEventLoopDelay({ resolution: 5 });
  const timer = setInterval(() => undefined, 5);
  blocked.enable();
  for (let run = 0; run < RUNS; run++) {
    clock += 100;
    // Judge the same window again each run: forget the window the previous run judged (untimed).
    const judged = await store.rollouts.get('bench');
    await store.rollouts.update('bench', judged!.version, { lastEvaluatedAt: null }, clock);
    const started = performance.now();
    const report = await engine.tick();
    tickMs.push(performance.now() - started);
    if (!report.leader || report.evaluations !== 1 || report.errors > 0) throw new Error(JSON.stringify(report));
    // Ticks come from a timer: let the loop turn (and the delay monitor sample) between them.
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  blocked.disable();
  clearInterval(timer);
  // Between evaluations a tick only reads state and plans (here: the rollout paused).
  const current = await store.rollouts.get('bench');
  await store.rollouts.update('bench', current!.version, { status: 'paused' }, clock);
  const idleMs: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    clock += 100;
    const started = performance.now();
    await engine.tick();
    idleMs.push(performance.now() - started);
  }
  await engine.stop();
  console.log(
    `${name.padEnd(10)} devices ${DEVICES}, ${samples} telemetry rows in the window (${ROWS * 4 * DEVICES} stored, filled in ${fillS.toFixed(1)} s)\n` +
      `           window query + sums: median ${median(windowMs).toFixed(1)} ms (min ${Math.min(...windowMs).toFixed(1)})\n` +
      `           engine tick (1 rollout, ${DEVICES} targets, ${cohorts.canary.length} canaries, evaluation due): median ${median(tickMs).toFixed(1)} ms, ` +
      `longest event-loop block ${(blocked.max / 1e6).toFixed(0)} ms\n` +
      `           engine tick without an evaluation: median ${median(idleMs).toFixed(1)} ms`,
  );
}

const dir = mkdtempSync(join(tmpdir(), 'edgeloop-bench-window-'));
try {
  const sqlite = createSqliteStore({ dataDir: dir });
  await measure('sqlite', sqlite);
  await sqlite.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const adminUrl = process.env.EDGELOOP_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 2_000 });
const database = `edgeloop_bench_${randomBytes(4).toString('hex')}`;
let connected = false;
try {
  await admin.connect();
  connected = true;
} catch {
  console.log('postgres   not reachable: skipped');
}
if (connected) {
  await admin.query(`CREATE DATABASE ${database}`);
  try {
    const url = new URL(adminUrl);
    url.pathname = `/${database}`;
    const store = await createPostgresStore({ url: url.toString() });
    await measure('postgres', store);
    await store.close();
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
  }
}
