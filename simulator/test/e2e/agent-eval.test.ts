import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { type ApiClient, createApiClient, unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sceneBoxes, writeModel, yoloBytes, yoloManifest } from '../../../agent/test/support/yolo-variants.ts';
import { ffmpeg } from '../../../agent/test/vision/test-media.ts';
import { basicAuth, metadataFor, uploadSample } from '../../../control-plane/test/sample-fixtures.ts';
import { createModelKit, type ModelKit } from '../model-kit.ts';
import { type ControlPlaneProcess, eventually, freePort, spawnControlPlane } from '../support.ts';

/*
 * The validation loop with the real binaries: `edgeloop serve` as a child process holds two
 * registered YOLO test models (the champion det@1.0.0 misses the dog; det@2.0.0 sees the person,
 * the car and the dog on any white frame) and a dataset version whose labels are exactly those
 * three boxes on two uploaded photos. `edgeloop-agent eval` (the real binary) exports nothing
 * itself: it reads the control plane's own COCO export, runs both models through onnxruntime,
 * posts the report (mAP@0.5 1 against 2/3), and a rollout of det@2.0.0 that requires
 * map50 >= champion + 0.2 on that version leaves pending for its first stage.
 */

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const AGENT = join(root, 'agent/bin/edgeloop-agent.js');
const work = mkdtempSync(join(tmpdir(), 'edgeloop-e2e-eval-'));
const token = `e2e-${randomBytes(16).toString('hex')}`;
const SCENE = [
  { label: 'person', bbox: [225, 120, 150, 300] },
  { label: 'car', bbox: [240, 150, 180, 270] },
  { label: 'dog', bbox: [660, 195, 120, 90] },
] as const;

let cp: ControlPlaneProcess;
let kit: ModelKit;
let client: ApiClient;
let url = '';
let exportPath = '';
let operatorToken = '';
const files: Record<string, { modelPath: string; manifestPath: string }> = {};

function agent(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [AGENT, ...args],
      { env: { ...process.env, ...env }, maxBuffer: 8 * 1024 * 1024, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

beforeAll(async () => {
  const httpPort = await freePort();
  const mqttPort = await freePort();
  url = `http://127.0.0.1:${httpPort}`;
  kit = createModelKit(() => url, token);
  cp = await spawnControlPlane({
    httpPort,
    mqttPort,
    dataDir: join(work, 'cp'),
    token,
    trustedKeys: kit.publicKeyPath,
    rolloutsTickMs: 200,
  });
  client = createApiClient({ baseUrl: url, token });
  operatorToken = (await unwrap(client.tokens.create({ name: 'evaluator', role: 'operator' }))).secret;

  const models = join(work, 'models');
  mkdirSync(models, { recursive: true });
  files.champion = writeModel(
    models,
    yoloBytes({ boxes: sceneBoxes({ withoutDog: true }) }),
    yoloManifest('det', '1.0.0'),
  );
  files.candidate = writeModel(models, yoloBytes(), yoloManifest('det', '2.0.0'));
  await kit.publishFile(files.champion.modelPath, yoloManifest('det', '1.0.0'), 1);
  await kit.publishFile(files.candidate.modelPath, yoloManifest('det', '2.0.0'), 2);

  // Two white photos (one with a black corner, so their bytes differ) uploaded as a device does.
  const device = await unwrap(client.devices.enroll({ id: 'cam-eval', labels: { site: 'lab', cam: 'eval' } }));
  const auth = basicAuth('cam-eval', device.credentials.password);
  const sampleIds: string[] = [];
  for (const [i, filter] of ['null', 'drawbox=x=0:y=0:w=16:h=16:color=black:t=fill'].entries()) {
    const file = join(work, `photo-${i}.jpg`);
    await ffmpeg(['-f', 'lavfi', '-i', 'color=white:size=960x540', '-vf', filter, '-frames:v', '1', file]);
    const jpeg = readFileSync(file);
    const uploaded = await uploadSample(
      url,
      auth,
      metadataFor('cam-eval', jpeg, { width: 960, height: 540 }, { site: 'lab', labels: { site: 'lab' }, seq: i + 1 }),
      jpeg,
    );
    sampleIds.push(uploaded.state.sampleId as string);
  }
  await unwrap(client.datasets.create({ name: 'evalset', sampleIds }));
  // Labels as an annotator returns them: the version's own export with the three boxes per image.
  const first = await unwrap(client.datasets.export('evalset@1', 'coco'));
  const firstTar = join(work, 'evalset-1.tar');
  await pipeline(Readable.fromWeb(first.body as never), createWriteStream(firstTar));
  const { readCocoExport } = await import('../../../agent/src/eval/coco-export.ts');
  const read = await readCocoExport(firstTar);
  if (!read.ok) throw new Error(read.error.message);
  let id = 1;
  await unwrap(
    client.datasets.importLabels('evalset@1', {
      images: read.value.images.map((image) => ({
        id: image.id,
        file_name: image.fileName,
        width: 960,
        height: 540,
      })),
      annotations: read.value.images.flatMap((image) =>
        SCENE.map((box) => ({
          id: id++,
          image_id: image.id,
          category_id: ['person', 'car', 'dog'].indexOf(box.label) + 1,
          bbox: [...box.bbox] as [number, number, number, number],
          iscrowd: 0 as const,
        })),
      ),
      categories: ['person', 'car', 'dog'].map((name, i) => ({ id: i + 1, name })),
    }),
  );
  const labelled = await unwrap(client.datasets.export('evalset@2', 'coco'));
  exportPath = join(work, 'evalset-2.tar');
  await pipeline(Readable.fromWeb(labelled.body as never), createWriteStream(exportPath));
}, 90_000);

afterAll(async () => {
  cp?.child.kill('SIGTERM');
  await cp?.exited();
  kit?.dispose();
  rmSync(work, { recursive: true, force: true });
});

describe('edgeloop-agent eval against a real control plane', () => {
  it('prints its usage with --help and exits 0', async () => {
    const help = await agent(['eval', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('usage: edgeloop-agent eval --model MODEL.onnx');
    expect(help.stdout).toContain('--control-plane-url');
    const top = await agent(['--help']);
    expect(top.stdout).toContain('edgeloop-agent eval [options]');
  }, 60_000);

  it('posts the report of the model and its champion, and a rollout gated on it leaves pending', async () => {
    const rollout = await unwrap(
      client.rollouts.create({
        modelId: 'det@2.0.0',
        selector: { labels: { cam: 'eval' } },
        validation: { dataset: 'evalset@2', metric: 'map50', minDelta: 0.2 },
      }),
    );
    expect(rollout.status).toBe('pending');
    await eventually(
      async () => (await unwrap(client.rollouts.get(rollout.id))).reason?.startsWith('waiting for an evaluation'),
      10_000,
      'the rollout waits for an evaluation',
    );

    const run = await agent(
      [
        'eval',
        ...['--model', files.candidate!.modelPath, '--manifest', files.candidate!.manifestPath],
        ...['--baseline', files.champion!.modelPath, '--baseline-manifest', files.champion!.manifestPath],
        ...['--dataset', exportPath, '--control-plane-url', url, '--provider', 'cpu', '--json'],
      ],
      { EDGELOOP_TOKEN: operatorToken },
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout);
    expect(report).toMatchObject({
      modelId: 'det@2.0.0',
      datasetId: 'evalset@2',
      metrics: { task: 'detection', images: 2, map50: 1, map: 1 },
      baseline: { modelId: 'det@1.0.0', metrics: { map50: 0.6667 } },
      posted: { id: expect.any(String), modelId: 'det@2.0.0', datasetId: 'evalset@2' },
    });

    const stored = await unwrap(client.models.evaluations('det', '2.0.0', { datasetId: 'evalset@2' }));
    expect(stored.items).toHaveLength(1);
    expect(stored.items[0]).toMatchObject({
      id: report.posted.id,
      modelSha256: report.modelSha256,
      metrics: { map50: 1, map75: 1, map: 1 },
      baseline: { modelId: 'det@1.0.0', metrics: { map50: 0.6667 } },
      evaluator: { tool: 'edgeloop-agent eval', provider: 'cpu' },
    });
    const dog = stored.items[0]?.baseline?.metrics.classes.find((c) => c.label === 'dog');
    expect(dog).toMatchObject({ groundTruth: 2, detections: 0, recall: 0, ap50: 0 });

    const started = await eventually(
      async () => {
        const view = await unwrap(client.rollouts.get(rollout.id));
        return view.status === 'running' ? view : null;
      },
      10_000,
      'the rollout starts',
    );
    expect(started?.lastVerdict).toMatchObject({
      stage: 'validation',
      verdict: 'pass',
      gates: [{ gate: 'validation', validation: { candidate: 1, champion: 0.6667, minDelta: 0.2 } }],
    });
  }, 90_000);

  it('exits 1 with the answer when the control plane refuses the token, and 2 on a missing export', async () => {
    const refused = await agent(
      [
        'eval',
        ...['--model', files.candidate!.modelPath, '--manifest', files.candidate!.manifestPath],
        ...['--dataset', exportPath, '--control-plane-url', url, '--token', 'not-a-token'],
      ],
      {},
    );
    expect(refused.code).toBe(1);
    expect(refused.stdout).toContain('det@2.0.0 on evalset@2 (2 images): mAP@0.5 1.000');
    expect(refused.stderr).toMatch(/posting to http:\/\/127\.0\.0\.1:\d+ failed \(401/);
    const missing = await agent(['eval', '--model', files.candidate!.modelPath, '--dataset', join(work, 'none.tar')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no such file');
  }, 60_000);
});
