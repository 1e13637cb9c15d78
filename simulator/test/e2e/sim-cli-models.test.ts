import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ApiClient, createApiClient, type ModelRef, type RolloutSpecInput, unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModelKit, type ModelKit } from '../model-kit.ts';
import { type ControlPlaneProcess, eventually, freePort, spawnControlPlane } from '../support.ts';

/*
 * `edgeloop-sim` as an operator starts it, against a real `edgeloop serve`: with --trusted-keys
 * and --initial-model every simulated device runs the agent's real model manager, so a rollout
 * created through the API is downloaded, verified, switched and committed on each of them; a
 * --model-behaviour file makes a model crash at warm-up, and each device reverts it locally.
 */

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const SIM_BIN = join(root, 'simulator/bin/edgeloop-sim.js');
const DEVICES = 6;
const ALL_AT_ONCE = {
  selector: { labels: { fleet: 'cli' } },
  stages: [{ name: 'all', kind: 'percent', percent: 100 }],
  evidence: { minDevices: 1, minReportingShare: 0.5, minFrames: 10, soakS: 1 },
  gates: { windowS: 3, failingWindowsRequired: 2 },
  canary: { minSize: 1 },
} satisfies Omit<RolloutSpecInput, 'modelId'>;

describe('edgeloop-sim with --trusted-keys', () => {
  const work = mkdtempSync(join(tmpdir(), 'edgeloop-sim-cli-'));
  const token = `sim-${randomBytes(12).toString('hex')}`;
  let cp: ControlPlaneProcess;
  let sim: ChildProcess | null = null;
  let simLog = '';
  let kit: ModelKit;
  let v1: ModelRef;
  /** What every device runs after the previous test. */
  let running: ModelRef | null = null;
  const ids = Array.from({ length: DEVICES }, (_, i) => `cli-${String(i).padStart(4, '0')}`);

  let client: ApiClient;
  const reportedModels = async () =>
    Promise.all(ids.map(async (id) => (await unwrap(client.devices.get(id))).reported?.message.model));
  const rolloutStatus = async (id: string) => (await unwrap(client.rollouts.get(id))).status;
  const states = async (id: string) =>
    (await unwrap(client.rollouts.devices(id, { limit: 1000 }))).items.map((item) => item.state);

  beforeAll(async () => {
    const httpPort = await freePort();
    const mqttPort = await freePort();
    let url = '';
    kit = createModelKit(() => url, token);
    cp = await spawnControlPlane({
      httpPort,
      mqttPort,
      dataDir: join(work, 'cp'),
      token,
      trustedKeys: kit.publicKeyPath,
      rolloutsTickMs: 250,
    });
    url = cp.url;
    client = createApiClient({ baseUrl: cp.url, token });
    v1 = await kit.publish('det', '1.0.0', 1);
    const behaviour = join(work, 'behaviour.json');
    writeFileSync(behaviour, JSON.stringify({ models: { 'det@3.0.0': { crashOnLoad: true } } }));
    sim = spawn(
      process.execPath,
      [
        SIM_BIN,
        ...['--control-plane', cp.url, '--token', token, '--devices', String(DEVICES), '--prefix', 'cli'],
        ...['--trusted-keys', kit.publicKeyPath, '--initial-model', 'det@1.0.0', '--model-behaviour', behaviour],
        ...['--label', 'fleet=cli', '--telemetry-interval', '1', '--health-check', '0.5', '--quiet'],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const keep = (chunk: Buffer) => {
      simLog = (simLog + chunk.toString()).slice(-8192);
    };
    sim.stdout?.on('data', keep);
    sim.stderr?.on('data', keep);
  }, 60_000);

  afterAll(async () => {
    if (sim && sim.exitCode === null) {
      const exited = new Promise((done) => sim?.once('exit', done));
      sim.kill('SIGTERM');
      await exited;
    }
    cp?.child.kill('SIGKILL');
    kit?.dispose();
    rmSync(work, { recursive: true, force: true });
  }, 30_000);

  it('starts every device on the registry model --initial-model names', async () => {
    await eventually(
      async () => (await reportedModels()).every((model) => model?.active?.sha256 === v1.sha256),
      60_000,
      `every simulated device reports ${v1.id} (sim log: ${simLog})`,
      250,
    );
    expect(simLog).toContain(`devices start on det@1.0.0 (${v1.sha256.slice(0, 12)})`);
  }, 90_000);

  it('installs a rollout on every device through the real model manager, and reverts a model that crashes', async () => {
    const v2 = await kit.publish('det', '2.0.0', 2);
    const rollout = await unwrap(client.rollouts.create({ modelId: v2.id, ...ALL_AT_ONCE }));
    const models = (await eventually(
      async () => {
        const all = await reportedModels();
        return all.every((model) => model?.active?.sha256 === v2.sha256 && model.update?.state === 'committed')
          ? all
          : null;
      },
      60_000,
      `every simulated device commits ${v2.id}`,
      250,
    ))!;
    expect(models.every((model) => model?.update?.rolloutId === rollout.id)).toBe(true);
    expect(models.every((model) => model?.previous?.sha256 === v1.sha256)).toBe(true);
    await eventually(
      async () => (await rolloutStatus(rollout.id)) === 'completed',
      60_000,
      'the rollout completes',
      250,
    );

    // det@3.0.0 crashes at warm-up on the simulated devices (the --model-behaviour file).
    const v3 = await kit.publish('det', '3.0.0', 3);
    const crashing = await unwrap(client.rollouts.create({ modelId: v3.id, ...ALL_AT_ONCE }));
    // The device's own report of the revert is brief (the rollback that follows sends it back to
    // det@2.0.0, which it reports as already active), so the rollout's audit is read too: it keeps
    // each device it marked failed, with the reason the device reported.
    const refused = (await eventually(
      async () => {
        const all = await reportedModels();
        const live = all.filter(
          (model) => model?.update?.target.sha256 === v3.sha256 && model.update.state === 'reverted',
        );
        // The rollout's audit keeps every device it marked failed, with the reason the device gave.
        const events = await unwrap(client.rollouts.events(crashing.id, { type: 'devices', limit: 1000 }));
        const recorded = events.items
          .flatMap((event) => (event.data as { changes?: { state: string; reason: string | null }[] }).changes ?? [])
          .filter((change) => change.state === 'failed' && /warmup_failed/.test(change.reason ?? ''));
        return live.length + recorded.length > 0 ? { live, recorded } : null;
      },
      60_000,
      `a device reverts ${v3.id}`,
      250,
    ).catch(async (error) => {
      const view = await unwrap(client.rollouts.get(crashing.id));
      throw new Error(
        `${(error as Error).message}; rollout ${view.status} (${view.reason}) counts ${JSON.stringify(view.counts)}; sim: ${simLog.slice(-1500)}`,
      );
    }))!;
    for (const model of refused.live) {
      expect(model?.update?.code).toBe('warmup_failed');
      expect(model?.active?.sha256).toBe(v2.sha256);
    }
    await eventually(
      async () =>
        (await rolloutStatus(crashing.id)) === 'rolled_back' &&
        (await reportedModels()).every((model) => model?.active?.sha256 === v2.sha256),
      30_000,
      'the crashing rollout is rolled back, every device on the model it had',
      250,
    );
    running = v2;
  }, 180_000);

  it('reports a release of the bytes already running as a no-op, and returns every device to its model on abort without a restart', async () => {
    const current = running;
    if (!current) throw new Error('needs the previous test');
    // The same bytes as the running model, signed again as a new version.
    const same = await kit.publishFile(
      join(kit.dir, `det-${current.version}.onnx`),
      { name: 'det', version: '5.0.0', adapter: 'yolo', input: { width: 640, height: 640 }, labels: ['person'] },
      5,
    );
    expect(same.sha256).toBe(current.sha256);
    const noop = await unwrap(client.rollouts.create({ modelId: same.id, ...ALL_AT_ONCE }));
    await eventually(
      async () => {
        const all = await states(noop.id);
        return all.length === DEVICES && all.every((state) => state === 'unchanged');
      },
      30_000,
      'the control plane shows the same-bytes devices as unchanged, never active',
      250,
    );
    // Whether or not desired state reached them, no device switched, and one that got the
    // assignment said it was already running those bytes.
    for (const model of await reportedModels()) {
      expect(model?.active?.id).toBe(current.id);
      if (model?.update?.rolloutId === noop.id) {
        expect(model.update).toMatchObject({ state: 'committed', code: 'already_active', target: { id: same.id } });
      }
    }

    // Aborting it changes nothing either: every device stays on the model it had, none is left reverting.
    await unwrap(client.rollouts.act(noop.id, 'abort', 'same bytes'));
    await eventually(
      async () => (await states(noop.id)).every((state) => state === 'unchanged' || state === 'rolled_back'),
      30_000,
      'the aborted same-bytes rollout leaves no device reverting',
      250,
    );
    for (const model of await reportedModels()) expect(model?.active?.id).toBe(current.id);

    // A rollout held at its only stage (long soak), aborted once every device switched.
    const v6 = await kit.publish('det', '6.0.0', 6);
    const held = await unwrap(
      client.rollouts.create({
        modelId: v6.id,
        ...ALL_AT_ONCE,
        evidence: { ...ALL_AT_ONCE.evidence, soakS: 600 },
      }),
    );
    await eventually(
      async () => (await reportedModels()).every((model) => model?.active?.sha256 === v6.sha256),
      60_000,
      `every device switches to ${v6.id}`,
      250,
    );
    await unwrap(client.rollouts.act(held.id, 'abort', 'rehearsal'));
    await eventually(
      async () => (await reportedModels()).every((model) => model?.active?.sha256 === current.sha256),
      60_000,
      `every device is back on ${current.id}`,
      250,
    );
    await eventually(
      async () => (await states(held.id)).every((state) => state === 'rolled_back'),
      30_000,
      'no device stays reverting',
      250,
    );
    expect(sim?.exitCode).toBeNull();
  }, 180_000);
});
