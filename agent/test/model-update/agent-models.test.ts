import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPair, signRelease } from '@edgeloop/firmware-images';
import {
  type ModelAssignment,
  PipelineMetrics,
  Reported,
  type SignedModelRelease,
  type SystemMetrics,
  Telemetry,
  topicFor,
} from '@edgeloop/protocol';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type Agent, createAgent } from '../../src/agent.ts';
import { loadConfig } from '../../src/config.ts';
import { createVision } from '../../src/vision/vision.ts';
import {
  eventually,
  type Observer,
  publishAs,
  startBroker,
  startObserver,
  type TestBroker,
} from '../support/broker.ts';
import { type ModelServer, startModelServer } from '../support/model-server.ts';
import { assignmentOf, DAY_MS, registryPath, signedBytes } from '../support/releases.ts';
import { nanModelBytes, sceneBoxes, writeModel, yoloBytes, yoloManifest } from '../support/yolo-variants.ts';

/*
 * The real agent (createAgent) with the real vision pipeline (synthetic camera, onnxruntime
 * sessions on generated ONNX models) against a real aedes broker and an HTTP model server:
 * desired state in, model.update events and Reported out, as the control plane sees them.
 */

const DEVICE = 'cam-models-01';
const PASSWORD = 'models-secret';
const topic = (channel: Parameters<typeof topicFor>[1]) => topicFor(DEVICE, channel);
const keys = generateKeyPair();
const system: SystemMetrics = {
  cpu: { loadPct: 20, cores: 2 },
  memory: { usedBytes: 1, totalBytes: 2 },
  disk: { usedBytes: 1, totalBytes: 2 },
  temperatures: { cpuC: 40, gpuC: null, zones: {} },
  uptimeS: 1,
};

let models: string;
let server: ModelServer;
let dataDir: string;
let desiredVersion = 0;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  models = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-agent-models-'));
  server = await startModelServer({ credentials: { username: DEVICE, password: PASSWORD } });
});
afterAll(async () => {
  await server.close();
  rmSync(models, { recursive: true, force: true });
});
beforeEach(() => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-agent-models-data-'));
  server.requests.length = 0;
  server.throttle(64 * 1024, 0);
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Signs `bytes` as det@version with `counter` and serves it. */
async function release(
  version: string,
  counter: number,
  bytes: Uint8Array,
  extra: { keys?: ReturnType<typeof generateKeyPair>; ttlMs?: number; issuedAt?: number; hardware?: string[] } = {},
): Promise<SignedModelRelease> {
  const manifest = {
    ...yoloManifest('det', version),
    ...(extra.hardware ? { compatibleHardware: extra.hardware } : {}),
  };
  const { signed } = await signedBytes(models, bytes, {
    keys: extra.keys ?? keys,
    manifest,
    counter,
    ...(extra.ttlMs !== undefined ? { ttlMs: extra.ttlMs } : {}),
    ...(extra.issuedAt !== undefined ? { issuedAt: extra.issuedAt } : {}),
    ...(extra.hardware ? { hardware: extra.hardware } : {}),
  });
  server.serve(registryPath(signed), bytes);
  return signed;
}

type Setup = { agent: Agent; watcher: Observer; broker: TestBroker };

async function setup(options: { brokerPort?: number } = {}): Promise<Setup> {
  const broker = await startBroker({ credentials: { [DEVICE]: PASSWORD } });
  cleanups.push(() => broker.close());
  const watcher = await startObserver(broker.url, [`fleet/v1/devices/${DEVICE}/+`]);
  cleanups.push(() => watcher.close());
  void options;
  writeFileSync(path.join(dataDir, 'release.pub'), keys.publicKeyPem);
  const local = writeModel(dataDir, yoloBytes({ layout: 'yolov8', anchors: 20 }), yoloManifest('local-det', '0.1.0'));
  const loaded = loadConfig({
    fileText: JSON.stringify({
      deviceId: DEVICE,
      mqtt: { url: broker.url, password: PASSWORD, reconnect: { initialMs: 50, maxMs: 200 } },
      dataDir,
      controlPlaneUrl: server.url,
      telemetry: { intervalS: 60 },
      outbox: { fsync: 'never' },
      hardware: { profile: 'x86-gpu' },
      vision: {
        source: { kind: 'synthetic', width: 160, height: 120, fps: 60 },
        model: { path: path.basename(local.modelPath), manifestPath: path.basename(local.manifestPath) },
        providers: ['cpu'],
        threads: { intraOp: 1 },
        cameraHealth: { enabled: false },
      },
      models: {
        trustedKeys: ['release.pub'],
        health: { minFrames: 8, minDurationS: 0.2, maxDurationS: 10, latencyFloorMs: 250 },
        shadow: { sampleShare: 1, maxExtraShare: 100 },
        warmupRuns: 2,
        download: { initialRetryMs: 20, maxRetryMs: 100 },
      },
    }),
    env: {},
    cwd: dataDir,
  });
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.error.problems));
  const agent = createAgent({ config: loaded.value, readSystem: async () => system, createVision });
  cleanups.push(() => agent.stop({ graceful: false }));
  await agent.start();
  // Enough frames for a health baseline (minFrames) before any update.
  await eventually(() => (agent.vision?.stats()?.framesProcessed ?? 0) > 20, 10_000, 'frames through the local model');
  return { agent, watcher, broker };
}

async function assign(watcher: Observer, model: ModelAssignment | null): Promise<void> {
  desiredVersion += 1;
  await publishAs(
    watcher,
    topic('desired'),
    { version: desiredVersion, issuedAt: Date.now(), model },
    { retain: true },
  );
}

type UpdateEvent = { rolloutId?: string; data: { state: string; code: string | null; target: { sha256: string } } };

function updates(watcher: Observer, rolloutId?: string): UpdateEvent[] {
  return (watcher.json(topic('events')) as unknown as Array<UpdateEvent & { type: string }>).filter(
    (event) => event.type === 'model.update' && (rolloutId === undefined || event.rolloutId === rolloutId),
  );
}

async function ended(watcher: Observer, rolloutId: string): Promise<UpdateEvent> {
  await watcher.waitFor(
    () => updates(watcher, rolloutId).some((e) => e.data.state === 'committed' || e.data.state === 'reverted'),
    20_000,
    `rollout ${rolloutId} to end`,
  );
  return updates(watcher, rolloutId).find((e) => e.data.state === 'committed' || e.data.state === 'reverted')!;
}

function lastReported(watcher: Observer): Reported {
  return Reported.parse(watcher.json(topic('reported')).at(-1));
}

async function telemetryNow(setup: Setup): Promise<Telemetry> {
  const before = setup.watcher.json(topic('telemetry')).length;
  await setup.agent.telemetry.tick();
  await setup.watcher.waitFor(() => setup.watcher.json(topic('telemetry')).length > before, 5000, 'telemetry');
  return Telemetry.parse(setup.watcher.json(topic('telemetry')).at(-1));
}

describe('agent model updates', () => {
  it('goes v1 -> v2 -> back to v1 by a new signed release of its bytes, reusing the slot', async () => {
    const s = await setup();
    const v1Bytes = yoloBytes({ layout: 'yolov8', anchors: 30 });
    const v1 = await release('1.0.0', 1, v1Bytes);
    const v2 = await release('2.0.0', 2, yoloBytes({ layout: 'yolov5', anchors: 30 }));

    await assign(s.watcher, assignmentOf(v1, { rolloutId: 'r1' }));
    expect((await ended(s.watcher, 'r1')).data.state).toBe('committed');
    await assign(s.watcher, assignmentOf(v2, { rolloutId: 'r2' }));
    expect((await ended(s.watcher, 'r2')).data.state).toBe('committed');
    expect(s.agent.vision?.activeModel()?.ref.sha256).toBe(v2.release.sha256);
    expect(server.requests.map((r) => r.path)).toEqual([registryPath(v1), registryPath(v2)]);

    const back = await release('1.0.1', 3, v1Bytes);
    await assign(s.watcher, assignmentOf(back, { rolloutId: 'r3' }));
    expect((await ended(s.watcher, 'r3')).data).toMatchObject({ state: 'committed' });
    expect(updates(s.watcher, 'r3').map((e) => e.data.state)).toEqual([
      'notified',
      'verifying',
      'loading',
      'warming',
      'active',
      'committed',
    ]);
    expect(server.requests).toHaveLength(2);
    expect(s.agent.vision?.activeModel()?.ref).toMatchObject({ version: '1.0.1', sha256: v1.release.sha256 });

    await s.watcher.waitFor(() => lastReported(s.watcher).model?.update?.rolloutId === 'r3', 5000, 'reported r3');
    expect(lastReported(s.watcher).model).toMatchObject({
      active: { id: 'det@1.0.1', sha256: v1.release.sha256 },
      previous: { id: 'det@2.0.0' },
      update: { rolloutId: 'r3', state: 'committed' },
      highestReleaseCounter: 3,
    });
    expect(lastReported(s.watcher).providers).toEqual(['cpu']);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const telemetry = await telemetryNow(s);
    const pipeline = PipelineMetrics.parse(telemetry.pipeline);
    expect(pipeline.model?.sha256).toBe(v1.release.sha256);
    expect(pipeline.framesProcessed).toBeGreaterThan(0);
  });

  it('refuses bad releases, each with its own code in the event and in Reported, and keeps the old model', async () => {
    const s = await setup();
    const good = await release('5.0.0', 5, yoloBytes({ layout: 'yolov8', anchors: 30 }));
    await assign(s.watcher, assignmentOf(good, { rolloutId: 'r-good' }));
    expect((await ended(s.watcher, 'r-good')).data.state).toBe('committed');

    const bytes = (anchors: number) => yoloBytes({ layout: 'yolov8', anchors });
    const tamperedBytes = bytes(31);
    const tampered = await release('6.0.0', 6, tamperedBytes);
    const flipped = Buffer.from(tamperedBytes);
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 0x01;
    server.serve(registryPath(tampered), flipped);
    const signedOk = await release('6.1.0', 7, bytes(33));
    const badSignature = { ...signedOk, release: { ...signedOk.release, issuedAt: signedOk.release.issuedAt + 1 } };
    const unknownKey = await release('6.2.0', 8, bytes(34), { keys: generateKeyPair() });
    const expired = await release('6.3.0', 9, bytes(35), { issuedAt: Date.now() - 2 * DAY_MS, ttlMs: DAY_MS });
    const lower = await release('6.4.0', 4, bytes(36));
    const otherHardware = await release('6.5.0', 10, bytes(37), { hardware: ['rpi5'] });
    const cases: Array<[string, SignedModelRelease]> = [
      ['hash_mismatch', tampered],
      ['bad_signature', badSignature],
      ['unknown_key', unknownKey],
      ['expired', expired],
      ['release_counter_rollback', lower],
      ['hardware_incompatible', otherHardware],
    ];
    for (const [code, signed] of cases) {
      const rolloutId = `r-${code}`;
      await assign(s.watcher, assignmentOf(signed, { rolloutId }));
      const end = await ended(s.watcher, rolloutId);
      expect(end.data).toMatchObject({ state: 'reverted', code });
      await s.watcher.waitFor(
        () => lastReported(s.watcher).model?.update?.rolloutId === rolloutId,
        5000,
        `reported ${rolloutId}`,
      );
      const reported = lastReported(s.watcher).model;
      expect(reported?.update).toMatchObject({
        state: 'reverted',
        reason: expect.stringMatching(new RegExp(`^${code}: `)),
      });
      expect(reported?.active?.sha256).toBe(good.release.sha256);
      expect(s.agent.vision?.activeModel()?.ref.sha256).toBe(good.release.sha256);
    }
    // Only the tampered one was downloaded; the others were refused before any byte moved.
    expect(server.requests.map((r) => r.path)).toEqual([registryPath(good), registryPath(tampered)]);
    const codes = cases.map(([code]) => code);
    expect(new Set(codes).size).toBe(codes.length);
    // A release signed again properly with the same key is accepted: the refusals were about the releases.
    const resigned = signRelease({ release: { ...signedOk.release }, privateKeyPem: keys.privateKeyPem });
    await assign(s.watcher, assignmentOf(resigned, { rolloutId: 'r-resigned' }));
    expect((await ended(s.watcher, 'r-resigned')).data.state).toBe('committed');
  });

  it('reverts locally, offline, a model whose outputs are NaN, and reports it once back online', async () => {
    const s = await setup();
    const v1 = await release('1.0.0', 1, yoloBytes({ layout: 'yolov8', anchors: 30 }));
    await assign(s.watcher, assignmentOf(v1, { rolloutId: 'r1' }));
    expect((await ended(s.watcher, 'r1')).data.state).toBe('committed');

    const nan = await release('3.0.0', 3, nanModelBytes(400));
    server.throttle(4 * 1024, 20);
    await assign(s.watcher, assignmentOf(nan, { rolloutId: 'r-nan' }));
    await s.watcher.waitFor(
      () => updates(s.watcher, 'r-nan').some((e) => e.data.state === 'downloading'),
      10_000,
      'download',
    );
    // The broker goes away: the update goes on over HTTP, and the revert needs no network.
    const port = s.broker.port;
    await s.broker.close();
    await eventually(() => s.agent.models?.record()?.state === 'reverted', 20_000, 'local revert');
    expect(s.agent.models?.record()).toMatchObject({ rolloutId: 'r-nan', code: 'health_non_finite' });
    expect(s.agent.vision?.activeModel()?.ref.sha256).toBe(v1.release.sha256);
    expect(s.agent.link.state).not.toBe('connected');

    let admit: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      admit = resolve;
    });
    const again = await startBroker({ credentials: { [DEVICE]: PASSWORD }, port, admitDevices: gate });
    cleanups.push(() => again.close());
    const watcher = await startObserver(again.url, [`fleet/v1/devices/${DEVICE}/+`], '2');
    cleanups.push(() => watcher.close());
    admit();
    await watcher.waitFor(
      () => updates(watcher, 'r-nan').some((e) => e.data.state === 'reverted'),
      15_000,
      'the revert, reported',
    );
    const states = updates(watcher, 'r-nan').map((e) => e.data.state);
    expect(states.slice(-3)).toEqual(['warming', 'active', 'reverted']);
    expect(updates(watcher, 'r-nan').at(-1)?.data).toMatchObject({ code: 'health_non_finite' });
  });

  it('reverts a model that detects nothing where the old one saw objects', async () => {
    const s = await setup();
    const blind = await release('4.0.0', 4, yoloBytes({ layout: 'yolov8', anchors: 30, boxes: [] }));
    await assign(s.watcher, assignmentOf(blind, { rolloutId: 'r-blind' }));
    const end = await ended(s.watcher, 'r-blind');
    expect(end.data).toMatchObject({ state: 'reverted', code: 'health_empty_output' });
    expect((end.data as unknown as { health: { framesWithDetections: number } }).health.framesWithDetections).toBe(0);
    expect(s.agent.vision?.activeModel()?.ref.name).toBe('local-det');
  });

  it('shadows a candidate, reports agreement in telemetry, and switches to it when promoted', async () => {
    const s = await setup();
    const candidate = await release(
      '7.0.0',
      7,
      yoloBytes({ layout: 'yolov8', anchors: 30, boxes: sceneBoxes({ withoutDog: true }) }),
    );
    const shadow = assignmentOf(candidate, { rolloutId: 'r-shadow', mode: 'shadow' });
    await assign(s.watcher, shadow);
    await s.watcher.waitFor(
      () => updates(s.watcher, 'r-shadow').some((e) => e.data.state === 'shadow'),
      10_000,
      'shadow state',
    );
    await s.watcher.waitFor(() => lastReported(s.watcher).model?.shadow != null, 5000, 'reported shadow');
    expect(lastReported(s.watcher).model).toMatchObject({
      active: { name: 'local-det' },
      shadow: { sha256: candidate.release.sha256 },
      update: { state: 'shadow' },
    });
    await telemetryNow(s);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const telemetry = await telemetryNow(s);
    expect(telemetry.shadow).toMatchObject({
      candidate: { sha256: candidate.release.sha256 },
      precision: 1,
      perClass: { dog: { recall: 0, precision: null } },
    });
    expect(telemetry.shadow?.framesCompared).toBeGreaterThan(0);
    expect(telemetry.shadow?.recall).toBeCloseTo(2 / 3, 3);

    await assign(s.watcher, { ...shadow, mode: 'active' });
    // Promoted: the table goes shadow -> active, and the health check judges it (no dog: still objects).
    expect((await ended(s.watcher, 'r-shadow')).data.state).toBe('committed');
    expect(updates(s.watcher, 'r-shadow').map((e) => e.data.state)).toEqual([
      'notified',
      'downloading',
      'verifying',
      'loading',
      'warming',
      'shadow',
      'active',
      'committed',
    ]);
    expect(s.agent.vision?.activeModel()?.ref.sha256).toBe(candidate.release.sha256);
    expect((await telemetryNow(s)).shadow).toBeUndefined();
  });
});
