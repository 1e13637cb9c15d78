import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApiClient, type ModelRef, type RolloutView, unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeModel, yoloBytes, yoloManifest } from '../../../agent/test/support/yolo-variants.ts';
import { createModelKit, type ModelKit } from '../model-kit.ts';
import { eventually, freePort, spawnControlPlane } from '../support.ts';

/*
 * Acceptance (issue 4): a real agent process running real ONNX models (onnxruntime, CPU) on a
 * synthetic camera is rolled from v1 to v2 by the real control plane's rollout engine, and back
 * to v1's bytes by a new signed release (a higher release counter: a deliberate rollback). A
 * release below the highest counter the device committed is refused on the device, and the
 * refusal's reason reaches the control plane. (The agent's other refusals — tampered bytes, bad
 * signature, unknown key, expiry, hardware — are covered in agent/test/model-update, since the
 * registry itself refuses such releases at upload.)
 */

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');

const ONE_DEVICE = {
  stages: [{ name: 'all', kind: 'percent' as const, percent: 100 }],
  evidence: { minDevices: 1, minReportingShare: 1, minFrames: 10, soakS: 2 },
  gates: { intervalS: 1, windowS: 5, failingWindowsRequired: 2 },
  canary: { minSize: 1 },
};

describe('a real agent rolled by the real control plane', () => {
  const work = mkdtempSync(join(tmpdir(), 'edgeloop-real-rollout-'));
  const token = `real-${randomBytes(12).toString('hex')}`;
  const deviceId = 'real-cam-01';
  let url = '';
  let kit: ModelKit;
  let cp: ChildProcess;
  let agent: ChildProcess;
  let v1: ModelRef;
  let v1File: string;
  let agentLog = '';

  const client = () => createApiClient({ baseUrl: url, token });
  const detail = () => unwrap(client().devices.get(deviceId));
  /** The model the agent's own telemetry says it is running, with frames processed. */
  const running = async () => {
    const telemetry = (await detail()).telemetry?.message.pipeline;
    return telemetry && telemetry.framesProcessed > 0 ? (telemetry.model?.sha256 ?? null) : null;
  };
  const rollOut = (model: ModelRef) =>
    unwrap(client().rollouts.create({ modelId: model.id, selector: { labels: { cam: 'real' } }, ...ONE_DEVICE }));
  const finished = async (id: string) => {
    const view = await unwrap(client().rollouts.get(id));
    return view.status === 'running' ? null : view;
  };

  beforeAll(async () => {
    const httpPort = await freePort();
    const mqttPort = await freePort();
    url = `http://127.0.0.1:${httpPort}`;
    kit = createModelKit(() => url, token);
    cp = (
      await spawnControlPlane({
        httpPort,
        mqttPort,
        dataDir: join(work, 'cp'),
        token,
        trustedKeys: kit.publicKeyPath,
        rolloutsTickMs: 250,
      })
    ).child;

    const models = join(work, 'models');
    mkdirSync(models, { recursive: true });
    const v1Files = writeModel(models, yoloBytes({ layout: 'yolov8' }), yoloManifest('det', '1.0.0', 'yolov8'));
    v1File = v1Files.modelPath;
    v1 = await kit.publishFile(v1File, yoloManifest('det', '1.0.0', 'yolov8'), 1);

    const enrolled = await unwrap(
      client().devices.enroll({ id: deviceId, labels: { cam: 'real', hardware: 'x86-cpu', site: 'lab' } }),
    );
    const dataDir = join(work, deviceId);
    mkdirSync(dataDir, { recursive: true });
    const config = join(dataDir, 'agent.json');
    writeFileSync(
      config,
      JSON.stringify({
        deviceId,
        mqtt: { url: `mqtt://127.0.0.1:${mqttPort}`, password: enrolled.credentials.password, keepaliveS: 10 },
        controlPlaneUrl: url,
        dataDir,
        telemetry: { intervalS: 1 },
        hardware: { profile: 'x86-cpu' },
        logLevel: 'warn',
        vision: {
          source: { kind: 'synthetic', width: 320, height: 240, fps: 15 },
          model: { path: v1Files.modelPath, manifestPath: v1Files.manifestPath },
          providers: ['cpu'],
          threads: { intraOp: 1 },
          cameraHealth: { enabled: false },
        },
        models: { trustedKeys: [kit.publicKeyPath], health: { minFrames: 10, minDurationS: 1 } },
      }),
    );
    agent = spawn(process.execPath, [join(root, 'agent/bin/edgeloop-agent.js'), '--config', config], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    agent.stderr?.on('data', (chunk) => {
      agentLog = (agentLog + String(chunk)).slice(-4000).replace(/\n/g, ' | ');
    });
    await eventually(async () => (await running()) === v1.sha256, 60_000, 'agent running v1', 250).catch(
      async (error) => {
        throw new Error(
          `${(error as Error).message}: ${JSON.stringify(await detail()).slice(0, 1000)}; agent: ${agentLog}`,
        );
      },
    );
  }, 120_000);

  afterAll(async () => {
    agent?.kill('SIGKILL');
    cp?.kill('SIGKILL');
    kit?.dispose();
    rmSync(work, { recursive: true, force: true });
  });

  it('goes v1 -> v2 through a rollout, and back to v1 bytes through a new signed release', async () => {
    const v2Files = writeModel(
      join(work, 'models'),
      yoloBytes({ layout: 'yolov5' }),
      yoloManifest('det', '2.0.0', 'yolov5'),
    );
    const v2 = await kit.publishFile(v2Files.modelPath, yoloManifest('det', '2.0.0', 'yolov5'), 2);
    expect(v2.sha256).not.toBe(v1.sha256);
    const up = await rollOut(v2);
    const upDone = (await eventually(() => finished(up.id), 90_000, 'v2 rollout finished', 250)) as RolloutView;
    expect(upDone.status).toBe('completed');
    await eventually(async () => (await running()) === v2.sha256, 30_000, 'agent running v2', 250);
    expect((await detail()).reported?.message.model?.highestReleaseCounter).toBe(2);

    // The deliberate rollback: v1's bytes, released again as 2.0.1 with counter 3.
    const back = await kit.publishFile(v1File, yoloManifest('det', '2.0.1', 'yolov8'), 3);
    expect(back.sha256).toBe(v1.sha256);
    const down = await rollOut(back);
    const downDone = (await eventually(
      () => finished(down.id),
      90_000,
      'rollback release finished',
      250,
    )) as RolloutView;
    expect(downDone.status).toBe('completed');
    await eventually(async () => (await running()) === v1.sha256, 30_000, 'agent running v1 bytes again', 250);
    const reported = (await detail()).reported?.message.model;
    expect(reported?.active?.id).toBe('det@2.0.1');
    expect(reported?.highestReleaseCounter).toBe(3);
  }, 240_000);

  it('refuses a release below the highest counter it committed, and the control plane sees why', async () => {
    const oldFiles = writeModel(
      join(work, 'models'),
      yoloBytes({ layout: 'yolov8', anchors: 40 }),
      yoloManifest('det', '0.9.0', 'yolov8'),
    );
    const old = await kit.publishFile(oldFiles.modelPath, yoloManifest('det', '0.9.0', 'yolov8'), 1);
    const rollout = await rollOut(old);
    const devices = await eventually(
      async () => {
        const list = await unwrap(client().rollouts.devices(rollout.id));
        const item = list.items.find((entry) => entry.deviceId === deviceId);
        return item?.update?.reason?.includes('release_counter_rollback') ? item : null;
      },
      60_000,
      'refusal reason at the control plane',
      250,
    );
    expect(devices?.update?.reason).toMatch(/^release_counter_rollback: /);
    const ended = (await eventually(() => finished(rollout.id), 60_000, 'refused rollout ended', 250)) as RolloutView;
    expect(ended.status).toBe('rolled_back');
    // The refused release never ran: the device kept serving v1's bytes.
    expect(await running()).toBe(v1.sha256);
  }, 120_000);
});
