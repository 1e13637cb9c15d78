import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCocoExport } from '../../src/eval/coco-export.ts';
import { runEvalCli } from '../../src/eval/eval-cli.ts';
import { sceneBoxes, writeModel, yoloBytes, yoloManifest } from '../support/yolo-variants.ts';
import { ffmpeg, makeTempDir } from '../vision/test-media.ts';
import { type TarBox, writeCocoExport } from './coco-tar.ts';

/*
 * `edgeloop-agent eval` over real COCO export tars, real onnxruntime sessions and ffmpeg decoding.
 * The models are the generated YOLO test models: on any frame with a white pixel they find, in a
 * 960x540 frame, a person [225,120,375,420] 0.9, a car [240,150,420,420] 0.8 and a dog
 * [660,195,780,285] 0.7 (x1,y1,x2,y2; agent/test/vision/detect-cli.test.ts shows the same boxes).
 * The champion is the same scene without the dog. So labels equal to those boxes give the
 * candidate mAP 1 and the champion 2/3 (the dog's AP is 0), and labels away from them give 0.
 */

const temp = makeTempDir('eval-cli');
let candidate: { modelPath: string; manifestPath: string };
let champion: { modelPath: string; manifestPath: string };
let white: Buffer;
let marked: Buffer;

const SCENE: readonly TarBox[] = [
  { label: 'person', bbox: [225, 120, 150, 300] },
  { label: 'car', bbox: [240, 150, 180, 270] },
  { label: 'dog', bbox: [660, 195, 120, 90] },
];
/** Boxes that overlap none of the model's. */
const AWAY: readonly TarBox[] = [
  { label: 'person', bbox: [0, 440, 100, 100] },
  { label: 'car', bbox: [100, 440, 100, 100] },
  { label: 'dog', bbox: [820, 420, 100, 100] },
];
const CATEGORIES = ['person', 'car', 'dog'];

function captureIo() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: { write: (t: string) => out.push(t) }, stderr: { write: (t: string) => err.push(t) }, env: {} },
    out: () => out.join(''),
    err: () => err.join(''),
  };
}

async function exportWith(
  name: string,
  boxes: readonly TarBox[],
  extra: Partial<Parameters<typeof writeCocoExport>[1]> = {},
) {
  const file = path.join(temp.dir, name);
  await writeCocoExport(file, {
    categories: CATEGORIES,
    images: [
      { jpeg: white, width: 960, height: 540, boxes, split: 'test' },
      { jpeg: marked, width: 960, height: 540, boxes, split: 'train' },
    ],
    ...extra,
  });
  return file;
}

beforeAll(async () => {
  candidate = writeModel(temp.dir, yoloBytes(), yoloManifest('det', '2.0.0'));
  champion = writeModel(temp.dir, yoloBytes({ boxes: sceneBoxes({ withoutDog: true }) }), yoloManifest('det', '1.0.0'));
  const whitePath = path.join(temp.dir, 'white.jpg');
  const markedPath = path.join(temp.dir, 'marked.jpg');
  await ffmpeg(['-f', 'lavfi', '-i', 'color=white:size=960x540', '-frames:v', '1', whitePath]);
  await ffmpeg([
    '-f',
    'lavfi',
    '-i',
    'color=white:size=960x540',
    '-vf',
    'drawbox=x=0:y=0:w=16:h=16:color=black:t=fill',
    '-frames:v',
    '1',
    markedPath,
  ]);
  white = readFileSync(whitePath);
  marked = readFileSync(markedPath);
}, 30_000);

afterAll(() => temp.remove());

describe('reading a COCO dataset export', () => {
  it('reads the version, images, categories and boxes of annotations.json', async () => {
    const file = await exportWith('read.tar', SCENE);
    const read = await readCocoExport(file);
    if (!read.ok) throw new Error(read.error.message);
    expect(read.value.datasetId).toBe('evalset@2');
    expect(read.value.categories).toEqual(CATEGORIES);
    expect(read.value.images.map((i) => [i.width, i.height, i.split])).toEqual([
      [960, 540, 'test'],
      [960, 540, 'train'],
    ]);
    expect(read.value.annotationCount).toBe(6);
    expect(read.value.truth.get(read.value.images[0]!.fileName)).toEqual([
      { category: 'person', bbox: [225, 120, 150, 300], crowd: false },
      { category: 'car', bbox: [240, 150, 180, 270], crowd: false },
      { category: 'dog', bbox: [660, 195, 120, 90], crowd: false },
    ]);
  });

  it('refuses a missing file, a file that is not a tar and a tar without annotations.json', async () => {
    expect(await readCocoExport(path.join(temp.dir, 'nope.tar'))).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });
    const junk = path.join(temp.dir, 'junk.tar');
    writeFileSync(junk, 'this is not a tar archive at all, only some text that is long enough'.repeat(20));
    expect(await readCocoExport(junk)).toMatchObject({ ok: false, error: { code: 'invalid' } });
    const bare = await exportWith('bare.tar', SCENE, { withoutAnnotations: true });
    const read = await readCocoExport(bare);
    expect(read).toMatchObject({ ok: false, error: { code: 'invalid' } });
    expect(read.ok ? '' : read.error.message).toMatch(/no annotations\.json/);
  });
});

describe('edgeloop-agent eval', () => {
  it('gives the model mAP 1 on labels equal to its detections and the champion without the dog 2/3', async () => {
    const file = await exportWith('scene.tar', SCENE);
    const { io, out, err } = captureIo();
    const code = await runEvalCli(
      [
        '--model',
        candidate.modelPath,
        '--manifest',
        candidate.manifestPath,
        '--baseline',
        champion.modelPath,
        '--baseline-manifest',
        champion.manifestPath,
        '--dataset',
        file,
        '--provider',
        'cpu',
        '--json',
      ],
      io,
    );
    expect(err()).toBe('');
    expect(code).toBe(0);
    const report = JSON.parse(out());
    expect(report).toMatchObject({
      modelId: 'det@2.0.0',
      datasetId: 'evalset@2',
      modelSha256: expect.stringMatching(/^[0-9a-f]{64}$/),
      metrics: { task: 'detection', images: 2, map50: 1, map75: 1, map: 1, accuracy: null },
      baseline: { modelId: 'det@1.0.0', metrics: { task: 'detection', images: 2, map50: 0.6667, map: 0.6667 } },
      evaluator: { tool: 'edgeloop-agent eval', provider: 'cpu' },
      posted: null,
    });
    expect(report.baseline.sha256).not.toBe(report.modelSha256);
    const dog = report.baseline.metrics.classes.find((c: { label: string }) => c.label === 'dog');
    expect(dog).toMatchObject({ groundTruth: 2, detections: 0, truePositives: 0, recall: 0, precision: null, ap50: 0 });
    for (const c of report.metrics.classes) {
      expect(c).toMatchObject({
        groundTruth: 2,
        detections: 2,
        truePositives: 2,
        falsePositives: 0,
        precision: 1,
        recall: 1,
      });
    }
  }, 30_000);

  it('gives mAP 0 on labels away from every detection, and prints a table without --json', async () => {
    const file = await exportWith('away.tar', AWAY);
    const { io, out } = captureIo();
    const code = await runEvalCli(
      ['--model', candidate.modelPath, '--manifest', candidate.manifestPath, '--dataset', file, '--split', 'test'],
      io,
    );
    expect(code).toBe(0);
    const text = out();
    expect(text).toContain('det@2.0.0 on evalset@2 (1 images): mAP@0.5 0.000  mAP@0.75 0.000  mAP@[0.5:0.95] 0.000');
    expect(text).toMatch(/^person\s+1\s+1\s+0\s+1\s+0\.000\s+0\.000\s+0\.000\s+0\.000$/m);
  }, 30_000);

  it('exits 2 on an export whose boxes are predictions, and on missing flags, with the usage', async () => {
    const scored = await exportWith(
      'scored.tar',
      SCENE.map((box) => ({ ...box, score: 0.5 })),
    );
    const first = captureIo();
    expect(await runEvalCli(['--model', candidate.modelPath, '--dataset', scored], first.io)).toBe(2);
    expect(first.err()).toMatch(/no labels to evaluate against.*predictions/);
    const second = captureIo();
    expect(await runEvalCli(['--model', candidate.modelPath], second.io)).toBe(2);
    expect(second.err()).toContain('--dataset is required');
    expect(second.err()).toContain('usage: edgeloop-agent eval');
    const third = captureIo();
    expect(
      await runEvalCli(['--model', 'm.onnx', '--dataset', scored, '--control-plane-url', 'http://cp:8080'], third.io),
    ).toBe(2);
    expect(third.err()).toContain('posting needs a token');
  });

  it('exits 1 and posts nothing when an image listed in annotations.json is not in the tar', async () => {
    const file = await exportWith('short.tar', SCENE, { omit: [1] });
    const { io, err } = captureIo();
    const code = await runEvalCli(
      [
        '--model',
        candidate.modelPath,
        '--manifest',
        candidate.manifestPath,
        '--dataset',
        file,
        '--control-plane-url',
        'http://127.0.0.1:9',
        '--token',
        'x',
      ],
      io,
    );
    expect(code).toBe(1);
    expect(err()).toMatch(/1 of 2 images could not be evaluated \(nothing posted\).*not in the tar/);
  }, 30_000);

  it('prints its usage with --help', async () => {
    const { io, out } = captureIo();
    expect(await runEvalCli(['--help'], io)).toBe(0);
    expect(out()).toContain('--baseline');
    expect(out()).toContain('mAP@0.5');
  });
});
