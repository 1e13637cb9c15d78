import { CONFIDENCE_BINS, type Telemetry } from '@edgeloop/protocol';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { noAudit } from '../audit/audit.ts';
import { DriftConfig } from '../config.ts';
import type { TelemetrySample } from '../db/repositories.ts';
import { createSqliteStore, type SqliteStore } from '../db/sqlite/store.ts';
import { createEventBus } from '../events.ts';
import { createMetricsRegistry } from '../metrics.ts';
import { createDriftMonitor, sumsOfPredictions, sumsOfTelemetry } from './monitor.ts';

const SHA = 'f'.repeat(64);
const T0 = 1_800_000_000_000;

function telemetry(seq: number, bin = 14): Telemetry {
  return {
    msgId: `boot0001-${seq}`,
    bootId: 'boot0001',
    seq,
    ts: T0,
    intervalS: 10,
    system: {
      cpu: { loadPct: 1, cores: 4 },
      memory: { usedBytes: 1, totalBytes: 2 },
      disk: { usedBytes: 1, totalBytes: 2 },
      temperatures: { cpuC: 40, gpuC: null, zones: {} },
      uptimeS: 1,
    },
    pipeline: {
      windowS: 10,
      framesIn: 100,
      framesProcessed: 100,
      framesDropped: 0,
      inferenceErrors: 0,
      fps: 10,
      latencyMs: {},
      detectionsPer1000: { person: 2000 },
      confidenceHistogram: Array.from({ length: CONFIDENCE_BINS }, (_, b) => (b === bin ? 200 : 0)),
      nearThresholdShare: 0.1,
      lastInferenceAt: null,
      provider: { requested: ['cpu'], active: 'cpu' },
      model: { id: 'det@1.0.0', name: 'det', version: '1.0.0', sha256: SHA },
      camera: null,
    },
  };
}

describe('drift monitor', () => {
  let store: SqliteStore | null = null;
  afterEach(async () => {
    await store?.close();
    store = null;
  });

  it('accumulates and judges only while it leads, and loads the stored tracks when it becomes leader', async () => {
    store = createSqliteStore({ file: ':memory:' });
    const enrolled = await store.devices.enroll({ id: 'cam-1', labels: { site: 'a' }, secretHash: 'x', now: T0 });
    expect(enrolled.ok).toBe(true);
    let leader = false;
    let now = T0;
    const deps = {
      repo: store.drift,
      devices: store.devices,
      messages: store.messages,
      datasets: store.datasets,
      samplePolicies: { list: () => Promise.resolve([]), set: () => Promise.resolve(null) },
      audit: noAudit,
      bus: createEventBus({ clock: { now: () => now } }),
      metrics: createMetricsRegistry(),
      clock: { now: () => now },
      timers: { setInterval: () => ({}), clearInterval: () => {} },
      logger: pino({ level: 'silent' }),
      config: DriftConfig.parse({ referenceS: 10, windowS: 10 }),
      isLeader: () => leader,
    };
    const monitor = createDriftMonitor(deps);
    await monitor.start();
    monitor.observe('cam-1', telemetry(1), now);
    await monitor.tick();
    expect(monitor.list({}).items).toEqual([]);

    leader = true;
    await monitor.tick();
    now = T0 + 1;
    monitor.observe('cam-1', telemetry(2), now);
    expect(monitor.list({}).items.map((s) => `${s.scope}:${s.key}`)).toEqual(['site:a', 'device:cam-1']);
    // Another replica that becomes leader reads what this one wrote (stop writes what is pending).
    await monitor.stop();
    const next = createDriftMonitor({ ...deps, metrics: createMetricsRegistry() });
    await next.start();
    expect(next.list({}).items.map((s) => [s.key, s.reference.frames])).toEqual([
      ['a', 100],
      ['cam-1', 100],
    ]);
    // A message without pipeline metrics or a model is not drift's business.
    const { pipeline: _, ...bare } = telemetry(3);
    next.observe('cam-1', bare, now);
    expect(next.list({ device: 'cam-1' }).items[0]!.reference.frames).toBe(100);
    await next.stop();
  });

  it("decides a site's sampling for a window closed by the next window's first message, before any tick closed it", async () => {
    store = createSqliteStore({ file: ':memory:' });
    await store.devices.enroll({ id: 'cam-1', labels: { site: 'a' }, secretHash: 'x', now: T0 });
    await store.samplePolicies.put({
      selector: {},
      policy: { enabled: true, strategies: [{ kind: 'random', share: 0.1, probability: 0.5 }], limits: {} },
      updatedAt: T0,
      updatedBy: null,
    });
    let now = T0;
    const set: unknown[] = [];
    const monitor = createDriftMonitor({
      repo: store.drift,
      devices: store.devices,
      messages: store.messages,
      datasets: store.datasets,
      samplePolicies: {
        list: () => store!.samplePolicies.list(),
        set: (request) => {
          set.push(request);
          return Promise.resolve(null);
        },
      },
      audit: noAudit,
      bus: createEventBus({ clock: { now: () => now } }),
      metrics: createMetricsRegistry(),
      clock: { now: () => now },
      timers: { setInterval: () => ({}), clearInterval: () => {} },
      logger: pino({ level: 'silent' }),
      config: DriftConfig.parse({ referenceS: 10, windowS: 10, samplingWindows: 1, minDetections: 50 }),
      isLeader: () => true,
    });
    await monitor.start();
    monitor.observe('cam-1', telemetry(1), T0 + 1); // the reference
    now = T0 + 10_001;
    monitor.observe('cam-1', telemetry(2, 5), now); // window 1: shifted
    now = T0 + 20_001;
    monitor.observe('cam-1', telemetry(3, 5), now); // window 2's first message closes window 1
    expect(monitor.list({ scope: 'site' }).items[0]!.band).toBe('major');
    await monitor.tick(); // within window 2: nothing left to close, but a decision is due
    expect(set).toMatchObject([{ selector: { labels: { site: 'a' } }, policy: { strategies: [{ probability: 1 }] } }]);
    await monitor.stop();
  });

  it('builds a dataset reference from its predictions, one frame per image, skipping malformed ones', () => {
    const sums = sumsOfPredictions([
      [
        { box: [0, 0, 1, 1], score: 0.72, classId: 0, label: 'person' },
        { box: [0, 0, 1, 1], score: 0.31, classId: 1, label: 'car' },
      ],
      [{ box: [0, 0, 1, 1], score: 1, classId: 0, label: 'person' }, { score: 'high' }],
      'not predictions',
    ]);
    expect(sums.frames).toBe(3);
    expect(sums.detections).toBe(3);
    expect(sums.classes).toEqual({ person: 2, car: 1 });
    expect(sums.confidence[14]).toBe(1);
    expect(sums.confidence[6]).toBe(1);
    expect(sums.confidence[19]).toBe(1);
    expect(sums.nearDetections).toBe(0);
  });

  it('builds a pinned reference from stored telemetry rows, classes weighted by frames', () => {
    const row = (frames: number, per1000: number): TelemetrySample => ({
      deviceId: 'cam-1',
      receivedAt: T0,
      modelSha256: SHA,
      frames,
      errors: 0,
      windowS: 10,
      latencyP95: null,
      detectionsPer1000: { person: per1000 },
      confidence: Array.from({ length: CONFIDENCE_BINS }, (_, bin) => (bin === 10 ? frames : 0)),
      shadow: null,
    });
    const sums = sumsOfTelemetry([row(100, 500), row(300, 1000)]);
    expect(sums).toMatchObject({ frames: 400, messages: 2, detections: 400, classes: { person: 350 } });
  });
});
