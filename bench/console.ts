// Console at fleet scale (issue 10, bench), measured in Chromium with the Performance API:
// (a) time to first render of the fleet page (counts and the first page of the device table on
//     screen, from navigation start) with 10,000 devices against the same page with 100 devices,
//     in the same run, alternating, medians; target ratio <= 2;
// (b) the main thread's longest task (PerformanceObserver 'longtask') on the 10,000-device fleet
//     page while 1,000 SSE status events arrive in 10 s; target < 50 ms.
//
// Two control planes (SQLite, embedded aedes, HTTP on port 0) serve the console built from source.
// Devices are seeded straight into the store before start (enrolled, offline with a last-seen
// time); 100 more are enrolled through the API, connect over MQTT, and make the status events
// through the real ingest path: each one publishes shutdown (offline) and birth (online) in turn,
// as a device reconnecting does. A Node SSE reader counts the events the server sent.
// Environment: BENCH_CONSOLE_DEVICES (10000), BENCH_CONSOLE_RUNS (5), BENCH_CONSOLE_EVENTS (1000),
// BENCH_CONSOLE_SECONDS (10).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createControlPlane, createSqliteStore, loadConfig } from '@edgeloop/control-plane';
import { createApiClient, encode, messageId, type ServerEvent, topicFor } from '@edgeloop/protocol';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { chromium, type Page } from 'playwright-core';
import { build } from 'vite';
import { CHROMIUM, CHROMIUM_FLAGS, chromiumMissing } from '../console/test/console-fixture.ts';
import { reportResult } from './report.ts';

const BIG = Number(process.env.BENCH_CONSOLE_DEVICES ?? 10_000);
const SMALL = 100;
const RUNS = Number(process.env.BENCH_CONSOLE_RUNS ?? 5);
const EVENTS = Number(process.env.BENCH_CONSOLE_EVENTS ?? 1000);
const SECONDS = Number(process.env.BENCH_CONSOLE_SECONDS ?? 10);
const LIVE = 100;
/** A file to write a Chromium trace of the burst to (the console is then built unminified). */
const PROFILE = process.env.BENCH_CONSOLE_PROFILE;

const missing = chromiumMissing();
if (missing) {
  console.error(`bench:console needs Chromium: ${missing}`);
  process.exit(1);
}

const root = mkdtempSync(join(tmpdir(), 'edgeloop-bench-console-'));
const consoleDir = join(root, 'console-dist');
const consoleRoot = fileURLToPath(new URL('../console/', import.meta.url));
await build({
  configFile: join(consoleRoot, 'vite.config.ts'),
  root: consoleRoot,
  logLevel: 'warn',
  build: { outDir: consoleDir, emptyOutDir: true, sourcemap: false, minify: !PROFILE },
});

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

type Plane = Awaited<ReturnType<typeof startPlane>>;

/** A control plane whose fleet is `total` devices: `total - LIVE` seeded, LIVE real over MQTT. */
async function startPlane(name: string, total: number) {
  const dataDir = join(root, name);
  const seeded = total - LIVE;
  const seedStart = performance.now();
  if (seeded > 0) {
    const store = createSqliteStore({ dataDir });
    const now = Date.now();
    for (let i = 0; i < seeded; i++) {
      const id = `cam-${String(i).padStart(5, '0')}`;
      const labels = {
        site: `site-${String(i % 200).padStart(3, '0')}`,
        fleet: 'bench',
        hardware: i % 2 ? 'rpi5' : 'x86',
      };
      const enrolled = await store.devices.enroll({ id, labels, secretHash: `unused-${i}`, now });
      if (!enrolled.ok) throw new Error(enrolled.error.message);
    }
    // Offline with a last-seen time, as a fleet that reported once looks (no sweep turns them).
    const states = (await store.devices.loadLiveStates()).map((state) => ({
      state: {
        ...state,
        status: 'offline' as const,
        statusChangedAt: now - 60_000,
        lastSeen: now - 60_000,
        health: 'offline' as const,
        bootIds: ['bootseed0000'],
      },
    }));
    for (let i = 0; i < states.length; i += 1000) {
      await store.ingest.commit({ messages: [], deadLetters: [], devices: states.slice(i, i + 1000) });
    }
    await store.close();
  }
  const seedS = (performance.now() - seedStart) / 1000;
  const adminToken = randomBytes(16).toString('hex');
  const cp = createControlPlane(
    loadConfig({
      overrides: {
        httpPort: 0,
        mqttPort: 0,
        host: '127.0.0.1',
        dataDir,
        adminToken,
        logLevel: 'silent',
        http: { consoleDir },
      },
    }),
    { logger: pino({ level: 'silent' }) },
  );
  const started = await cp.start();
  const api = createApiClient({ baseUrl: started.httpUrl, token: adminToken });
  // The live devices sort first by id, so they fill the table's first page.
  const devices: { id: string; client: MqttClient; bootId: string; seq: number; session: number }[] = [];
  for (let i = 0; i < LIVE; i++) {
    const id = `a-live-${String(i).padStart(3, '0')}`;
    const enrolled = await api.devices.enroll({ id, labels: { site: 'live', fleet: 'bench' } });
    if (!enrolled.ok) throw new Error(`enroll ${id}: ${enrolled.error.message}`);
    const client = await mqtt.connectAsync(started.mqttUrl, {
      clientId: id,
      username: id,
      password: enrolled.value.credentials.password,
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    devices.push({ id, client, bootId: `boot${randomBytes(6).toString('hex')}`, seq: 0, session: 1 });
  }
  const status = async (device: (typeof devices)[number], state: 'online' | 'offline') => {
    const seq = ++device.seq;
    const body = encode('status', {
      msgId: messageId(device.bootId, seq),
      bootId: device.bootId,
      seq,
      ts: Date.now(),
      state,
      reason: state === 'online' ? 'birth' : 'shutdown',
      session: device.session,
      keepaliveS: 60,
    });
    // A reconnect: shutdown ends connection n, the birth of connection n + 1 follows.
    if (state === 'offline') device.session++;
    await device.client.publishAsync(topicFor(device.id, 'status'), body, { qos: 1 });
  };
  for (const device of devices) await status(device, 'online');
  return {
    name,
    total,
    seedS,
    url: started.httpUrl,
    adminToken,
    api,
    devices,
    status,
    async stop() {
      await Promise.all(devices.map((d) => d.client.endAsync(true).catch(() => undefined)));
      await cp.stop();
    },
  };
}

// In every page before its scripts: the first moment the counts and a table row are both on
// screen (a MutationObserver, stamped with performance.now(), so navigation start is 0), and
// the long tasks, from the start.
const INIT = `
  window.__bench = { firstRender: null, longTasks: [] };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__bench.longTasks.push({ start: entry.startTime, duration: entry.duration });
  }).observe({ type: 'longtask', buffered: true });
  const check = () => {
    if (window.__bench.firstRender !== null) return;
    if (document.querySelector('[data-testid=fleet-counts]') && document.querySelector('[data-testid=device-table] tbody tr')) {
      window.__bench.firstRender = performance.now();
      requestAnimationFrame(() => { window.__bench.firstPaint = performance.now(); });
    }
  };
  new MutationObserver(check).observe(document, { childList: true, subtree: true });
`;
type BenchWindow = {
  __bench: { firstRender: number | null; firstPaint?: number; longTasks: { start: number; duration: number }[] };
  document: { querySelectorAll(selector: string): { length: number } };
};

type TraceEvent = {
  name: string;
  ph: string;
  ts: number;
  dur?: number;
  /** Thread (CPU) time of the event, microseconds: what the task cost without the waits of a busy machine. */
  tdur?: number;
  tid: number;
  pid: number;
  args?: { data?: { frame?: string } };
};

/**
 * The page's main-thread tasks in a trace (the renderer thread that ran the page's animation
 * frames): the longest by wall time and by the thread's own CPU time, and with `detail`, what
 * filled each task over 50 ms.
 */
function summariseLongTasks(trace: { traceEvents: TraceEvent[] }, detail: boolean): { wallMs: number; cpuMs: number } {
  const events = trace.traceEvents.filter((e) => e.ph === 'X' && e.dur !== undefined);
  const frames = events.filter((e) => e.name === 'FireAnimationFrame');
  const main = frames[0] ? { pid: frames[0].pid, tid: frames[0].tid } : null;
  const runTasks = events.filter((e) => e.name === 'RunTask' && main && e.pid === main.pid && e.tid === main.tid);
  const wallMs = runTasks.reduce((max, e) => Math.max(max, e.dur! / 1000), 0);
  const cpuMs = runTasks.reduce((max, e) => Math.max(max, (e.tdur ?? 0) / 1000), 0);
  if (!detail) return { wallMs, cpuMs };
  const tasks = runTasks.filter((e) => e.dur! > 50_000);
  console.log(`trace in ${PROFILE}: ${tasks.length} main-thread tasks over 50 ms`);
  for (const task of tasks.slice(0, 10)) {
    const inside = new Map<string, number>();
    for (const e of events) {
      if (e.tid !== task.tid || e.pid !== task.pid || e === task) continue;
      if (e.ts < task.ts || e.ts + e.dur! > task.ts + task.dur!) continue;
      inside.set(e.name, (inside.get(e.name) ?? 0) + e.dur! / 1000);
    }
    const top = [...inside.entries()].sort((x, y) => y[1] - x[1]).slice(0, 6);
    const cpu = ((task.tdur ?? 0) / 1000).toFixed(0);
    console.log(
      `  ${(task.dur! / 1000).toFixed(0)} ms (CPU ${cpu} ms): ${top.map(([n, ms]) => `${n} ${ms.toFixed(0)}`).join(', ')}`,
    );
  }
  return { wallMs, cpuMs };
}

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
await context.addInitScript(INIT);

/** Opens the fleet page signed in (token in the fragment) and waits for its first render. */
async function openFleet(plane: Plane): Promise<{ page: Page; renderMs: number }> {
  const page = await context.newPage();
  await page.goto(`${plane.url}/#token=${plane.adminToken}`);
  await page.waitForFunction(() => (globalThis as unknown as BenchWindow).__bench.firstPaint !== undefined, null, {
    timeout: 30_000,
  });
  const renderMs = await page.evaluate(() => (globalThis as unknown as BenchWindow).__bench.firstPaint!);
  return { page, renderMs };
}

const small = await startPlane('small', SMALL);
const big = await startPlane('big', BIG);
try {
  // Warm-up (disk cache, Chromium's compile cache, SQLite pages), not counted.
  for (const plane of [small, big]) await (await openFleet(plane)).page.close();
  const times: Record<string, number[]> = { small: [], big: [] };
  for (let run = 0; run < RUNS; run++) {
    for (const plane of run % 2 ? [big, small] : [small, big]) {
      const { page, renderMs } = await openFleet(plane);
      times[plane.name]!.push(renderMs);
      await page.close();
    }
  }

  // (b) The 10,000-device page, live, while the status events arrive.
  const { page } = await openFleet(big);
  await page.locator('.live-live').waitFor({ timeout: 15_000 });
  const counted = { n: 0 };
  const sse = new AbortController();
  void (async () => {
    const watcher = createApiClient({ baseUrl: big.url, token: big.adminToken });
    const types: ServerEvent['type'][] = ['device.online', 'device.offline'];
    for await (const _ of watcher.events({ types, signal: sse.signal })) counted.n++;
  })().catch(() => undefined);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const before = await page.evaluate(() => (globalThis as unknown as BenchWindow).__bench.longTasks.length);
  // Always traced: the trace's thread times say what each task cost without a busy machine's waits.
  await browser.startTracing(page, { categories: ['devtools.timeline', 'disabled-by-default-devtools.timeline'] });
  const burstStart = performance.now();
  const gapMs = (SECONDS * 1000) / EVENTS;
  for (let i = 0; i < EVENTS; i++) {
    const device = big.devices[i % big.devices.length]!;
    // Each device alternates: offline, online, ... (an even count per device ends online).
    const round = Math.floor(i / big.devices.length);
    void big.status(device, round % 2 === 0 ? 'offline' : 'online').catch((error: unknown) => console.error(error));
    const due = burstStart + (i + 1) * gapMs;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  const burstS = (performance.now() - burstStart) / 1000;
  // Let the last events reach the page and its rows settle.
  const deadline = Date.now() + 10_000;
  while (counted.n < EVENTS && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  await new Promise((resolve) => setTimeout(resolve, 1500));
  sse.abort();
  const trace = await browser.stopTracing();
  if (PROFILE) writeFileSync(PROFILE, trace);
  const traced = summariseLongTasks(
    JSON.parse(trace.toString()) as { traceEvents: TraceEvent[] },
    PROFILE !== undefined,
  );
  const tasks = await page.evaluate(
    (skip) => (globalThis as unknown as BenchWindow).__bench.longTasks.slice(skip),
    before,
  );
  const onlineRows = await page.evaluate(
    () =>
      (globalThis as unknown as BenchWindow).document.querySelectorAll(
        '[data-testid=device-table] tbody [data-status=online]',
      ).length,
  );
  const server = await big.api.devices.list({ limit: 50 });
  const serverOnline = server.ok ? server.value.items.filter((d) => d.status === 'online').length : -1;
  await page.close();

  const smallMs = median(times.small!);
  const bigMs = median(times.big!);
  const ratio = bigMs / smallMs;
  const longest = tasks.reduce((max, task) => Math.max(max, task.duration), 0);
  const list = (values: number[]) => values.map((v) => v.toFixed(0)).join(', ');
  const load = loadavg()[0]!.toFixed(1);
  console.log(
    [
      `console bench: Chromium ${browser.version()}, ${cpus().length} cores, load average ${load} at the end; ${RUNS} alternating runs (seeding ${big.seedS.toFixed(1)} s for ${BIG - LIVE} devices)`,
      `(a) fleet page first render (counts + first table page painted, from navigation start), median`,
      `    ${SMALL} devices    ${smallMs.toFixed(0)} ms  [${list(times.small!)}]`,
      `    ${BIG} devices ${bigMs.toFixed(0)} ms  [${list(times.big!)}]`,
      `    ratio ${ratio.toFixed(2)} (target <= 2) ${ratio <= 2 ? 'PASS' : 'MISS'}`,
      `(b) ${EVENTS} status events over MQTT in ${burstS.toFixed(1)} s; the server sent ${counted.n} device.online/offline events`,
      `    long tasks (> 50 ms) on the ${BIG}-device page: ${tasks.length}; longest ${longest.toFixed(0)} ms` +
        ` (target < 50) ${longest < 50 ? 'PASS' : 'MISS'}`,
      `    the trace's longest main-thread task: ${traced.wallMs.toFixed(0)} ms wall, ${traced.cpuMs.toFixed(0)} ms of CPU time` +
        ' (CPU time leaves out the waits of a shared machine)',
      `    rows online on the first page afterwards: ${onlineRows} of 50 in the page, ${serverOnline} of 50 by the API (every live device ends online)`,
    ].join('\n'),
  );
  if (counted.n < EVENTS) console.log(`    note: only ${counted.n} of ${EVENTS} events reached the SSE reader`);
  reportResult({
    bench: 'bench:console',
    metric: `(a) fleet page first render, ${BIG} vs ${SMALL} devices`,
    value: `${bigMs.toFixed(0)} vs ${smallMs.toFixed(0)} ms: ${ratio.toFixed(2)}`,
    target: '<= 2',
    met: ratio <= 2,
  });
  reportResult({
    bench: 'bench:console',
    metric: `(b) longest main-thread task, ${EVENTS} SSE status events in ${burstS.toFixed(0)} s, ${BIG}-device page`,
    value: `${longest.toFixed(0)} ms wall (trace: ${traced.cpuMs.toFixed(0)} ms CPU)`,
    target: '< 50 ms',
    met: longest < 50,
  });
} finally {
  await browser.close();
  await small.stop();
  await big.stop();
  rmSync(root, { recursive: true, force: true });
}
