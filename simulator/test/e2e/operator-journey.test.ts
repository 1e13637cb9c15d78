import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  createApiClient,
  EnrollDeviceResponse,
  FleetSummary,
  RolloutDryRun,
  RolloutEventList,
  RolloutView,
  VerdictView,
} from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeModel, yoloBytes, yoloManifest } from '../../../agent/test/support/yolo-variants.ts';
import { eventually, freePort } from '../support.ts';

/*
 * Acceptance (issue 13): the rollout journey as an operator meets it, through the CLI binaries only
 * (edgeloop-image, edgeloop, edgeloop-agent, edgeloop-sim), never the code behind them:
 *   keygen -> sign v1 and v2 -> serve -> upload v1 -> enroll 3 real agents (real ONNX on
 *   onnxruntime) -> edgeloop-sim with 60 devices on v1 -> upload v2 -> dry run -> roll out ->
 *   watch -> abort (every device back on v1) -> roll out again -> 100% -> a bad release (det@3.0.0)
 *   rolled back from its canary stage (every device back on v2).
 * It asserts the final models (from `edgeloop fleet`) and the audit of verdicts (from
 * `edgeloop rollouts events`): no verdict with less than its minimum evidence.
 */

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const BIN = {
  image: join(root, 'firmware-images/bin/edgeloop-image.js'),
  edgeloop: join(root, 'control-plane/bin/edgeloop.js'),
  agent: join(root, 'agent/bin/edgeloop-agent.js'),
  sim: join(root, 'simulator/bin/edgeloop-sim.js'),
};
const REAL_AGENTS = 3;
const SIM_DEVICES = 60;
const DEVICES = REAL_AGENTS + SIM_DEVICES;

type Run = { code: number; stdout: string; stderr: string };

describe('the operator journey from the CLI: 3 real agents and 60 simulated devices', () => {
  const work = mkdtempSync(join(tmpdir(), 'edgeloop-journey-'));
  const token = `journey-${randomBytes(12).toString('hex')}`;
  const children: ChildProcess[] = [];
  const logs = new Map<string, string>();
  let url = '';
  let mqttUrl = '';

  const env = () => ({ ...process.env, EDGELOOP_URL: url, EDGELOOP_TOKEN: token, NO_COLOR: '1' });
  const run = (bin: string, args: readonly string[]): Promise<Run> =>
    new Promise((done) => {
      execFile(
        process.execPath,
        [bin, ...args],
        { cwd: work, env: env(), timeout: 60_000 },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
          done({ code, stdout, stderr });
        },
      );
    });
  /** Runs a command that must succeed; returns its stdout. */
  const ok = async (bin: string, args: readonly string[]): Promise<string> => {
    const result = await run(bin, args);
    if (result.code !== 0) {
      throw new Error(
        `${bin.split('/').pop()} ${args.join(' ')}: exit ${result.code}\n${result.stderr}${result.stdout}`,
      );
    }
    return result.stdout;
  };
  const edgeloop = (...args: string[]) => ok(BIN.edgeloop, args);
  const json = async (...args: string[]): Promise<unknown> => JSON.parse(await edgeloop(...args, '--json'));
  const start = (
    name: string,
    bin: string,
    args: readonly string[],
    extraEnv: NodeJS.ProcessEnv = {},
  ): ChildProcess => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: work,
      env: { ...env(), ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer) => logs.set(name, `${logs.get(name) ?? ''}${chunk}`.slice(-6000));
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    children.push(child);
    return child;
  };
  const fleetModels = async () => FleetSummary.parse(await json('fleet')).pipeline.models;
  const rollout = async (id: string) => RolloutView.parse(await json('rollouts', 'get', id));
  const sign = (model: string, manifest: string, counter: number, out: string) =>
    ok(BIN.image, [
      'sign',
      '--key',
      'keys/release.key',
      '--model',
      model,
      '--manifest',
      manifest,
      '--counter',
      String(counter),
      '--out',
      out,
    ]);
  const specFile = (modelId: string, windowS = 8) => {
    const file = join(work, `rollout-${modelId.replace('@', '-')}-${windowS}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        modelId,
        selector: { labels: { fleet: 'journey' } },
        stages: [
          { name: 'canary', kind: 'canary', maxDurationS: 120 },
          { name: '50%', kind: 'percent', percent: 50, maxDurationS: 120 },
          { name: '100%', kind: 'percent', percent: 100, maxDurationS: 120 },
        ],
        canary: { perGroup: 1, minSize: 6, maxSize: 12 },
        evidence: {
          minDevices: 3,
          minReportingShare: 0.8,
          minFrames: 100,
          soakS: 4,
          minDeviceFrames: 10,
          failMinDevices: 3,
          failMinFrames: 50,
          failMinS: 4,
          minDetections: 50,
        },
        gates: { windowS, failingWindowsRequired: 2 },
        onTimeout: 'pause',
      }),
    );
    return file;
  };
  const explain = async (what: string, error: unknown) => {
    const tails = [...logs.entries()].map(([name, log]) => `--- ${name}\n${log.slice(-1500)}`).join('\n');
    throw new Error(`${what}: ${(error as Error).message}\n${tails}`);
  };

  beforeAll(async () => {
    const httpPort = await freePort();
    const mqttPort = await freePort();
    url = `http://127.0.0.1:${httpPort}`;
    mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;

    // The operator's signing key stays on their machine; the control plane gets only the .pub.
    await ok(BIN.image, ['keygen', '--out', 'keys']);
    const models = join(work, 'models');
    mkdirSync(models, { recursive: true });
    const v1 = writeModel(models, yoloBytes({ layout: 'yolov8' }), yoloManifest('det', '1.0.0', 'yolov8'));
    const v2 = writeModel(models, yoloBytes({ layout: 'yolov5' }), yoloManifest('det', '2.0.0', 'yolov5'));
    // det@3.0.0 is a bad release: on the real agents it sees nothing, on the simulated devices it
    // is 3x slower and sees 60% fewer objects (the simulator's --model-behaviour file).
    const v3 = writeModel(models, yoloBytes({ layout: 'yolov8', boxes: [] }), yoloManifest('det', '3.0.0', 'yolov8'));
    writeFileSync(
      join(work, 'behaviour.json'),
      JSON.stringify({ models: { 'det@3.0.0': { latencyFactor: 3, detectionFactor: 0.4, confidenceShift: -0.15 } } }),
    );
    await sign(v1.modelPath, v1.manifestPath, 1, 'det-1.0.0.release.json');
    await sign(v2.modelPath, v2.manifestPath, 2, 'det-2.0.0.release.json');
    await sign(v3.modelPath, v3.manifestPath, 3, 'det-3.0.0.release.json');

    const serve = start(
      'serve',
      BIN.edgeloop,
      [
        'serve',
        ...['--http-port', String(httpPort), '--mqtt-port', String(mqttPort), '--host', '127.0.0.1'],
        ...['--data-dir', join(work, 'cp'), '--trusted-keys', join(work, 'keys/release.pub')],
        ...['--rollouts-tick-ms', '250', '--log-level', 'warn'],
      ],
      { EDGELOOP_ADMIN_TOKEN: token },
    );
    serve.on('exit', (code) => logs.set('serve', `${logs.get('serve') ?? ''}\n[exited ${code}]`));
    // EDGELOOP_ADMIN_TOKEN is read from the environment only (never a flag: it would show in ps).
    const anonymous = createApiClient({ baseUrl: url, token: null });
    await eventually(async () => (await anonymous.healthz()).ok, 30_000, 'edgeloop serve up', 100).catch((e) =>
      explain('serve', e),
    );

    await edgeloop('models', 'upload', '--release', 'det-1.0.0.release.json', '--model', v1.modelPath);
    await edgeloop('models', 'upload', '--release', 'det-2.0.0.release.json', '--model', v2.modelPath);
    await edgeloop('models', 'upload', '--release', 'det-3.0.0.release.json', '--model', v3.modelPath);

    for (let i = 1; i <= REAL_AGENTS; i++) {
      const id = `cam-0${i}`;
      const enrolled = EnrollDeviceResponse.parse(
        await json(
          'devices',
          'enroll',
          id,
          '--label',
          'fleet=journey',
          '--label',
          'site=lab',
          '--label',
          'hardware=x86-cpu',
        ),
      );
      const dataDir = join(work, id);
      mkdirSync(dataDir, { recursive: true });
      const config = join(dataDir, 'agent.json');
      writeFileSync(
        config,
        JSON.stringify({
          deviceId: id,
          mqtt: { url: mqttUrl, password: enrolled.credentials.password, keepaliveS: 10 },
          controlPlaneUrl: url,
          dataDir,
          telemetry: { intervalS: 1 },
          hardware: { profile: 'x86-cpu' },
          logLevel: 'info',
          vision: {
            source: { kind: 'synthetic', width: 320, height: 240, fps: 10 },
            model: { path: v1.modelPath, manifestPath: v1.manifestPath },
            providers: ['cpu'],
            threads: { intraOp: 1 },
            cameraHealth: { enabled: false },
          },
          // The health check's latency budget is 20x the previous model's p95 here, not 5x: the whole
          // suite shares two cores, and a starved CPU must not pass for a slow model.
          models: {
            trustedKeys: [join(work, 'keys/release.pub')],
            health: { minFrames: 10, minDurationS: 1, latencyFactor: 20 },
          },
        }),
      );
      start(id, BIN.agent, ['--config', config]);
    }

    start('sim', BIN.sim, [
      ...['--control-plane', url, '--token', token, '--devices', String(SIM_DEVICES), '--prefix', 'sim'],
      ...['--label', 'fleet=journey', '--trusted-keys', join(work, 'keys/release.pub'), '--initial-model', 'det@1.0.0'],
      ...['--model-behaviour', join(work, 'behaviour.json')],
      ...['--telemetry-interval', '1', '--camera-fps', '3', '--health-check', '1', '--seed', '7', '--quiet'],
    ]);

    await eventually(
      async () => (await fleetModels())['det@1.0.0'] === DEVICES,
      120_000,
      `all ${DEVICES} devices online on det@1.0.0`,
      500,
    ).catch((e) => explain('fleet on v1', e));
  }, 240_000);

  afterAll(async () => {
    for (const child of children.reverse()) child.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  });

  it('dry-runs, rolls out, aborts back to v1, rolls out again to 100%, and rolls a bad release back, every verdict on evidence', async () => {
    // Dry run with windows too short for 3 fps cameras: the operator is told before anything starts.
    const tooShort = RolloutDryRun.parse(
      await json('rollouts', 'create', '--spec', specFile('det@2.0.0', 2), '--dry-run'),
    );
    expect(tooShort.warnings.join('\n')).toMatch(/stage canary: .* cannot collect its evidence/);
    // With 8 s windows every stage can collect its evidence; nothing is created.
    const plan = RolloutDryRun.parse(await json('rollouts', 'create', '--spec', specFile('det@2.0.0'), '--dry-run'));
    expect(plan.targetDevices).toBe(DEVICES);
    expect(plan.warnings).toEqual([]);
    expect(plan.stages.map((stage) => stage.name)).toEqual(['canary', '50%', '100%']);
    for (const stage of plan.stages)
      for (const gate of stage.gates) expect(gate, stage.name).toMatchObject({ feasible: true });
    expect((await json('rollouts', 'list')) as unknown[]).toEqual([]);

    // Roll out, watch it go live on the canaries, then abort: every device returns to v1.
    const first = RolloutView.parse(await json('rollouts', 'create', '--spec', specFile('det@2.0.0')));
    const watch = start('watch', BIN.edgeloop, ['rollouts', 'watch', first.id, '--json']);
    const watched = new Promise<number | null>((done) => watch.once('exit', (code) => done(code)));
    // Abort once the canaries run v2 (the rollout may already be past its canary stage by then).
    await eventually(async () => ((await fleetModels())['det@2.0.0'] ?? 0) >= 3, 90_000, 'canaries on v2', 250).catch(
      (e) => explain('canary', e),
    );
    await edgeloop('rollouts', 'abort', first.id, '--reason', 'operator journey: abort on purpose');
    expect(await watched).toBe(0); // watch ends by itself at a terminal status
    expect(logs.get('watch')).toContain('"aborted"');
    await eventually(
      async () => (await fleetModels())['det@1.0.0'] === DEVICES,
      90_000,
      'every device back on det@1.0.0',
      500,
    ).catch((e) => explain('abort', e));
    const aborted = await rollout(first.id);
    expect(aborted.status).toBe('aborted');
    expect(aborted.counts.reverting ?? 0).toBe(0);
    expect(aborted.counts.assigned ?? 0).toBe(0);

    // Roll out again: it reaches 100% and every device runs v2.
    const second = RolloutView.parse(await json('rollouts', 'create', '--spec', specFile('det@2.0.0')));
    const done = (await eventually(
      async () => {
        const view = await rollout(second.id);
        if (view.status !== 'running' && view.status !== 'completed') {
          throw new Error(`rollout ended ${view.status}: ${view.reason}`);
        }
        return view.status === 'completed' ? view : null;
      },
      240_000,
      'second rollout completed',
      1_000,
    ).catch((e) => explain('second rollout', e))) as RolloutView;
    expect(done.status).toBe('completed');
    await eventually(
      async () => (await fleetModels())['det@2.0.0'] === DEVICES,
      90_000,
      'every device on v2',
      500,
    ).catch(async (e) => {
      type Row = { deviceId: string; state: string; reason: string | null };
      const listed = (await json('rollouts', 'devices', second.id)) as Row[] | { items: Row[] };
      const odd = (Array.isArray(listed) ? listed : listed.items).filter((d) => d.state !== 'active');
      return explain(`fleet ${JSON.stringify(await fleetModels())}; not active: ${JSON.stringify(odd)}`, e);
    });

    // A bad release is rolled back from its canary stage, and every device ends on v2.
    const third = RolloutView.parse(await json('rollouts', 'create', '--spec', specFile('det@3.0.0')));
    const bad = (await eventually(
      async () => {
        const view = await rollout(third.id);
        if (view.status === 'completed') throw new Error('the bad release completed');
        return view.status === 'rolled_back' ? view : null;
      },
      180_000,
      'bad rollout rolled back',
      1_000,
    ).catch((e) => explain('bad rollout', e))) as RolloutView;
    expect(bad.reason).toMatch(/stage canary failed/);
    await eventually(
      async () => (await fleetModels())['det@2.0.0'] === DEVICES,
      90_000,
      'every device back on det@2.0.0',
      500,
    ).catch((e) => explain('after the bad rollout', e));
    expect((await rollout(third.id)).counts.reverting ?? 0).toBe(0);

    // The audit: every verdict names its own window, and none came with less than its minimum
    // evidence: a pass with the pass minimum, a failing gate with the fail minimum on both sides.
    const { evidence } = done.spec;
    for (const id of [first.id, second.id, third.id]) {
      const events = RolloutEventList.parse(await json('rollouts', 'events', id, '--type', 'verdict'));
      const verdicts = events.items.map((event) =>
        VerdictView.parse({ at: event.at, stage: event.stage, ...event.data }),
      );
      const windows = new Set<string>();
      for (const verdict of verdicts) {
        const key = `${verdict.stageIndex}:${verdict.window.index}`;
        expect(windows.has(key), `window ${key} judged twice`).toBe(false);
        windows.add(key);
        if (id !== third.id) expect(verdict.verdict, JSON.stringify(verdict)).not.toBe('fail');
        if (verdict.verdict === 'pass') {
          expect(verdict.evidence.reporting).toBeGreaterThanOrEqual(evidence.minDevices);
          expect(verdict.evidence.frames).toBeGreaterThanOrEqual(evidence.minFrames);
          expect(verdict.evidence.soakedS).toBeGreaterThanOrEqual(evidence.soakS);
        }
        for (const gate of verdict.gates.filter((g) => g.verdict === 'fail' && g.gate !== 'revert-rate')) {
          expect(verdict.evidence.frames).toBeGreaterThanOrEqual(evidence.failMinFrames);
          expect(verdict.evidence.soakedS).toBeGreaterThanOrEqual(evidence.failMinS);
          expect(gate.canary?.devices ?? 0).toBeGreaterThanOrEqual(evidence.failMinDevices);
          expect(gate.control?.devices ?? 0).toBeGreaterThanOrEqual(evidence.failMinDevices);
        }
      }
      if (id === second.id) expect(verdicts.filter((v) => v.verdict === 'pass')).toHaveLength(done.spec.stages.length);
      if (id === third.id) expect(verdicts.filter((v) => v.verdict === 'fail').length).toBeGreaterThanOrEqual(2);
      console.info(
        `journey ${id}: ${verdicts.length} verdicts (${verdicts.map((v) => `${v.stage}#${v.window.index}:${v.verdict}`).join(' ')})`,
      );
    }
    const table = await edgeloop('rollouts', 'get', second.id);
    expect(table).toContain('completed');
  }, 480_000);
});
