import { type CreateEvaluationRequestInput, type EvaluationMetrics, unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeSampleIn, untar } from './dataset-fixtures.ts';
import { startTestControlPlane, type TestControlPlane, type TestToken } from './harness.ts';
import { createSigningKit, type SigningKit } from './model-fixtures.ts';

/*
 * POST/GET /api/v1/models/:name/:version/evaluations: a report is stored only when it names the
 * registered file, a labelled dataset version and a registered champion of the same task.
 */

let t: TestControlPlane;
let kit: SigningKit;
let operator: TestToken;
let viewer: TestToken;
let candidateSha = '';
let championSha = '';

const metrics = (map50: number): EvaluationMetrics => ({
  task: 'detection',
  images: 2,
  map: map50 / 2,
  map50,
  map75: map50 / 3,
  accuracy: null,
  classes: [
    {
      label: 'text',
      groundTruth: 4,
      detections: 5,
      truePositives: 3,
      falsePositives: 2,
      precision: 0.6,
      recall: 0.75,
      ap50: map50,
      ap75: map50 / 3,
      ap: map50 / 2,
    },
  ],
});

const report = (overrides: Partial<CreateEvaluationRequestInput> = {}): CreateEvaluationRequestInput => ({
  datasetId: 'evalset@2',
  modelSha256: candidateSha,
  metrics: metrics(0.7),
  baseline: { modelId: 'det@1.0.0', sha256: championSha, metrics: metrics(0.6) },
  evaluator: { tool: 'edgeloop-agent eval', version: '0.1.0', provider: 'cpu', host: 'lab', durationMs: 1234 },
  ...overrides,
});

beforeAll(async () => {
  kit = createSigningKit();
  t = await startTestControlPlane({ trustedKeys: kit.publicKeyPath });
  operator = await t.createToken('operator', 'evaluator');
  viewer = await t.createToken('viewer', 'reader');
  const manifest = { name: 'det', adapter: 'yolo' as const, labels: ['text'] };
  championSha = (await kit.publish(operator.client, kit.modelBytes(1024), { ...manifest, version: '1.0.0' })).sha256;
  candidateSha = (await kit.publish(operator.client, kit.modelBytes(1024), { ...manifest, version: '2.0.0' })).sha256;
  const sample = await storeSampleIn(t, 1);
  await unwrap(operator.client.datasets.create({ name: 'evalset', sampleIds: [sample.id] }));
  const exported = await unwrap(t.client.datasets.export('evalset@1', 'coco'));
  const coco = JSON.parse((await untar(exported.body)).get('annotations.json')!.toString('utf8'));
  await unwrap(operator.client.datasets.importLabels('evalset@1', coco));
}, 30_000);

afterAll(async () => {
  await t?.stop();
  kit?.dispose();
});

describe('evaluation reports', () => {
  it('stores a report of the registered file on a labelled version and lists it newest first', async () => {
    const first = await unwrap(operator.client.models.postEvaluation('det', '2.0.0', report()));
    expect(first).toMatchObject({
      modelId: 'det@2.0.0',
      datasetId: 'evalset@2',
      modelSha256: candidateSha,
      metrics: metrics(0.7),
      baseline: { modelId: 'det@1.0.0', metrics: metrics(0.6) },
      createdBy: operator.id,
    });
    const second = await unwrap(
      operator.client.models.postEvaluation('det', '2.0.0', report({ metrics: metrics(0.8), baseline: null })),
    );
    const listed = await unwrap(viewer.client.models.evaluations('det', '2.0.0'));
    expect(listed.items.map((e) => e.id)).toEqual([second.id, first.id]);
    expect(listed.items[0]?.baseline).toBeNull();
    const other = await unwrap(viewer.client.models.evaluations('det', '2.0.0', { datasetId: 'other@1' }));
    expect(other.items).toEqual([]);
    expect((await unwrap(viewer.client.models.evaluations('det', '1.0.0'))).items).toEqual([]);
  });

  it("refuses a report whose file is not the model's, or whose baseline file is not the champion's (409)", async () => {
    const wrong = await operator.client.models.postEvaluation('det', '2.0.0', report({ modelSha256: championSha }));
    expect(wrong).toMatchObject({ ok: false, error: { code: 'conflict', status: 409 } });
    const baseline = await operator.client.models.postEvaluation(
      'det',
      '2.0.0',
      report({ baseline: { modelId: 'det@1.0.0', sha256: candidateSha, metrics: metrics(0.6) } }),
    );
    expect(baseline).toMatchObject({ ok: false, error: { code: 'conflict', status: 409 } });
  });

  it('refuses an unlabelled dataset version (422), an unknown version or model (404), and a viewer (403)', async () => {
    const unlabelled = await operator.client.models.postEvaluation('det', '2.0.0', report({ datasetId: 'evalset@1' }));
    expect(unlabelled).toMatchObject({ ok: false, error: { code: 'unprocessable', status: 422 } });
    expect(unlabelled.ok ? '' : unlabelled.error.message).toMatch(/no imported labels/);
    const unknown = await operator.client.models.postEvaluation('det', '2.0.0', report({ datasetId: 'nope@1' }));
    expect(unknown).toMatchObject({ ok: false, error: { status: 404 } });
    const ghost = await operator.client.models.postEvaluation('det', '9.0.0', report());
    expect(ghost).toMatchObject({ ok: false, error: { status: 404 } });
    const self = await operator.client.models.postEvaluation(
      'det',
      '2.0.0',
      report({ baseline: { modelId: 'det@2.0.0', sha256: candidateSha, metrics: metrics(0.6) } }),
    );
    expect(self).toMatchObject({ ok: false, error: { status: 422 } });
    const denied = await viewer.client.models.postEvaluation('det', '2.0.0', report());
    expect(denied).toMatchObject({ ok: false, error: { status: 403 } });
  });

  it('refuses metrics out of range with the field named (422)', async () => {
    const bad = await operator.client.models.postEvaluation(
      'det',
      '2.0.0',
      report({ metrics: { ...metrics(0.7), map50: 1.5 } }),
    );
    expect(bad).toMatchObject({ ok: false, error: { status: 422 } });
    expect(bad.ok ? '' : bad.error.message).toMatch(/map50/);
  });

  it('enters each stored report in the audit log with its actor', async () => {
    const entries = (await unwrap(t.client.audit.list({ limit: 100 }))).items.filter(
      (e) => e.action === 'POST /api/v1/models/:name/:version/evaluations',
    );
    expect(entries.length).toBeGreaterThanOrEqual(2);
    expect(entries[0]?.actor.id).toBe(operator.id);
  });
});
