import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPair } from '@edgeloop/firmware-images';
import { type ModelAssignment, PipelineMetrics, Telemetry, topicFor } from '@edgeloop/protocol';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PPOCR_DET_MANIFEST_PATH, ppocrDetModelPath } from '../../src/vision/bundled-models.ts';
import { type Observer, publishAs, startBroker, startObserver, type TestBroker } from '../support/broker.ts';
import { type ModelServer, startModelServer } from '../support/model-server.ts';
import { assignmentOf, registryPath, signedBytes } from '../support/releases.ts';
import { writeModel, yoloBytes, yoloManifest } from '../support/yolo-variants.ts';

/*
 * kill -9 of the agent process in the middle of a model update: during the download (the
 * restarted agent resumes with a Range request from the bytes on disk) and during the switch
 * (loading/warming: the update resumes under the loop guard; active before commit: the old model
 * comes back). After every restart the agent runs a working model, shown by its telemetry.
 */

const bin = fileURLToPath(new URL('../../bin/edgeloop-agent.js', import.meta.url));
const DEVICE = 'cam-crash-01';
const PASSWORD = 'crash-secret';
const topic = (channel: Parameters<typeof topicFor>[1]) => topicFor(DEVICE, channel);
const keys = generateKeyPair();

let dir: string;
let broker: TestBroker;
let watcher: Observer;
let server: ModelServer;
let desiredVersion = 0;
const children: ChildProcess[] = [];

beforeAll(async () => {
  server = await startModelServer({ credentials: { username: DEVICE, password: PASSWORD } });
});
afterAll(() => server.close());
beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-crash-'));
  broker = await startBroker({ credentials: { [DEVICE]: PASSWORD } });
  watcher = await startObserver(broker.url, [`fleet/v1/devices/${DEVICE}/+`]);
  server.requests.length = 0;
  server.throttle(64 * 1024, 0);
});
afterEach(async () => {
  for (const child of children.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await watcher.close();
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(options: {
  source: Record<string, unknown>;
  health: Record<string, unknown>;
  warmupRuns: number;
}) {
  writeFileSync(path.join(dir, 'mqtt.secret'), PASSWORD);
  writeFileSync(path.join(dir, 'release.pub'), keys.publicKeyPem);
  const local = writeModel(dir, yoloBytes({ layout: 'yolov8', anchors: 20 }), yoloManifest('local-det', '0.1.0'));
  writeFileSync(
    path.join(dir, 'agent.json'),
    JSON.stringify({
      deviceId: DEVICE,
      mqtt: { url: broker.url, passwordFile: 'mqtt.secret', reconnect: { initialMs: 50, maxMs: 300 } },
      dataDir: 'state',
      controlPlaneUrl: server.url,
      telemetry: { intervalS: 0.5 },
      outbox: { fsync: 'never' },
      hardware: { profile: 'x86-gpu' },
      vision: {
        source: options.source,
        model: { path: path.basename(local.modelPath), manifestPath: path.basename(local.manifestPath) },
        providers: ['cpu'],
        threads: { intraOp: 1 },
        cameraHealth: { enabled: false },
      },
      models: {
        trustedKeys: ['release.pub'],
        health: options.health,
        warmupRuns: options.warmupRuns,
        download: { initialRetryMs: 50, maxRetryMs: 200 },
      },
    }),
  );
}

function startAgent(): { child: ChildProcess; output: () => string; exited: Promise<unknown> } {
  const child = spawn(process.execPath, [bin, '--config', 'agent.json'], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', EDGELOOP_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  return { child, output: () => output, exited };
}

async function kill(agent: { child: ChildProcess; exited: Promise<unknown> }): Promise<void> {
  agent.child.kill('SIGKILL');
  await agent.exited;
}

type Event = { type: string; bootId: string; rolloutId?: string; data: Record<string, unknown> };
const updates = (rolloutId: string): Event[] =>
  (watcher.json(topic('events')) as unknown as Event[]).filter(
    (e) => e.type === 'model.update' && e.rolloutId === rolloutId,
  );
const bootOf = (agentStarted: number): string | undefined =>
  (watcher.json(topic('events')) as unknown as Event[]).filter((e) => e.type === 'agent.started')[agentStarted]?.bootId;

async function assign(model: ModelAssignment): Promise<void> {
  desiredVersion += 1;
  await publishAs(
    watcher,
    topic('desired'),
    { version: desiredVersion, issuedAt: Date.now(), model },
    { retain: true },
  );
}

/** The next telemetry of boot `bootId` whose pipeline processed frames; returns its pipeline. */
async function workingPipeline(bootId: () => string | undefined, output: () => string): Promise<PipelineMetrics> {
  const find = () =>
    watcher
      .json(topic('telemetry'))
      .map((message) => Telemetry.parse(message))
      .find((t) => t.bootId === bootId() && (t.pipeline?.framesProcessed ?? 0) > 0);
  await watcher
    .waitFor(() => find() !== undefined, 20_000, 'telemetry with processed frames')
    .catch((error: Error) => {
      throw new Error(`${error.message}; agent output:\n${output()}`);
    });
  return PipelineMetrics.parse(find()?.pipeline);
}

describe('agent killed with SIGKILL mid-update', () => {
  it('resumes an interrupted download with a Range request from the bytes on disk', async () => {
    writeConfig({
      source: { kind: 'synthetic', width: 160, height: 120, fps: 30 },
      health: { minFrames: 5, minDurationS: 0.2, maxDurationS: 10, latencyFloorMs: 250 },
      warmupRuns: 2,
    });
    const bytes = yoloBytes({ layout: 'yolov8', anchors: 40_000 });
    const { signed } = await signedBytes(dir, bytes, { keys, manifest: yoloManifest('det', '2.0.0'), counter: 2 });
    server.serve(registryPath(signed), bytes);
    server.throttle(32 * 1024, 20);
    const part = path.join(dir, 'state', 'models', 'downloads', `${signed.release.sha256}.part`);

    const first = startAgent();
    await workingPipeline(() => bootOf(0), first.output);
    await assign(assignmentOf(signed, { rolloutId: 'r-download' }));
    await watcher.waitFor(() => (server.requests[0]?.bytesSent ?? 0) >= 600 * 1024, 20_000, 'half the download');
    await kill(first);
    const onDisk = statSync(part).size;
    expect(onDisk).toBeGreaterThan(0);
    expect(onDisk).toBeLessThan(bytes.length);

    server.throttle(256 * 1024, 0);
    const second = startAgent();
    await watcher.waitFor(
      () => updates('r-download').some((e) => e.data.state === 'committed' || e.data.state === 'reverted'),
      30_000,
      'the update to end',
    );
    expect(updates('r-download').at(-1)?.data).toMatchObject({ state: 'committed' });
    const restarted = updates('r-download').find((e) => e.bootId === bootOf(1));
    expect(restarted?.data).toMatchObject({ state: 'downloading', from: 'downloading', restarted: true });
    const downloaded = updates('r-download').find((e) => e.data.state === 'verifying');
    expect(downloaded?.data).toMatchObject({ resumedFrom: onDisk, bytes: bytes.length });
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]).toMatchObject({
      range: `bytes=${onDisk}-`,
      status: 206,
      bytesSent: bytes.length - onDisk,
    });
    expect(existsSync(part)).toBe(false);
    expect(readFileSync(path.join(dir, 'state', 'models', 'slot-a.onnx')).equals(bytes)).toBe(true);
    const pipeline = await workingPipeline(() => bootOf(1), second.output);
    await watcher.waitFor(
      () =>
        watcher
          .json(topic('telemetry'))
          .some((t) => (t.pipeline as PipelineMetrics | undefined)?.model?.sha256 === signed.release.sha256),
      10_000,
      'telemetry of the new model',
    );
    expect(pipeline.framesProcessed).toBeGreaterThan(0);
  }, 120_000);

  it('runs a working model after a kill while warming and another while active before the commit', async () => {
    writeConfig({
      source: { kind: 'synthetic', width: 320, height: 240, fps: 10 },
      // The health check outlasts the test: the switch stays uncommitted until the kill.
      health: { minFrames: 5, minDurationS: 300, maxDurationS: 600 },
      warmupRuns: 60,
    });
    const bytes = readFileSync(ppocrDetModelPath());
    const manifest = {
      ...JSON.parse(readFileSync(PPOCR_DET_MANIFEST_PATH, 'utf8')),
      name: 'ppocr-det',
      version: '4.0.0',
    };
    const { signed } = await signedBytes(dir, bytes, { keys, manifest, counter: 1 });
    server.serve(registryPath(signed), bytes);

    const first = startAgent();
    await workingPipeline(() => bootOf(0), first.output);
    await assign(assignmentOf(signed, { rolloutId: 'r-switch' }));
    await watcher.waitFor(() => updates('r-switch').some((e) => e.data.state === 'warming'), 30_000, 'warming');
    await kill(first);

    const second = startAgent();
    await watcher.waitFor(() => bootOf(1) !== undefined, 20_000, 'second boot');
    // Whatever the update does now, the old model serves frames.
    const during = await workingPipeline(() => bootOf(1), second.output);
    expect(during.model?.name).toBe('local-det');
    const resumed = updates('r-switch').find((e) => e.bootId === bootOf(1));
    expect(resumed?.data).toMatchObject({ state: 'loading', from: 'warming', loadAttempts: 1, restarted: true });
    await watcher.waitFor(
      () => updates('r-switch').some((e) => e.bootId === bootOf(1) && e.data.state === 'active'),
      30_000,
      'the switch',
    );
    await kill(second);

    const third = startAgent();
    await watcher.waitFor(() => bootOf(2) !== undefined, 20_000, 'third boot');
    const reverted = updates('r-switch').find((e) => e.bootId === bootOf(2));
    expect(reverted?.data).toMatchObject({ state: 'reverted', from: 'active', code: 'restarted_before_commit' });
    // The device's own log says it too, one line with the code and the reason (pino JSON on stdout).
    await watcher.waitFor(
      () => third.output().includes('"msg":"model update reverted: the previous model runs again"'),
      10_000,
      'the revert in the agent log',
    );
    const line = third
      .output()
      .split('\n')
      .find((text) => text.includes('model update reverted'));
    expect(JSON.parse(line ?? '{}')).toMatchObject({
      level: 40,
      component: 'model-manager',
      rolloutId: 'r-switch',
      code: 'restarted_before_commit',
      reason: expect.stringContaining('health check'),
    });
    const after = await workingPipeline(() => bootOf(2), third.output);
    expect(after.model?.name).toBe('local-det');
    const slots = JSON.parse(readFileSync(path.join(dir, 'state', 'models', 'slots.json'), 'utf8'));
    expect(slots).toMatchObject({ active: null, slots: { a: { ref: { sha256: signed.release.sha256 } } } });
  }, 120_000);
});
