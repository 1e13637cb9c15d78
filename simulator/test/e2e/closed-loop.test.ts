import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type ApiClient,
  createApiClient,
  type DriftState,
  ModelLineage,
  RetrainingRun,
  type RolloutView,
  unwrap,
} from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sceneBoxes, writeModel, yoloBytes, yoloManifest } from '../../../agent/test/support/yolo-variants.ts';
import { createStandInTrainer, type StandInTrainer, verifySignature } from '../closed-loop-trainer.ts';
import { eventually, freePort } from '../support.ts';

/*
 * Acceptance (issue 9 §6): the MLOps loop closed in one scenario, through the real binaries only
 * (edgeloop serve, edgeloop-sim, edgeloop, edgeloop-image, edgeloop-agent eval) and a stand-in
 * trainer (../closed-loop-trainer.ts) behind a real webhook:
 *
 *   simulator/scenarios/closed-loop.json: 200 devices on sites a-d on det@1.0.0, capturing hard
 *   samples; at minute 1 it snows at site b (the model is less sure there)
 *     -> drift at b only -> b's sampling raised -> the retraining policy fires: dataset version
 *        frozen, signed webhook -> the trainer pulls, labels, trains det@2.0.0, signs it with its
 *        lineage, uploads it, starts a rollout with a validation spec, evaluates it
 *     -> validation passes -> shadow -> canary -> 100% -> b is stable on det@2.0.0
 *     -> the lineage endpoint shows samples -> dataset -> run -> model -> rollout -> outcome.
 *   Run 2 (manual): the trainer's det@3.0.0 is worse on the labelled set: stopped at the gate.
 *   Run 3 (manual): det@4.0.0 passes validation and shadow but fails frames on the devices:
 *   rolled back by the canary gates.
 *
 * Windows are short (drift 6 s, reference 20 s, gates 6 s) so the loop fits in a few minutes.
 * The timeline is printed and written to closed-loop-timeline.txt beside this file (git-ignored;
 * the README quotes a run of it). CLOSED_LOOP_LOG_DIR=DIR keeps every child process's whole log.
 */

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const BIN = {
  image: join(root, 'firmware-images/bin/edgeloop-image.js'),
  edgeloop: join(root, 'control-plane/bin/edgeloop.js'),
  agent: join(root, 'agent/bin/edgeloop-agent.js'),
  sim: join(root, 'simulator/bin/edgeloop-sim.js'),
};
const SCENARIO = join(root, 'simulator/scenarios/closed-loop.json');
const TIMELINE_FILE = join(root, 'simulator/test/e2e/closed-loop-timeline.txt');
const DEVICES = 200;
const SITES = ['a', 'b', 'c', 'd'];
const SECRET = `whsec-${randomBytes(16).toString('hex')}`;

type Run = { code: number; stdout: string; stderr: string };

/** The rollout spec every trained model gets (the trainer adds its validation). */
const rolloutSpec = (modelId: string) => ({
  modelId,
  selector: { labels: { fleet: 'closed-loop' } },
  stages: [
    { name: 'shadow', kind: 'shadow', maxDurationS: 120 },
    { name: 'canary', kind: 'canary', maxDurationS: 120 },
    { name: '100%', kind: 'percent', percent: 100, maxDurationS: 120 },
  ],
  canary: { perGroup: 1, minSize: 12, maxSize: 24 },
  evidence: {
    minDevices: 4,
    minReportingShare: 0.8,
    minFrames: 100,
    soakS: 3,
    minDeviceFrames: 5,
    failMinDevices: 4,
    failMinFrames: 60,
    failMinS: 3,
    minDetections: 50,
  },
  // A model retrained for the drifted site moves b's confidence back up: the confidence-psi gate
  // (canary against control, pooled over the sites) tolerates that; the other gates keep their defaults.
  gates: { windowS: 6, failingWindowsRequired: 2, maxPsi: 0.6 },
  onTimeout: 'pause',
});

describe('the closed loop: drift at site b, retraining, validation, canary, promotion', () => {
  const work = mkdtempSync(join(tmpdir(), 'edgeloop-closed-loop-'));
  const token = `loop-${randomBytes(12).toString('hex')}`;
  const children: ChildProcess[] = [];
  const logs = new Map<string, string>();
  /** Events with the time they happened (the control plane's own time where it says). */
  const events: { at: number; text: string }[] = [];
  let t0 = Date.now();
  let url = '';
  let client: ApiClient;
  let trainer: StandInTrainer;
  let observer: ReturnType<typeof setInterval> | null = null;
  /** Sites that left stable on det@1.0.0 at any time (drift must show at b only). */
  const drifted = new Set<string>();
  /** The site-b sample policy drift raised, as the observer first saw it (null: not yet). */
  let raisedAtB: { perMinute: number | undefined; at: number } | null = null;
  let champion = { id: 'det@1.0.0', sha256: '' };

  const note = (text: string, at = Date.now()) => {
    events.push({ at, text });
  };
  /** `mm:ss  event` lines from the scenario's start, in the order things happened. */
  const timeline = () =>
    [...events]
      .sort((a, b) => a.at - b.at)
      .map(({ at, text }) => {
        const s = Math.max(0, Math.round((at - t0) / 1000));
        return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}  ${text}`;
      });

  const env = () => ({ ...process.env, EDGELOOP_URL: url, EDGELOOP_TOKEN: token, NO_COLOR: '1' });
  const exec = (bin: string, args: readonly string[]): Promise<Run> =>
    new Promise((done) => {
      execFile(process.execPath, [bin, ...args], { cwd: work, env: env(), timeout: 60_000 }, (error, stdout, stderr) =>
        done({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
      );
    });
  const ok = async (bin: string, args: readonly string[]): Promise<string> => {
    const result = await exec(bin, args);
    if (result.code !== 0) {
      throw new Error(
        `${bin.split('/').pop()} ${args.join(' ')}: exit ${result.code}\n${result.stderr}${result.stdout}`,
      );
    }
    return result.stdout;
  };
  const edgeloop = (...args: string[]) => ok(BIN.edgeloop, args);
  const json = async (...args: string[]): Promise<unknown> => JSON.parse(await edgeloop(...args, '--json'));
  const start = (name: string, bin: string, args: readonly string[], extraEnv: NodeJS.ProcessEnv = {}) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: work,
      env: { ...env(), ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer) => logs.set(name, `${logs.get(name) ?? ''}${chunk}`.slice(-8000));
    if (process.env.CLOSED_LOOP_LOG_DIR) {
      const file = join(process.env.CLOSED_LOOP_LOG_DIR, `${name}.log`);
      const append = (chunk: Buffer) => writeFileSync(file, chunk, { flag: 'a' });
      child.stdout?.on('data', append);
      child.stderr?.on('data', append);
    }
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    children.push(child);
    return child;
  };
  const explain = (what: string, error: unknown): never => {
    const tails = [...logs.entries()].map(([name, log]) => `--- ${name}\n${log.slice(-1500)}`).join('\n');
    const trained = trainer?.errors.length ? `\n--- trainer errors\n${trainer.errors.join('\n')}` : '';
    throw new Error(`${what}: ${(error as Error).message}\n--- timeline\n${timeline().join('\n')}${trained}\n${tails}`);
  };

  const runs = async (): Promise<RetrainingRun[]> => (await unwrap(client.retraining.runs({ model: 'det' }))).items;
  const rollout = (id: string) => unwrap(client.rollouts.get(id));
  const fleetModels = async () => (await unwrap(client.fleet.summary())).pipeline.models;
  const siteStates = async (): Promise<DriftState[]> =>
    (await unwrap(client.drift.list({ scope: 'site' }))).items.filter((state) => SITES.includes(state.key));

  /** Watches the control plane once a second and notes every change of drift, sampling, runs and rollouts. */
  const observe = () => {
    const bands = new Map<string, string>();
    const runStatus = new Map<string, string>();
    const rolloutStatus = new Map<string, string>();
    let raised = false;
    let busy = false;
    observer = setInterval(() => {
      if (busy) return;
      busy = true;
      (async () => {
        for (const state of await siteStates()) {
          const key = `${state.key}/${state.modelId}`;
          const previous = bands.get(key);
          if (state.modelSha256 === champion.sha256 && champion.id === 'det@1.0.0' && state.band !== 'stable') {
            drifted.add(state.key);
          }
          if (previous === undefined && (!state.reference.complete || state.window === null)) continue;
          if (previous === undefined && state.band === 'stable') {
            bands.set(key, state.band);
            note(
              `drift  site ${state.key} on ${state.modelId}: reference complete (${state.reference.frames} frames), stable`,
              state.window?.to,
            );
            continue;
          }
          if (previous !== state.band) {
            bands.set(key, state.band);
            const n = state.numbers;
            const psi = n.confidencePsi === null ? '' : ` confidence PSI ${n.confidencePsi.toFixed(2)},`;
            const near = n.nearThresholdShare;
            note(
              `drift  site ${state.key} on ${state.modelId}: ${previous ?? 'first judged'} -> ${state.band}` +
                ` (${psi} near-threshold ${near.reference?.toFixed(2) ?? '-'} -> ${near.current?.toFixed(2) ?? '-'})`,
              state.window?.to,
            );
          }
        }
        const policies = (await unwrap(client.samples.policy.list())).items;
        const atB = policies.find((policy) => policy.selector.labels.site === 'b');
        if (Boolean(atB) !== raised) {
          raised = Boolean(atB);
          if (atB && !raisedAtB) raisedAtB = { perMinute: atB.policy.limits.perMinute, at: Date.now() };
          const action = raised ? 'drift.sampling-raised' : 'drift.sampling-restored';
          const audited = (await unwrap(client.audit.list({ action, target: 'site=b', limit: 1 }))).items[0];
          note(
            raised
              ? `sampling at site b raised by drift (perMinute ${atB?.policy.limits.perMinute ?? '-'}, same byte budget)`
              : 'sampling at site b back to the fleet policy',
            audited?.at,
          );
        }
        for (const run of await runs()) {
          if (runStatus.get(run.runId) === run.status) continue;
          if (!runStatus.has(run.runId)) {
            note(`run    ${run.runId} fired (${run.reason.detail}); froze ${run.datasetId}`, run.createdAt);
          }
          runStatus.set(run.runId, run.status);
          const code = run.lastStatusCode === null ? '' : `, HTTP ${run.lastStatusCode}`;
          note(`run    ${run.runId}: ${run.status} (attempts ${run.attempts}${code})`, run.updatedAt);
        }
        for (const view of (await unwrap(client.rollouts.list())).items) {
          const at =
            view.status === 'running' || view.status === 'paused' ? `${view.status} ${view.stage}` : view.status;
          if (rolloutStatus.get(view.id) === at) continue;
          rolloutStatus.set(view.id, at);
          const verdict = view.lastVerdict
            ? ` (last verdict: ${view.lastVerdict.stage} ${view.lastVerdict.verdict})`
            : '';
          const why = view.status === 'rolled_back' || view.status === 'paused' ? `: ${view.reason ?? ''}` : '';
          note(`rollout ${view.modelId}: ${at}${verdict}${why}`, view.updatedAt);
        }
      })()
        .catch((error: unknown) => {
          // Kept for a failure's explanation; the next poll tries again.
          logs.set('observer', `${logs.get('observer') ?? ''}${(error as Error).message}\n`.slice(-2000));
        })
        .finally(() => {
          busy = false;
        });
    }, 1000);
  };

  beforeAll(async () => {
    const httpPort = await freePort();
    const mqttPort = await freePort();
    url = `http://127.0.0.1:${httpPort}`;
    client = createApiClient({ baseUrl: url, token });

    await ok(BIN.image, ['keygen', '--out', 'keys']);
    const models = join(work, 'models');
    mkdirSync(models, { recursive: true });
    // The champion misses the dog: the better model the trainer makes sees it.
    const v1 = writeModel(models, yoloBytes({ boxes: sceneBoxes({ withoutDog: true }) }), yoloManifest('det', '1.0.0'));
    await ok(BIN.image, [
      ...['sign', '--key', 'keys/release.key', '--model', v1.modelPath, '--manifest', v1.manifestPath],
      ...['--counter', '1', '--out', 'det-1.0.0.release.json'],
    ]);

    const serve = start(
      'serve',
      BIN.edgeloop,
      [
        'serve',
        ...['--http-port', String(httpPort), '--mqtt-port', String(mqttPort), '--host', '127.0.0.1'],
        ...['--data-dir', join(work, 'cp'), '--trusted-keys', join(work, 'keys/release.pub')],
        ...['--rollouts-tick-ms', '250', '--log-level', 'warn'],
        ...['--drift-reference-s', '20', '--drift-window-s', '6', '--drift-tick-ms', '500'],
        ...['--drift-sampling-windows', '2', '--retraining-interval-s', '1'],
      ],
      { EDGELOOP_ADMIN_TOKEN: token },
    );
    serve.on('exit', (code) => logs.set('serve', `${logs.get('serve') ?? ''}\n[exited ${code}]`));
    await eventually(
      async () => (await createApiClient({ baseUrl: url, token: null }).healthz()).ok,
      30_000,
      'serve up',
    ).catch((e) => explain('serve', e));
    const uploaded = (await json(
      'models',
      'upload',
      '--release',
      'det-1.0.0.release.json',
      '--model',
      v1.modelPath,
    )) as {
      sha256: string;
    };
    champion = { id: 'det@1.0.0', sha256: uploaded.sha256 };
    const trainerToken = (await unwrap(client.tokens.create({ name: 'stand-in-trainer', role: 'operator' }))).secret;

    trainer = createStandInTrainer({
      secret: SECRET,
      controlPlaneUrl: url,
      token: trainerToken,
      work,
      keyPath: join(work, 'keys/release.key'),
      bins: BIN,
      plans: [
        { version: '2.0.0', kind: 'better' },
        { version: '3.0.0', kind: 'worse' },
        { version: '4.0.0', kind: 'devices-worse' },
      ],
      rolloutSpec,
      validation: { metric: 'map50', minDelta: 0 },
      log: note,
    });
    const hook = await trainer.start();

    // The fleet captures a little everywhere; drift raises b's share and rate within the budget.
    writeFileSync(
      join(work, 'sample-policy.json'),
      JSON.stringify({
        strategies: [{ kind: 'random', share: 0.5 }],
        limits: { perMinute: 1, bytesPerDay: 5_000_000 },
      }),
    );
    await edgeloop('samples', 'policy', 'set', '--file', 'sample-policy.json');
    writeFileSync(
      join(work, 'retraining-policy.json'),
      JSON.stringify({
        triggers: { drift: { band: 'major', windows: 2 } },
        cooldownS: 3600,
        dataset: { name: 'closed-loop', query: { site: 'b' } },
        webhook: { url: hook.url, secret: SECRET },
      }),
    );
    await edgeloop('retraining', 'policy', 'set', 'det', '--file', 'retraining-policy.json');

    t0 = Date.now();
    const sim = start('sim', BIN.sim, [
      ...['--control-plane', url, '--token', token, '--scenario', SCENARIO, '--prefix', 'cl'],
      ...[
        '--label',
        'fleet=closed-loop',
        '--trusted-keys',
        join(work, 'keys/release.pub'),
        '--initial-model',
        'det@1.0.0',
      ],
      ...['--samples-dir', join(work, 'spool'), '--telemetry-interval', '1', '--camera-fps', '10'],
      ...['--health-check', '1', '--seed', '9', '--quiet'],
    ]);
    sim.stderr?.on('data', (chunk: Buffer) => {
      const match = /closed-loop: (scene-change|scene-restore) on (\d+) devices/.exec(chunk.toString());
      if (match) note(`scene  ${match[1]} at site b (${match[2]} devices): it snows`);
    });
    note(
      `start  ${DEVICES} simulated devices on sites ${SITES.join(', ')} run det@1.0.0 (${SCENARIO.split('/').pop()})`,
    );
    await eventually(
      async () => (await fleetModels())['det@1.0.0'] === DEVICES,
      90_000,
      `${DEVICES} devices on det@1.0.0`,
      500,
    ).catch((e) => explain('fleet', e));
    note(`fleet  ${DEVICES} devices online on det@1.0.0`);
    observe();
  }, 180_000);

  afterAll(async () => {
    if (observer) clearInterval(observer);
    const text = `${timeline().join('\n')}\n`;
    writeFileSync(TIMELINE_FILE, text);
    console.info(`closed loop timeline (${TIMELINE_FILE}):\n${text}`);
    await trainer?.stop();
    for (const child of children.reverse()) child.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  });

  let first: RetrainingRun;

  it('drifts at site b only, raises its sampling, fires a signed webhook, and promotes the better model to 100%', async () => {
    // Drift at b, and b alone; the policy fires on it.
    first = (await eventually(
      async () => (await runs()).find((run) => run.reason.kind === 'drift') ?? null,
      150_000,
      'a drift-triggered run',
      1000,
    ).catch((e) => explain('drift run', e))) as RetrainingRun;
    expect(first.reason.numbers).toMatchObject({ site: 'b' });
    expect(first.parentModel).toEqual(champion);
    const states = await siteStates();
    expect(states.find((s) => s.key === 'b' && s.modelSha256 === champion.sha256)?.band).not.toBe('stable');
    for (const site of ['a', 'c', 'd']) {
      expect(states.find((s) => s.key === site && s.modelSha256 === champion.sha256)?.band, site).toBe('stable');
    }

    // The webhook: delivered, signed, and a forged one is told apart by the receiver.
    await eventually(() => trainer.runs.length >= 1, 120_000, 'the trainer trained run 1', 500).catch((e) =>
      explain('trainer run 1', e),
    );
    const listed = RetrainingRun.array().parse(await json('retraining', 'runs', '--model', 'det'));
    const delivered = listed.find((run) => run.runId === first.runId)!;
    expect(delivered.attempts).toBeGreaterThanOrEqual(1);
    expect(delivered.lastStatusCode).toBe(202);
    expect(['delivered', 'claimed', 'model-registered']).toContain(delivered.status);
    const webhook = trainer.lastWebhook!;
    expect(verifySignature(SECRET, webhook.body, webhook.signature)).toBe(true);
    const forged = Buffer.from(webhook.body.toString('utf8').replace('"drift"', '"manual"'));
    expect(verifySignature(SECRET, forged, webhook.signature)).toBe(false);
    const refused = await fetch(trainer.url!, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'X-Edgeloop-Signature-256': webhook.signature },
      body: forged,
    });
    expect(refused.status).toBe(401);
    expect(trainer.rejected).toBe(1);

    const trained = trainer.runs[0]!;
    expect(trained).toMatchObject({ runId: first.runId, modelId: 'det@2.0.0' });
    expect(trained.images).toBeGreaterThan(0);
    expect(trained.evaluation.candidate).toBe(1);
    expect(trained.evaluation.baseline).toBeCloseTo(2 / 3, 3);

    // Validation passes; shadow -> canary -> 100%.
    const done = (await eventually(
      async () => {
        const view = await rollout(trained.rolloutId);
        if (['rolled_back', 'aborted', 'paused'].includes(view.status)) {
          throw new Error(`rollout ${view.status}: ${view.reason}`);
        }
        return view.status === 'completed' ? view : null;
      },
      180_000,
      'det@2.0.0 rolled out to 100%',
      1000,
    ).catch((e) => explain('rollout det@2.0.0', e))) as RolloutView;
    const events = (await json('rollouts', 'events', done.id, '--type', 'verdict')) as {
      items: { stage: string; data: { verdict: string } }[];
    };
    const passed = events.items.filter((event) => event.data.verdict === 'pass').map((event) => event.stage);
    expect(passed).toEqual(['validation', 'shadow', 'canary', '100%']);
    await eventually(
      async () => (await fleetModels())['det@2.0.0'] === DEVICES,
      90_000,
      'every device on det@2.0.0',
      500,
    ).catch((e) => explain('fleet on det@2.0.0', e));
    champion = { id: 'det@2.0.0', sha256: trained.modelSha256 };
    note(`fleet  ${DEVICES} devices on det@2.0.0`);

    // Site b is stable on the retrained model, still in snow.
    await eventually(
      async () => {
        const b = (await siteStates()).find((s) => s.key === 'b' && s.modelSha256 === trained.modelSha256);
        return b?.reference.complete && b.window !== null && b.band === 'stable';
      },
      90_000,
      'site b stable on det@2.0.0',
      1000,
    ).catch((e) => explain('b stable', e));
    // Not only stable against its own reference: b's near-threshold share is back where det@1.0.0
    // had it before the snow, while det@1.0.0 on snow had it several times higher.
    const sites = await siteStates();
    const bOnV2 = sites.find((s) => s.key === 'b' && s.modelSha256 === trained.modelSha256)!;
    const bOnV1 = sites.find((s) => s.key === 'b' && s.modelSha256 !== trained.modelSha256)!;
    expect(bOnV2.numbers.nearThresholdShare.current).toBeLessThan(0.05);
    expect(bOnV1.numbers.nearThresholdShare.reference).toBeLessThan(0.05);
    expect(bOnV1.numbers.nearThresholdShare.current).toBeGreaterThan(0.1);
    note(
      `drift  site b on det@2.0.0 in snow: stable, near-threshold ${bOnV2.numbers.nearThresholdShare.current?.toFixed(2)} ` +
        `(det@1.0.0: ${bOnV1.numbers.nearThresholdShare.reference?.toFixed(2)} before the snow, ` +
        `${bOnV1.numbers.nearThresholdShare.current?.toFixed(2)} in it)`,
    );
    expect([...drifted]).toEqual(['b']);
    // b's sampling was raised by drift (twice the fleet's per-minute cap, the same byte budget).
    expect(raisedAtB, 'site b sampling raised').toMatchObject({ perMinute: 2 });
    const raisedAudit = (await unwrap(client.audit.list({ action: 'drift.sampling-raised' }))).items;
    expect(raisedAudit.map((entry) => entry.target)).toContain('site=b');

    // The lineage: samples -> dataset version -> run -> model -> rollout -> outcome.
    const lineage = ModelLineage.parse(await json('models', 'lineage', 'det', '2.0.0'));
    expect(lineage.model.lineage).toMatchObject({
      datasetVersion: first.datasetId,
      parentModel: first.parentModel?.sha256,
      runId: first.runId,
    });
    expect(lineage.model.lineageFlags).toEqual([]);
    expect(lineage.upstream.dataset).toMatchObject({ id: first.datasetId, found: true });
    expect(Object.keys(lineage.upstream.dataset?.samples?.bySite ?? {})).toEqual(['b']);
    expect(lineage.upstream.run).toMatchObject({ runId: first.runId, found: true, resultModelId: 'det@2.0.0' });
    expect(lineage.upstream.parents[0]).toMatchObject({ depth: 1, found: true, model: { id: 'det@1.0.0' } });
    expect(lineage.downstream.rollouts[0]).toMatchObject({ id: done.id, status: 'completed', terminal: true });
    expect(lineage.downstream.rollouts[0]?.stages.map((s) => `${s.stage}:${s.last?.verdict}`)).toEqual([
      'validation:pass',
      'shadow:pass',
      'canary:pass',
      '100%:pass',
    ]);
    const parent = ModelLineage.parse(await json('models', 'lineage', 'det', '1.0.0'));
    expect(parent.downstream.children.map((child) => child.id)).toContain('det@2.0.0');
    note(
      `lineage det@2.0.0: ${first.datasetId} (site b samples) -> run ${first.runId} -> parent det@1.0.0 -> rollout completed`,
    );
  }, 420_000);

  it('stops a worse model at the validation gate, before any device', async () => {
    await edgeloop('retraining', 'trigger', 'det', '--note', 'closed loop: run 2');
    await eventually(() => trainer.runs.length >= 2, 120_000, 'the trainer trained run 2', 500).catch((e) =>
      explain('trainer run 2', e),
    );
    const trained = trainer.runs[1]!;
    expect(trained).toMatchObject({ modelId: 'det@3.0.0', payload: { parentModel: champion } });
    expect(trained.evaluation.candidate).toBeLessThan(trained.evaluation.baseline ?? 0);
    const stopped = (await eventually(
      async () => {
        const view = await rollout(trained.rolloutId);
        return view.status === 'rolled_back' ? view : null;
      },
      60_000,
      'det@3.0.0 stopped at validation',
      500,
    ).catch((e) => explain('validation gate', e))) as RolloutView;
    expect(stopped.reason).toMatch(/validation failed/);
    expect(stopped.lastVerdict).toMatchObject({ stage: 'validation', verdict: 'fail' });
    expect(Object.values(stopped.counts).reduce((a, b) => a + (b ?? 0), 0)).toBe(0);
    expect((await fleetModels())['det@2.0.0']).toBe(DEVICES);
  }, 180_000);

  it('rolls back, by its canary gates, a model that passes validation but is worse on the devices', async () => {
    await edgeloop('retraining', 'trigger', 'det', '--note', 'closed loop: run 3');
    await eventually(() => trainer.runs.length >= 3, 120_000, 'the trainer trained run 3', 500).catch((e) =>
      explain('trainer run 3', e),
    );
    const trained = trainer.runs[2]!;
    expect(trained).toMatchObject({ modelId: 'det@4.0.0', payload: { parentModel: champion } });
    expect(trained.evaluation.candidate).toBeGreaterThanOrEqual(trained.evaluation.baseline ?? 1);
    const back = (await eventually(
      async () => {
        const view = await rollout(trained.rolloutId);
        if (view.status === 'completed') throw new Error('det@4.0.0 completed');
        return view.status === 'rolled_back' ? view : null;
      },
      180_000,
      'det@4.0.0 rolled back',
      1000,
    ).catch((e) => explain('canary rollback', e))) as RolloutView;
    expect(back.reason).toMatch(/stage canary failed/);
    const events = (await json('rollouts', 'events', back.id, '--type', 'verdict')) as {
      items: { stage: string; data: { verdict: string; gates: { gate: string; verdict: string }[] } }[];
    };
    expect(events.items.filter((e) => e.data.verdict === 'pass').map((e) => e.stage)).toEqual(['validation', 'shadow']);
    const failing = events.items.filter((e) => e.stage === 'canary' && e.data.verdict === 'fail');
    expect(failing.length).toBeGreaterThanOrEqual(2);
    const gates = new Set(failing.flatMap((e) => e.data.gates.filter((g) => g.verdict === 'fail').map((g) => g.gate)));
    expect([...gates].some((gate) => ['error-rate', 'fps-ratio'].includes(gate))).toBe(true);
    await eventually(
      async () => (await fleetModels())['det@2.0.0'] === DEVICES,
      90_000,
      'every device back on det@2.0.0',
      500,
    ).catch((e) => explain('after the rollback', e));
    note(`fleet  ${DEVICES} devices back on det@2.0.0`);
  }, 300_000);
});
