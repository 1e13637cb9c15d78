import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type EvaluationMetrics, type ModelView, unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.ts';
import type { Timers } from '../src/time.ts';
import { storeSampleIn, untar } from './dataset-fixtures.ts';
import { startTestControlPlane, type TestControlPlane, type TestToken } from './harness.ts';
import { createSigningKit, type SigningKit } from './model-fixtures.ts';

/*
 * The validation gate over the API: a rollout whose spec names `validation` is created pending and
 * touches no device; its status says what it waits for; an evaluation of the candidate with the
 * champion beside it on that dataset version lets it start when candidate >= champion + minDelta,
 * and rolls it back, with the numbers in the verdict, when it falls short. The engine's timer
 * never fires: the test ticks it.
 */

const manualTimers: Timers = { setInterval: () => ({}), clearInterval: () => {} };

let t: TestControlPlane;
let kit: SigningKit;
let operator: TestToken;
const models: Record<string, ModelView> = {};

const metrics = (map50: number): EvaluationMetrics => ({
  task: 'detection',
  images: 12,
  map: map50 / 2,
  map50,
  map75: map50 / 3,
  accuracy: null,
  classes: [],
});

const postEvaluation = (version: string, candidate: number, champion: number) =>
  unwrap(
    operator.client.models.postEvaluation('det', version, {
      datasetId: 'evalset@2',
      modelSha256: models[version]!.sha256,
      metrics: metrics(candidate),
      baseline: { modelId: 'det@1.0.0', sha256: models['1.0.0']!.sha256, metrics: metrics(champion) },
      evaluator: { tool: 'edgeloop-agent eval', version: '0.1.0', provider: 'cpu', host: 'lab', durationMs: 10 },
    }),
  );

const spec = (version: string, group: string) => ({
  modelId: `det@${version}`,
  selector: { labels: { group } },
  canary: { minSize: 1, maxSize: 2 },
  validation: { dataset: 'evalset@2', metric: 'map50' as const, minDelta: 0.05 },
});

const tick = () => t.cp.internals.rollouts.engine.tick();

beforeAll(async () => {
  kit = createSigningKit();
  t = await startTestControlPlane({ trustedKeys: kit.publicKeyPath }, { timers: manualTimers });
  operator = await t.createToken('operator', 'release-manager');
  for (const version of ['1.0.0', '2.0.0', '3.0.0']) {
    models[version] = await kit.publish(operator.client, kit.modelBytes(2048), {
      name: 'det',
      version,
      adapter: 'yolo',
      labels: ['text'],
    });
  }
  const sample = await storeSampleIn(t, 7);
  await unwrap(operator.client.datasets.create({ name: 'evalset', sampleIds: [sample.id] }));
  const exported = await unwrap(t.client.datasets.export('evalset@1', 'coco'));
  const coco = JSON.parse((await untar(exported.body)).get('annotations.json')!.toString('utf8'));
  await unwrap(operator.client.datasets.importLabels('evalset@1', coco));
  for (const [i, group] of ['a', 'a', 'a', 'b', 'b', 'b'].entries()) await t.enroll(`val-${i}`, { group });
}, 30_000);

afterAll(async () => {
  await t?.stop();
  kit?.dispose();
});

describe('a rollout with a validation gate', () => {
  it('stays pending without an evaluation, then starts its first stage once one passes', async () => {
    const plan = await unwrap(operator.client.rollouts.plan(spec('2.0.0', 'a')));
    expect(plan.warnings).toContainEqual(expect.stringMatching(/^validation: no evaluation of det@2.0.0 on evalset@2/));

    const created = await unwrap(operator.client.rollouts.create(spec('2.0.0', 'a')));
    expect(created.status).toBe('pending');
    await tick();
    await tick();
    const waiting = await unwrap(t.client.rollouts.get(created.id));
    expect(waiting.status).toBe('pending');
    expect(waiting.reason).toMatch(/^waiting for an evaluation of det@2.0.0 on evalset@2 with the champion beside it/);
    expect(waiting.lastVerdict).toMatchObject({
      stage: 'validation',
      verdict: 'inconclusive',
      gates: [{ gate: 'validation', verdict: 'inconclusive', validation: { evaluationId: null, candidate: null } }],
    });
    expect(waiting.counts).toEqual({});
    // Waiting is recorded once, not on every tick.
    const verdicts = await unwrap(t.client.rollouts.events(created.id, { type: 'verdict' }));
    expect(verdicts.items).toHaveLength(1);
    // An operator cannot pause or promote past the gate; abort stays possible.
    expect(await operator.client.rollouts.act(created.id, 'promote')).toMatchObject({
      ok: false,
      error: { status: 409, message: expect.stringContaining('validation gate decides') },
    });

    const evaluation = await postEvaluation('2.0.0', 0.8, 0.7);
    await tick();
    const started = await unwrap(t.client.rollouts.get(created.id));
    expect(started.status).toBe('running');
    expect(started.stage).toBe('shadow');
    expect(started.reason).toBeNull();
    expect(started.lastVerdict).toMatchObject({
      stage: 'validation',
      verdict: 'pass',
      reason: `validation on evalset@2: map50 0.8 >= champion det@1.0.0 0.7 + 0.05 (evaluation ${evaluation.id})`,
      gates: [
        {
          gate: 'validation',
          verdict: 'pass',
          threshold: 0.05,
          validation: {
            evaluationId: evaluation.id,
            championModelId: 'det@1.0.0',
            candidate: 0.8,
            champion: 0.7,
            delta: 0.1,
          },
        },
      ],
    });
    const advanced = await unwrap(t.client.rollouts.events(created.id, { type: 'advanced' }));
    expect(advanced.items[0]?.data).toMatchObject({
      status: 'running',
      reason: expect.stringContaining('entering shadow'),
    });
    await tick();
    const assigned = await unwrap(t.client.rollouts.get(created.id));
    expect(assigned.counts.assigned).toBeGreaterThan(0);
  });

  it('is rolled back, no device touched, when the evaluation falls short of the champion plus minDelta', async () => {
    const evaluation = await postEvaluation('3.0.0', 0.72, 0.7);
    const created = await unwrap(operator.client.rollouts.create(spec('3.0.0', 'b')));
    expect(created.status).toBe('pending');
    await tick();
    const failed = await unwrap(t.client.rollouts.get(created.id));
    expect(failed.status).toBe('rolled_back');
    expect(failed.reason).toBe(
      `validation failed: validation on evalset@2: map50 0.72 < champion det@1.0.0 0.7 + 0.05 (evaluation ${evaluation.id})`,
    );
    expect(failed.lastVerdict).toMatchObject({
      verdict: 'fail',
      gates: [{ gate: 'validation', verdict: 'fail', validation: { candidate: 0.72, champion: 0.7, delta: 0.02 } }],
    });
    expect(failed.counts).toEqual({});
    const desired = await unwrap(t.client.devices.get('val-3'));
    expect(desired.desired?.model ?? null).toBeNull();
  });

  it('refuses a validation naming a dataset version that does not exist (422)', async () => {
    const refused = await operator.client.rollouts.create({
      ...spec('3.0.0', 'b'),
      validation: { dataset: 'nope@1', metric: 'map50', minDelta: 0 },
    });
    expect(refused).toMatchObject({ ok: false, error: { status: 422, message: expect.stringContaining('nope@1') } });
  });

  it('is created pending from a spec file by edgeloop rollouts create, and edgeloop models evaluations lists the reports', async () => {
    const cli = async (...argv: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await runCli(
        argv,
        { EDGELOOP_URL: t.started.httpUrl, EDGELOOP_TOKEN: operator.secret },
        {
          out: (text) => out.push(text),
          err: (text) => err.push(text),
          waitForShutdown: () => new Promise<string>(() => undefined),
        },
      );
      return { code, out: out.join(''), err: err.join('') };
    };
    for (const [i, group] of ['c', 'c'].entries()) await t.enroll(`val-c${i}`, { group });
    const specPath = join(t.dataDir, 'validated-rollout.json');
    writeFileSync(
      specPath,
      JSON.stringify({ ...spec('2.0.0', 'c'), validation: { dataset: 'evalset@2', minDelta: 0.5 } }),
    );
    const created = await cli('rollouts', 'create', '--spec', specPath, '--json');
    expect(created).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(created.out)).toMatchObject({
      status: 'pending',
      spec: { validation: { dataset: 'evalset@2', metric: 'map50', minDelta: 0.5 } },
    });
    const listed = await cli('models', 'evaluations', 'det', '2.0.0', '--dataset', 'evalset@2');
    expect(listed.code).toBe(0);
    expect(listed.out).toMatch(/ID\s+DATASET\s+MAP50[\s\S]*evalset@2\s+0\.800\s+0\.400\s+-\s+det@1\.0\.0\s+0\.700/);
    const asJson = await cli('models', 'evaluations', 'det', '2.0.0', '--json');
    expect(JSON.parse(asJson.out)).toHaveLength(1);
    // 0.8 < 0.7 + 0.5: this one fails at its first tick.
    await tick();
    const failed = await unwrap(t.client.rollouts.get(JSON.parse(created.out).id));
    expect(failed.status).toBe('rolled_back');
  });
});
