import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { CONFIDENCE_BINS, createApiClient, type SamplePolicyInput, type ServerEvent, unwrap } from '@edgeloop/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.ts';
import type { BusMessage } from '../src/events.ts';
import type { Timers } from '../src/time.ts';
import { storeSampleIn } from './dataset-fixtures.ts';
import { eventually, SYSTEM, startTestControlPlane, type TestControlPlane, type TestDevice } from './harness.ts';

/*
 * Drift on a real control plane (SQLite on the real migrations, the real broker and ingest writer):
 * devices at two sites send telemetry over MQTT; the clock and the timers are the test's, so the
 * reference, each window and each tick happen when the test says. Site b's confidence shifts for two
 * windows and comes back: b (and only b) drifts, its sampling is raised within the byte budget and
 * then restored, each change in the audit log as system:drift.
 */

const T0 = 1_800_000_000_000;
const WINDOW_MS = 10_000;
const SHA = 'c'.repeat(64);
const MODEL = { id: 'det@1.0.0', name: 'det', version: '1.0.0', sha256: SHA };

/** Timers that never fire by themselves: the test runs the ticks. */
const manualTimers: Timers = { setInterval: () => ({}), clearInterval: () => {} };

const FLEET_POLICY: SamplePolicyInput = {
  strategies: [
    { kind: 'random', share: 0.01, probability: 0.25 },
    { kind: 'near-threshold', threshold: 0.3, probability: 0.5 },
  ],
  limits: { perMinute: 2, perHour: 20, bytesPerDay: 2_000_000 },
};

/** A histogram of 200 detections as a narrow bell around `mean`. */
function histogram(mean: number): number[] {
  const bins = new Array<number>(CONFIDENCE_BINS).fill(0);
  const centre = Math.floor(mean * CONFIDENCE_BINS);
  [20, 40, 80, 40, 20].forEach((count, offset) => {
    bins[Math.max(0, Math.min(CONFIDENCE_BINS - 1, centre + offset - 2))]! += count;
  });
  return bins;
}

async function sendTelemetry(device: TestDevice, mean: number): Promise<void> {
  await device.send('telemetry', {
    intervalS: 10,
    system: SYSTEM,
    pipeline: {
      windowS: 10,
      framesIn: 500,
      framesProcessed: 500,
      framesDropped: 0,
      inferenceErrors: 0,
      fps: 50,
      latencyMs: {},
      detectionsPer1000: { person: 300, car: 100 },
      confidenceHistogram: histogram(mean),
      nearThresholdShare: 0.1,
      lastInferenceAt: null,
      provider: { requested: ['cpu'], active: 'cpu' },
      model: MODEL,
      camera: null,
    },
  });
}

describe('drift detection and adaptive sampling on a real control plane', () => {
  let t: TestControlPlane | null = null;
  const dataDirs: string[] = [];
  afterEach(async () => {
    await t?.stop();
    t = null;
    for (const dir of dataDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  const config = {
    drift: { referenceS: 60, windowS: 10, minDetections: 50, samplingWindows: 2, samplingFactor: 2 },
  };

  const setup = async (dataDir?: string) => {
    let now = T0;
    const clock = { now: () => now };
    const cp = await startTestControlPlane(
      { ...config, ...(dataDir ? { dataDir } : {}) },
      { clock, timers: manualTimers },
    );
    t = cp;
    const events: BusMessage[] = [];
    cp.cp.internals.bus.subscribe((message) => {
      if (message.type.startsWith('drift.')) events.push(message);
    });
    // The SQLite leader lock is always free: one engine tick takes it, and drift follows the engine's lock.
    await cp.cp.internals.rollouts.engine.tick();
    const drift = cp.cp.internals.drift;
    return {
      cp,
      drift,
      events,
      at: (ms: number) => {
        now = ms;
      },
    };
  };

  it('detects the shifted site only, raises its sampling within the byte budget, and restores it when stable', async () => {
    const { cp, drift, events, at } = await setup();
    const devices = {
      'cam-a1': await cp.device('cam-a1', { labels: { site: 'a' } }),
      'cam-a2': await cp.device('cam-a2', { labels: { site: 'a' } }),
      'cam-b1': await cp.device('cam-b1', { labels: { site: 'b' } }),
      'cam-b2': await cp.device('cam-b2', { labels: { site: 'b' } }),
    };
    await unwrap(cp.client.samples.policy.set({ selector: { labels: {} }, policy: FLEET_POLICY }));
    await drift.tick();
    const sendAll = async (bMean: number) => {
      for (const [id, device] of Object.entries(devices))
        await sendTelemetry(device, id.startsWith('cam-b') ? bMean : 0.7);
    };

    // The reference: the first 60 s after the model was first seen at each site and device.
    for (let k = 0; k < 6; k++) {
      at(T0 + k * WINDOW_MS + 1);
      await sendAll(0.7);
      await drift.tick();
    }
    const windowStart = (i: number) => T0 + 70_000 + i * WINDOW_MS;
    const runWindow = async (i: number, bMean: number) => {
      at(windowStart(i) + 1);
      await sendAll(bMean);
      at(windowStart(i + 1));
      await drift.tick();
    };
    await runWindow(0, 0.7);
    await runWindow(1, 0.7);
    const stable = (await unwrap(cp.client.drift.list({ scope: 'site' }))).items;
    expect(stable.map((s) => [s.key, s.band, s.reference.complete])).toEqual([
      ['a', 'stable', true],
      ['b', 'stable', true],
    ]);
    expect(stable[0]!.reference).toMatchObject({ source: 'auto', from: T0 + 1, to: T0 + 60_001, frames: 6000 });

    // SSE subscribers (over the real socket) hear the band changes and the sampling changes.
    const controller = new AbortController();
    const streamed: ServerEvent[] = [];
    let opened!: () => void;
    const open = new Promise<void>((resolve) => {
      opened = resolve;
    });
    const reading = (async () => {
      for await (const event of createApiClient({ baseUrl: cp.started.httpUrl, token: cp.adminToken }).events({
        types: ['drift.changed', 'drift.sampling'],
        signal: controller.signal,
        onOpen: opened,
      })) {
        streamed.push(event);
      }
    })();
    await open;

    // Site b's confidence shifts down for two windows.
    await runWindow(2, 0.4);
    const drifting = (await unwrap(cp.client.drift.list({ band: 'major' }))).items;
    expect(drifting.map((s) => `${s.scope}:${s.key}`)).toEqual(['site:b', 'device:cam-b1', 'device:cam-b2']);
    expect(drifting[0]).toMatchObject({
      band: 'major',
      sustainedWindows: 1,
      since: windowStart(3),
      modelId: 'det@1.0.0',
      window: { from: windowStart(2), to: windowStart(3) },
    });
    expect(drifting[0]!.numbers.confidencePsi).toBeGreaterThan(0.25);
    expect((await unwrap(cp.client.drift.list({ site: 'a' }))).items.every((s) => s.band === 'stable')).toBe(true);
    const metrics = await unwrap(cp.client.metrics());
    expect(metrics).toContain('edgeloop_drift_band{key="b",scope="site"} 2');
    expect(metrics).toContain('edgeloop_drift_band{key="a",scope="site"} 0');
    expect(metrics).toContain('edgeloop_drift_band{key="cam-b1",scope="device"} 2');
    expect(metrics).not.toContain('key="cam-a1"');
    // The drift series pass Prometheus's own lint, where promtool is installed (CI installs it).
    const promtool = spawnSync(process.env.EDGELOOP_PROMTOOL ?? 'promtool', ['check', 'metrics'], {
      input: metrics,
      encoding: 'utf8',
    });
    if (promtool.status !== null || process.env.CI) {
      expect(`${promtool.stdout}${promtool.stderr}`).toBe('');
      expect(promtool.status).toBe(0);
    }
    expect(events.filter((e) => e.type === 'drift.changed').map((e) => (e.data as { key: string }).key)).toEqual(
      expect.arrayContaining(['b', 'cam-b1', 'cam-b2']),
    );
    expect(
      events.some(
        (e) => e.type === 'drift.changed' && ['a', 'cam-a1', 'cam-a2'].includes((e.data as { key: string }).key),
      ),
    ).toBe(false);
    // One window is not enough to raise the sampling.
    expect((await unwrap(cp.client.samples.policy.list())).items).toHaveLength(1);

    await runWindow(3, 0.4);
    const raised = (await unwrap(cp.client.samples.policy.list())).items.find((p) => p.selector.labels.site === 'b');
    expect(raised?.updatedBy).toBe('system:drift');
    expect(raised?.policy.strategies).toMatchObject([
      { kind: 'random', share: 0.02, probability: 0.5 },
      { kind: 'near-threshold', probability: 1 },
    ]);
    expect(raised?.policy.limits).toEqual({ perMinute: 4, perHour: 40, bytesPerDay: 2_000_000 });
    expect((await cp.store.devices.get('cam-b1'))?.desired?.samplePolicy).toMatchObject({ limits: { perMinute: 4 } });
    expect((await cp.store.devices.get('cam-a1'))?.desired?.samplePolicy).toMatchObject({ limits: { perMinute: 2 } });
    const raisedAudit = (await unwrap(cp.client.audit.list({ actor: 'system:drift' }))).items;
    expect(raisedAudit.map((e) => e.action)).toEqual(['drift.sampling-raised']);
    expect(raisedAudit[0]).toMatchObject({
      actor: { id: 'system:drift', role: 'system' },
      target: 'site=b',
      summary: { site: 'b', factor: 2, band: 'major', sustainedWindows: 2, previous: 'a less specific policy' },
    });
    expect(events.some((e) => e.type === 'drift.sampling' && (e.data as { action: string }).action === 'raised')).toBe(
      true,
    );

    // b comes back: after two stable windows its own policy goes, and it follows the fleet's again.
    await runWindow(4, 0.7);
    expect((await unwrap(cp.client.drift.list({ scope: 'site', site: 'b' }))).items[0]!.band).toBe('stable');
    expect((await unwrap(cp.client.samples.policy.list())).items).toHaveLength(2);
    await runWindow(5, 0.7);
    expect((await unwrap(cp.client.samples.policy.list())).items.map((p) => p.selector.labels)).toEqual([{}]);
    expect((await cp.store.devices.get('cam-b1'))?.desired?.samplePolicy).toMatchObject({ limits: { perMinute: 2 } });
    const audit = (await unwrap(cp.client.audit.list({ actor: 'system:drift' }))).items;
    expect(audit.map((e) => e.action)).toEqual(['drift.sampling-restored', 'drift.sampling-raised']);
    expect(audit[0]!.summary).toMatchObject({ site: 'b', restored: 'removed the site policy', why: 'stable again' });

    // What SSE subscribers heard: the band changes of b and its devices, the raise and the restore.
    await eventually(() => streamed.filter((e) => e.type === 'drift.sampling').length === 2);
    controller.abort();
    await reading;
    expect(streamed.filter((e) => e.type === 'drift.changed').map((e) => e.data.key)).toEqual(
      expect.arrayContaining(['b', 'cam-b1', 'cam-b2']),
    );
    expect(
      streamed.some((e) => e.type === 'drift.changed' && ['a', 'cam-a1', 'cam-a2'].includes(String(e.data.key))),
    ).toBe(false);
    expect(streamed.filter((e) => e.type === 'drift.sampling').map((e) => e.data.action)).toEqual([
      'raised',
      'restored',
    ]);
  });

  it('keeps references and states across a restart, and lets an operator pin a reference (audited) or refuse a bad one', async () => {
    const first = await setup();
    const device = await first.cp.device('cam-b1', { labels: { site: 'b' } });
    await first.drift.tick();
    for (let k = 0; k < 7; k++) {
      first.at(T0 + k * WINDOW_MS + 1);
      await sendTelemetry(device, 0.7);
      await first.drift.tick();
    }
    first.at(T0 + 80_000);
    await first.drift.tick();
    const before = (await unwrap(first.cp.client.drift.list({ scope: 'device' }))).items;
    expect(before).toHaveLength(1);
    expect(before[0]!.reference).toMatchObject({ complete: true, frames: 3000 });
    const dataDir = first.cp.dataDir;
    dataDirs.push(dataDir);
    await first.cp.stop({ keepData: true });

    const second = await setup(dataDir);
    await second.drift.tick();
    const after = (await unwrap(second.cp.client.drift.list({ scope: 'device' }))).items;
    expect(after.map((s) => [s.key, s.reference])).toEqual(before.map((s) => [s.key, s.reference]));

    const operator = await second.cp.createToken('operator');
    const pinned = await unwrap(
      operator.client.drift.setReference({
        scope: 'device',
        key: 'cam-b1',
        modelSha256: SHA,
        source: 'pinned',
        from: T0,
        to: T0 + 30_000,
      }),
    );
    expect(pinned.reference).toMatchObject({
      source: 'pinned',
      from: T0,
      to: T0 + 30_000,
      frames: 1500,
      complete: true,
    });
    expect(pinned.band).toBe('stable');
    const entries = (await unwrap(second.cp.client.audit.list({ actor: operator.id }))).items;
    expect(entries.map((e) => e.action)).toEqual(['PUT /api/v1/drift/reference']);
    expect(entries[0]).toMatchObject({ resource: 'drift', status: 200 });

    // A dataset version's predictions: 30 stored samples with two detections each, one frame per image.
    for (let seed = 1; seed <= 30; seed++) await storeSampleIn(second.cp, seed);
    const dataset = await unwrap(second.cp.client.datasets.create({ name: 'reference', query: {} }));
    const fromDataset = await unwrap(
      operator.client.drift.setReference({
        scope: 'site',
        key: 'b',
        modelSha256: SHA,
        source: 'dataset',
        datasetId: dataset.id,
      }),
    );
    expect(fromDataset.reference).toEqual({
      source: 'dataset',
      from: null,
      to: null,
      frames: 30,
      complete: true,
      datasetId: dataset.id,
    });
    const noDataset = await operator.client.drift.setReference({
      scope: 'site',
      key: 'b',
      modelSha256: SHA,
      source: 'dataset',
      datasetId: 'nope@1',
    });
    expect(!noDataset.ok && noDataset.error.status).toBe(404);
    const empty = await operator.client.drift.setReference({
      scope: 'site',
      key: 'b',
      modelSha256: SHA,
      source: 'pinned',
      from: T0 + 500_000,
      to: T0 + 600_000,
    });
    expect(!empty.ok && empty.error.status).toBe(422);
    const malformed = await second.cp.raw('PUT', '/api/v1/drift/reference', {
      body: { scope: 'site', key: 'b', modelSha256: SHA, source: 'pinned' },
    });
    expect(malformed.status).toBe(422);
    expect(JSON.stringify(await malformed.json())).toContain('source pinned needs from and to');
    const viewer = await second.cp.createToken('viewer');
    const refused = await viewer.client.drift.setReference({
      scope: 'site',
      key: 'b',
      modelSha256: SHA,
      source: 'auto',
    });
    expect(!refused.ok && refused.error.status).toBe(403);
    const badFilter = await second.cp.raw('GET', '/api/v1/drift?band=awful');
    expect(badFilter.status).toBe(422);
  });

  it('edgeloop drift prints the states as a table or JSON, filters them, sets a reference, and exits 2 on bad flags', async () => {
    const { cp, drift, at } = await setup();
    const device = await cp.device('cam-b1', { labels: { site: 'b' } });
    await drift.tick();
    for (let k = 0; k < 7; k++) {
      at(T0 + k * WINDOW_MS + 1);
      await sendTelemetry(device, k === 6 ? 0.4 : 0.7);
      await drift.tick();
    }
    at(T0 + 70_000);
    await drift.tick();
    const cli = async (...argv: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await runCli(
        argv,
        { EDGELOOP_URL: cp.started.httpUrl, EDGELOOP_TOKEN: cp.adminToken },
        { out: (text) => out.push(text), err: (text) => err.push(text), waitForShutdown: () => new Promise(() => {}) },
      );
      return { code, out: out.join(''), err: err.join('') };
    };
    const table = await cli('drift');
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/^SCOPE\s+KEY\s+MODEL\s+BAND/);
    expect(table.out).toMatch(/site\s+b\s+det@1\.0\.0\s+major\s+1/);
    expect(table.out).toMatch(/device\s+cam-b1\s+det@1\.0\.0\s+major/);
    const majors = JSON.parse((await cli('drift', '--band', 'major', '--scope', 'site', '--json')).out) as unknown[];
    expect(majors).toMatchObject([{ scope: 'site', key: 'b', band: 'major' }]);
    expect(JSON.parse((await cli('drift', 'list', '--band', 'stable', '--json')).out)).toEqual([]);
    const reset = await cli('drift', 'reference', '--site', 'b', '--model', SHA, '--auto', '--json');
    expect(reset.code).toBe(0);
    expect(JSON.parse(reset.out)).toMatchObject({ band: 'stable', reference: { source: 'auto', complete: false } });
    expect((await cli('drift', '--band', 'awful')).code).toBe(2);
    const noTarget = await cli('drift', 'reference', '--model', SHA, '--auto');
    expect(noTarget.code).toBe(2);
    expect(noTarget.err).toContain('needs --site S or --device D');
    expect((await cli('drift', 'reference', '--site', 'b', '--model', SHA, '--auto', '--dataset', 'x@1')).code).toBe(2);
    expect((await cli('drift', '--help')).out).toContain('edgeloop drift reference');
  });
});
