import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DeviceDetail, type ModelRef, RolloutView } from '@edgeloop/protocol';
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
};

describe('edgeloop-sim with --trusted-keys', () => {
  const work = mkdtempSync(join(tmpdir(), 'edgeloop-sim-cli-'));
  const token = `sim-${randomBytes(12).toString('hex')}`;
  let cp: ControlPlaneProcess;
  let sim: ChildProcess | null = null;
  let simLog = '';
  let kit: ModelKit;
  let v1: ModelRef;
  const ids = Array.from({ length: DEVICES }, (_, i) => `cli-${String(i).padStart(4, '0')}`);

  const api = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${cp.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const json = (await response.json()) as unknown;
    if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${JSON.stringify(json)}`);
    return json;
  };
  const reportedModels = async () =>
    Promise.all(
      ids.map(async (id) => DeviceDetail.parse(await api('GET', `/api/v1/devices/${id}`)).reported?.message.model),
    );

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
    const rollout = RolloutView.parse(await api('POST', '/api/v1/rollouts', { modelId: v2.id, ...ALL_AT_ONCE }));
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
      async () => RolloutView.parse(await api('GET', `/api/v1/rollouts/${rollout.id}`)).status === 'completed',
      60_000,
      'the rollout completes',
      250,
    );

    // det@3.0.0 crashes at warm-up on the simulated devices (the --model-behaviour file).
    const v3 = await kit.publish('det', '3.0.0', 3);
    await api('POST', '/api/v1/rollouts', { modelId: v3.id, ...ALL_AT_ONCE });
    const refused = (await eventually(
      async () => {
        const all = await reportedModels();
        return all.some((model) => model?.update?.target.sha256 === v3.sha256 && model.update.state === 'reverted')
          ? all
          : null;
      },
      60_000,
      `a device reverts ${v3.id}`,
      250,
    ))!;
    const reverted = refused.filter((model) => model?.update?.target.sha256 === v3.sha256);
    for (const model of reverted) {
      if (model?.update?.state !== 'reverted') continue;
      expect(model.update.code).toBe('warmup_failed');
      expect(model.active?.sha256).toBe(v2.sha256);
    }
  }, 180_000);
});
