import { createHash } from 'node:crypto';
import { type EvaluationMetrics, type ModelView, type ReleaseLineage, unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.ts';
import type { RetrainingRunRecord } from '../src/db/repositories.ts';
import type { Timers } from '../src/time.ts';
import { storeSampleIn, untar } from './dataset-fixtures.ts';
import { startTestControlPlane, type TestControlPlane, type TestToken } from './harness.ts';
import { createSigningKit, type SigningKit } from './model-fixtures.ts';

/*
 * Lineage on a real control plane (SQLite through drizzle with the real migrations, the real
 * registry verifying Ed25519 signatures): a release's signed lineage is checked at upload (an
 * unknown name is accepted, flagged in the view, counted and audited), its run is linked, and
 * GET /api/v1/models/:name/:version/lineage walks samples -> dataset -> run -> parents -> model ->
 * rollouts -> verdicts and children. `edgeloop models lineage` prints it against a real server.
 * The rollout engine's timer never fires: the test ticks it.
 */

const manualTimers: Timers = { setInterval: () => ({}), clearInterval: () => {} };

let t: TestControlPlane;
let kit: SigningKit;
let operator: TestToken;
const models: Record<string, ModelView> = {};
const sampleIds: string[] = [];
const T = Date.parse('2026-12-01T10:00:00Z');

const metrics = (map50: number): EvaluationMetrics => ({
  task: 'detection',
  images: 3,
  map: map50 / 2,
  map50,
  map75: map50 / 3,
  accuracy: null,
  classes: [],
});

function run(runId: string, overrides: Partial<RetrainingRunRecord> = {}): RetrainingRunRecord {
  return {
    runId,
    modelName: 'det',
    parentModel: { id: 'det@1.0.0', sha256: models['1.0.0']!.sha256 },
    reason: { kind: 'drift', numbers: { psi: 0.31, windows: 3 } },
    datasetId: 'hard-b@2',
    exportUrls: { coco: '/coco', yolo: '/yolo' },
    webhookUrl: null,
    status: 'claimed',
    attempts: 0,
    lastStatusCode: null,
    lastError: null,
    nextAttemptAt: null,
    deliveries: [],
    claimedBy: 'trainer-1',
    claimedAt: T,
    resultModelId: null,
    createdAt: T,
    updatedAt: T,
    createdBy: 'system:retraining',
    ...overrides,
  };
}

const publish = async (version: string, lineage?: ReleaseLineage, name = 'det') =>
  kit.publish(
    operator.client,
    kit.modelBytes(2048),
    { name, version, adapter: 'yolo', labels: ['text'] },
    lineage ? { lineage } : {},
  );

const tick = () => t.cp.internals.rollouts.engine.tick();

beforeAll(async () => {
  kit = createSigningKit();
  t = await startTestControlPlane({ trustedKeys: kit.publicKeyPath }, { timers: manualTimers });
  operator = await t.createToken('operator', 'trainer');
  models['1.0.0'] = await publish('1.0.0');

  for (const [seed, site, strategy] of [
    [1, 'b', 'near-threshold'],
    [2, 'b', 'near-threshold'],
    [3, 'b', 'random'],
    [4, 'a', 'disagreement'],
  ] as const) {
    sampleIds.push((await storeSampleIn(t, seed, { site, strategy })).id);
  }
  await unwrap(operator.client.datasets.create({ name: 'hard-b', sampleIds }));
  const exported = await unwrap(t.client.datasets.export('hard-b@1', 'coco'));
  const coco = JSON.parse((await untar(exported.body)).get('annotations.json')!.toString('utf8'));
  await unwrap(operator.client.datasets.importLabels('hard-b@1', coco));
  await t.store.retrainingRuns.create(run('run_lin1'));
  await t.store.retrainingRuns.create(run('run_cls', { modelName: 'cls' }));
  for (const [i, group] of ['a', 'a', 'a'].entries()) await t.enroll(`lin-${i}`, { group });
}, 60_000);

afterAll(async () => {
  await t?.stop();
  kit?.dispose();
});

describe('lineage at registration', () => {
  it('registers a release naming a known dataset, parent and run unflagged, and links the run to it', async () => {
    const lineage = {
      datasetVersion: 'hard-b@2',
      parentModel: models['1.0.0']!.sha256,
      runId: 'run_lin1',
      trainer: 'ultralytics 8.3.2 on gpu-07',
    };
    models['2.0.0'] = await publish('2.0.0', lineage);
    expect(models['2.0.0']).toMatchObject({ lineage, lineageFlags: [] });
    expect(models['2.0.0'].signed.release.lineage).toEqual(lineage);
    expect(await t.store.retrainingRuns.get('run_lin1')).toMatchObject({
      status: 'model-registered',
      resultModelId: 'det@2.0.0',
    });
    const entries = await unwrap(t.client.audit.list({ action: 'model.lineage-recorded' }));
    expect(entries.items).toEqual([
      expect.objectContaining({
        actor: { id: operator.id, role: 'operator' },
        target: 'det@2.0.0',
        summary: expect.objectContaining({ flags: [], runLinked: true }),
      }),
    ]);
  });

  it('accepts a release whose lineage names an unknown dataset, flags it in the view, counts and audits it', async () => {
    models['3.0.0'] = await publish('3.0.0', {
      datasetVersion: 'ghost@1',
      parentModel: models['2.0.0']!.sha256,
      trainer: 'a notebook',
    });
    expect(models['3.0.0'].lineageFlags).toEqual(['unknown_dataset']);
    expect((await unwrap(t.client.models.get('det', '3.0.0'))).lineageFlags).toEqual(['unknown_dataset']);
    const entries = await unwrap(t.client.audit.list({ action: 'model.lineage-flagged' }));
    expect(entries.items).toEqual([
      expect.objectContaining({
        actor: { id: operator.id, role: 'operator' },
        resource: 'models',
        target: 'det@3.0.0',
        summary: expect.objectContaining({
          flags: ['unknown_dataset'],
          lineage: expect.objectContaining({ datasetVersion: 'ghost@1' }),
        }),
      }),
    ]);
    expect(await unwrap(t.client.metrics())).toMatch(
      /edgeloop_model_lineage_flags_total\{flag="unknown_dataset"\} 1\b/,
    );
  });

  it('flags an unknown parent and run, a run of another model name (left unlinked), and a run linked already', async () => {
    const unknown = await publish('4.0.0', { parentModel: 'f'.repeat(64), runId: 'run_nope' });
    expect(unknown.lineageFlags).toEqual(['unknown_parent', 'unknown_run']);
    const otherName = await publish('4.1.0', { runId: 'run_cls', datasetVersion: 'hard-b@1' });
    expect(otherName.lineageFlags).toEqual(['run_dataset_mismatch', 'run_model_mismatch']);
    expect(await t.store.retrainingRuns.get('run_cls')).toMatchObject({ status: 'claimed', resultModelId: null });
    const taken = await publish('4.2.0', { runId: 'run_lin1' });
    expect(taken.lineageFlags).toEqual(['run_already_linked']);
    expect((await t.store.retrainingRuns.get('run_lin1'))?.resultModelId).toBe('det@2.0.0');
  });

  it('shows no lineage and no flags for a release that names none', async () => {
    const view = await unwrap(t.client.models.get('det', '1.0.0'));
    expect(view).toMatchObject({ lineage: null, lineageFlags: [] });
    expect('lineage' in view.signed.release).toBe(false);
  });

  it('answers a re-upload of the same release 200 with the flags stored at first, adding no audit entry', async () => {
    const bytes = kit.modelBytes(1024);
    const resigned = await kit.sign(
      bytes,
      { name: 'det', version: '5.0.0', adapter: 'yolo' },
      {
        lineage: { datasetVersion: 'nope@3' },
      },
    );
    const upload = () => t.client.models.upload({ release: JSON.stringify(resigned), model: new Blob([bytes]) });
    const first = await upload();
    const again = await upload();
    expect(first).toMatchObject({ ok: true, value: { lineageFlags: ['unknown_dataset'] } });
    expect(again).toMatchObject({ ok: true, value: { lineageFlags: ['unknown_dataset'] } });
    const flagged = await unwrap(t.client.audit.list({ action: 'model.lineage-flagged', target: 'det@5.0.0' }));
    expect(flagged.items).toHaveLength(1);
  });

  it('refuses a release whose lineage was edited after signing (422 bad_signature) and stores nothing of it', async () => {
    const bytes = kit.modelBytes(1024);
    const signed = await kit.sign(
      bytes,
      { name: 'det', version: '6.0.0', adapter: 'yolo' },
      {
        lineage: { datasetVersion: 'hard-b@2', runId: 'run_lin1' },
      },
    );
    const tampered = { ...signed, release: { ...signed.release, lineage: { datasetVersion: 'hard-b@1' } } };
    const refused = await t.client.models.upload({ release: JSON.stringify(tampered), model: new Blob([bytes]) });
    expect(refused).toMatchObject({ ok: false, error: { status: 422, code: 'bad_signature' } });
    expect(await t.client.models.get('det', '6.0.0')).toMatchObject({ ok: false, error: { status: 404 } });
    expect(await t.store.modelLineage.get('det@6.0.0')).toBeNull();
  });
});

describe('GET /api/v1/models/:name/:version/lineage', () => {
  let rolloutId = '';

  beforeAll(async () => {
    await unwrap(
      operator.client.models.postEvaluation('det', '2.0.0', {
        datasetId: 'hard-b@2',
        modelSha256: models['2.0.0']!.sha256,
        metrics: metrics(0.8),
        baseline: { modelId: 'det@1.0.0', sha256: models['1.0.0']!.sha256, metrics: metrics(0.7) },
        evaluator: { tool: 'edgeloop-agent eval', version: '0.1.0', provider: 'cpu', host: 'lab', durationMs: 10 },
      }),
    );
    const created = await unwrap(
      operator.client.rollouts.create({
        modelId: 'det@2.0.0',
        selector: { labels: { group: 'a' } },
        canary: { minSize: 1, maxSize: 2 },
        validation: { dataset: 'hard-b@2', metric: 'map50', minDelta: 0.05 },
      }),
    );
    rolloutId = created.id;
    await tick();
    await unwrap(operator.client.rollouts.act(rolloutId, 'abort', 'enough for the lineage test'));
    await tick();
  });

  it('walks upstream to the samples, the dataset and the version it labels, the run and the parent', async () => {
    const lineage = await unwrap(t.client.models.lineage('det', '2.0.0'));
    expect(lineage.model).toMatchObject({ id: 'det@2.0.0', lineageFlags: [], uploadedBy: operator.id });
    expect(lineage.upstream.dataset).toMatchObject({
      id: 'hard-b@2',
      found: true,
      sampleCount: 4,
      parentId: 'hard-b@1',
      samples: {
        count: 4,
        byStrategy: { 'near-threshold': 2, random: 1, disagreement: 1 },
        bySite: { b: 3, a: 1 },
        sampleIds: [...sampleIds].sort().slice(0, 4),
      },
      parents: [{ id: 'hard-b@1', found: true, sampleCount: 4, parentId: null }],
    });
    expect(lineage.upstream.run).toEqual({
      runId: 'run_lin1',
      found: true,
      modelName: 'det',
      status: 'model-registered',
      reason: { kind: 'drift', numbers: { psi: 0.31, windows: 3 } },
      datasetId: 'hard-b@2',
      parentModel: { id: 'det@1.0.0', sha256: models['1.0.0']!.sha256 },
      createdAt: T,
      resultModelId: 'det@2.0.0',
    });
    expect(lineage.upstream.parents).toEqual([
      expect.objectContaining({
        depth: 1,
        sha256: models['1.0.0']!.sha256,
        found: true,
        model: expect.objectContaining({ id: 'det@1.0.0', lineage: null }),
      }),
    ]);
    expect(lineage.upstream.parentsTruncated).toBe(false);
  });

  it('walks downstream to the rollout, its validation verdict and final state, and the child models', async () => {
    const lineage = await unwrap(t.client.models.lineage('det', '2.0.0'));
    expect(lineage.downstream.rollouts).toEqual([
      expect.objectContaining({
        id: rolloutId,
        status: 'aborted',
        terminal: true,
        reason: 'aborted by an operator: enough for the lineage test',
        verdictsTruncated: false,
        stages: [
          expect.objectContaining({
            stage: 'validation',
            verdicts: { pass: 1, fail: 0, inconclusive: 0 },
            last: expect.objectContaining({ verdict: 'pass', gates: [{ gate: 'validation', verdict: 'pass' }] }),
          }),
        ],
      }),
    ]);
    expect(lineage.downstream.children.map((child) => [child.id, child.lineageFlags])).toEqual([
      ['det@3.0.0', ['unknown_dataset']],
    ]);
  });

  it('follows the parent chain up to the depth asked for, and marks an unknown dataset and parent', async () => {
    const child = await unwrap(t.client.models.lineage('det', '3.0.0'));
    expect(child.upstream.dataset).toEqual({
      id: 'ghost@1',
      found: false,
      sampleCount: null,
      createdAt: null,
      createdBy: null,
      parentId: null,
      samples: null,
      parents: [],
    });
    expect(child.upstream.run).toBeNull();
    expect(child.upstream.parents.map((p) => [p.depth, p.model?.id, p.datasetId, p.runId])).toEqual([
      [1, 'det@2.0.0', 'hard-b@2', 'run_lin1'],
      [2, 'det@1.0.0', null, null],
    ]);
    const shallow = await unwrap(t.client.models.lineage('det', '3.0.0', { depth: 1 }));
    expect(shallow.upstream.parents.map((p) => p.model?.id)).toEqual(['det@2.0.0']);
    expect(shallow.upstream.parentsTruncated).toBe(true);
    const orphan = await unwrap(t.client.models.lineage('det', '4.0.0'));
    expect(orphan.upstream.parents).toEqual([
      { depth: 1, sha256: 'f'.repeat(64), found: false, model: null, datasetId: null, runId: null },
    ]);
    expect(orphan.upstream.run).toMatchObject({ runId: 'run_nope', found: false, status: null });
  });

  it('stops at a release that names its own bytes as parent: flagged, truncated, not its own child', async () => {
    const bytes = kit.modelBytes(1024);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const signed = await kit.sign(
      bytes,
      { name: 'det', version: '7.0.0', adapter: 'yolo' },
      {
        lineage: { parentModel: sha256 },
      },
    );
    const view = await unwrap(t.client.models.upload({ release: JSON.stringify(signed), model: new Blob([bytes]) }));
    expect(view.lineageFlags).toEqual(['unknown_parent']);
    const lineage = await unwrap(t.client.models.lineage('det', '7.0.0'));
    expect(lineage.upstream).toMatchObject({ parents: [], parentsTruncated: true });
    expect(lineage.downstream.children).toEqual([]);
  });

  it('answers 404 for an unknown model and 422 for a depth out of range', async () => {
    expect(await t.client.models.lineage('det', '9.9.9')).toMatchObject({ ok: false, error: { status: 404 } });
    const deep = await t.raw('GET', '/api/v1/models/det/2.0.0/lineage?depth=33');
    expect(deep.status).toBe(422);
    expect(await deep.text()).toMatch(/depth/);
  });
});

describe('edgeloop models lineage', () => {
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

  it('prints the chain from samples to the outcome against a real server, and the JSON with --json', async () => {
    const text = await cli('models', 'lineage', 'det@2.0.0');
    expect(text).toMatchObject({ code: 0, err: '' });
    const order = ['samples', 'dataset', 'run', 'parent', 'model', 'rollouts', 'children'].map((label) =>
      text.out.search(new RegExp(`^${label}\\b`, 'm')),
    );
    expect(order.every((at) => at >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(text.out).toMatch(/^samples\s+4 in hard-b@2$/m);
    expect(text.out).toContain('by site: b 3, a 1');
    expect(text.out).toMatch(/^dataset\s+hard-b@2 {2}4 samples/m);
    expect(text.out).toContain('labels hard-b@1');
    expect(text.out).toMatch(/^run\s+run_lin1 {2}drift \(psi 0\.31, windows 3\) {2}status model-registered$/m);
    expect(text.out).toMatch(/^parent\s+det@1\.0\.0 \([0-9a-f]{12}\)$/m);
    expect(text.out).toContain('trainer "ultralytics 8.3.2 on gpu-07"');
    expect(text.out).toMatch(/validation: pass \(pass 1, fail 0, inconclusive 0\)/);
    expect(text.out).toMatch(/=> aborted: aborted by an operator: enough for the lineage test/);
    expect(text.out).toMatch(/^children\s+det@3\.0\.0 \[unknown_dataset\]$/m);

    const flagged = await cli('models', 'lineage', 'det', '3.0.0');
    expect(flagged.out).toMatch(/^dataset\s+ghost@1 {2}UNKNOWN: no such dataset version$/m);
    expect(flagged.out).toContain('flags: unknown_dataset');

    const asJson = await cli('models', 'lineage', 'det@3.0.0', '--depth', '1', '--json');
    expect(asJson.code).toBe(0);
    expect(JSON.parse(asJson.out)).toMatchObject({ model: { id: 'det@3.0.0' }, upstream: { parentsTruncated: true } });
  });

  it('exits with a usage error for a malformed model id or depth, and 1 naming an unknown model', async () => {
    const malformed = await cli('models', 'lineage', 'det');
    expect(malformed.code).toBe(2);
    expect(malformed.err).toMatch(/not a model id NAME@VERSION/);
    const depth = await cli('models', 'lineage', 'det@2.0.0', '--depth', 'x');
    expect(depth.code).toBe(2);
    const unknown = await cli('models', 'lineage', 'det@9.9.9');
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/no model det@9\.9\.9/);
    const help = await cli('models', 'lineage', '--help');
    expect(help.code).toBe(0);
    expect(help.out).toContain('samples -> dataset -> run -> model -> rollouts -> outcome');
  });
});
