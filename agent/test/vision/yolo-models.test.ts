import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ModelManifest } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildClassificationTestModel,
  buildConstantOutputModel,
  SAMPLE_LABELS,
  sampleYoloBoxes,
  writeYoloTestModel,
} from '../../scripts/test-models.ts';
import type { Detection } from '../../src/vision/adapters/adapter-types.ts';
import { tensorLength } from '../../src/vision/adapters/adapter-types.ts';
import { loadModelManifest } from '../../src/vision/model-manifest.ts';
import type { VisionModel } from '../../src/vision/vision-model.ts';
import { loadVisionModel } from '../../src/vision/vision-model.ts';
import { makeTempDir } from './test-media.ts';

/*
 * Generated YOLO models (agent/scripts/test-models.ts): output = base + gain * max(input), encoding
 * sampleYoloBoxes() in a 640x640 input. Run through a real onnxruntime session and the full adapter.
 */

const temp = makeTempDir('yolo');
const LAYOUTS = ['yolov5', 'yolov8'] as const;
const models: Record<string, VisionModel> = {};

beforeAll(async () => {
  for (const layout of LAYOUTS) {
    const written = writeYoloTestModel(temp.dir, {
      layout,
      inputWidth: 640,
      inputHeight: 640,
      numClasses: 3,
      boxes: sampleYoloBoxes(),
      anchors: layout === 'yolov8' ? 8400 : 100,
    });
    const manifest = await loadModelManifest(written.manifestPath);
    if (!manifest.ok) throw new Error(manifest.error.message);
    models[layout] = await loadVisionModel({
      modelPath: written.modelPath,
      manifest: manifest.value,
      providers: ['cpu'],
    });
    // The same file with layout 'auto'.
    models[`${layout}-auto`] = await loadVisionModel({
      modelPath: written.modelPath,
      manifest: { ...manifest.value, yolo: { layout: 'auto' } },
      providers: ['cpu'],
    });
  }
});

afterAll(async () => {
  for (const model of Object.values(models)) await model.release();
  temp.remove();
});

async function detect(
  model: VisionModel,
  image: { data: Uint8Array; width: number; height: number },
): Promise<Detection[]> {
  const dims = model.adapter.inputDims(image.width, image.height);
  const input = new Float32Array(tensorLength(dims));
  const pre = model.adapter.preprocess(image, input);
  return model.adapter.postprocess(await model.session.run(model.input.name, input, pre.dims), pre);
}

const frame = (width: number, height: number, value: number) => ({
  data: new Uint8Array(width * height * 3).fill(value),
  width,
  height,
});

const rounded = (detections: Detection[]) =>
  detections.map((d) => ({
    label: d.label,
    score: Math.round(d.score * 1000) / 1000,
    box: [d.x1, d.y1, d.x2, d.y2].map((v) => Math.round(v * 10) / 10),
  }));

describe.each([...LAYOUTS, 'yolov5-auto', 'yolov8-auto'])('generated YOLO model (%s)', (key) => {
  it('finds the known boxes of a white 960x540 frame, mapped back through the letterbox', async () => {
    // 960x540 -> 640x360 content at y 140..500 in the 640x640 input, scale 2/3.
    // Input boxes: person (150,220)-(250,420); car (160,240)-(280,420); dog (440,270)-(520,330).
    expect(rounded(await detect(models[key] as VisionModel, frame(960, 540, 255)))).toEqual([
      { label: 'person', score: 0.9, box: [225, 120, 375, 420] },
      { label: 'car', score: 0.8, box: [240, 150, 420, 420] },
      { label: 'dog', score: 0.7, box: [660, 195, 780, 285] },
    ]);
  });

  it('maps boxes back for a portrait frame padded left and right, clamping at the edge', async () => {
    // 480x800 -> 384x640 content at x 128..512, scale 0.8.
    const found = rounded(await detect(models[key] as VisionModel, frame(480, 800, 255)));
    expect(found).toEqual([
      { label: 'person', score: 0.9, box: [27.5, 275, 152.5, 525] },
      { label: 'car', score: 0.8, box: [40, 300, 190, 525] },
      { label: 'dog', score: 0.7, box: [390, 337.5, 480, 412.5] },
    ]);
  });

  it('computes scores from the input: a black frame scales them by the padding grey', async () => {
    // Letterboxed black frame: the largest input value is the padding, 114/255.
    const k = 114 / 255;
    const found = rounded(await detect(models[key] as VisionModel, frame(960, 540, 0)));
    expect(found.map((d) => [d.label, d.score])).toEqual([
      ['person', Math.round(0.9 * k * 1000) / 1000],
      ['car', Math.round(0.8 * k * 1000) / 1000],
      ['dog', Math.round(0.7 * k * 1000) / 1000],
    ]);
    // A square black frame has no padding: every score is 0 and nothing is found.
    expect(await detect(models[key] as VisionModel, frame(640, 640, 0))).toEqual([]);
  });
});

describe('generated models without a manifest and other adapters', () => {
  it('guesses the yolo adapter from the output shape and labels classes by number', async () => {
    const written = writeYoloTestModel(
      temp.dir,
      {
        layout: 'yolov8',
        inputWidth: 320,
        inputHeight: 320,
        numClasses: 3,
        boxes: sampleYoloBoxes().map((b) => ({ ...b, cx: b.cx / 2, cy: b.cy / 2, w: b.w / 2, h: b.h / 2 })),
        anchors: 200,
      },
      { name: 'guess-me' },
    );
    const model = await loadVisionModel({ modelPath: written.modelPath, providers: ['cpu'] });
    try {
      expect(model.guessed).toBe(true);
      expect(model.manifest.adapter).toBe('yolo');
      expect(model.input).toMatchObject({ name: 'images', width: 320, height: 320 });
      expect(model.ref).toMatchObject({ name: 'guess-me', version: '0.0.0' });
      const found = await detect(model, frame(320, 320, 255));
      expect(found.map((d) => d.label)).toEqual(['0', '1', '2']);
    } finally {
      await model.release();
    }
  });

  it('runs a classification model through softmax and top-k', async () => {
    const file = path.join(temp.dir, 'cls.onnx');
    writeFileSync(file, buildClassificationTestModel({ inputWidth: 32, inputHeight: 32, logits: [1, 3, 2] }));
    const manifest = ModelManifest.parse({
      name: 'cls',
      version: '1.0.0',
      adapter: 'classification',
      labels: [...SAMPLE_LABELS],
      thresholds: { confidence: 0.2 },
      classification: { topK: 2 },
    });
    const model = await loadVisionModel({ modelPath: file, manifest, providers: ['cpu'] });
    try {
      const found = await detect(model, frame(50, 40, 255));
      const z = Math.exp(1) + Math.exp(3) + Math.exp(2);
      expect(found.map((d) => d.label)).toEqual(['car', 'dog']);
      expect(found[0]?.score).toBeCloseTo(Math.exp(3) / z, 5);
      expect(found[1]?.score).toBeCloseTo(Math.exp(2) / z, 5);
      expect(found[0]).toMatchObject({ x1: 0, y1: 0, x2: 50, y2: 40 });
    } finally {
      await model.release();
    }
  });

  it('fails clearly when the adapter cannot be guessed', async () => {
    const file = path.join(temp.dir, 'odd.onnx');
    writeFileSync(
      file,
      buildConstantOutputModel({
        inputShape: [1, 3, 8, 8],
        outputDims: [1, 2, 2, 2, 2],
        base: new Float32Array(16),
        gain: new Float32Array(16),
      }),
    );
    await expect(loadVisionModel({ modelPath: file, providers: ['cpu'] })).rejects.toMatchObject({
      code: 'adapter_unknown',
      message: expect.stringContaining('pass a manifest'),
    });
  });

  it('rejects a manifest whose layout does not fit the model input', async () => {
    const written = writeYoloTestModel(
      temp.dir,
      { layout: 'yolov5', inputWidth: 64, inputHeight: 64, numClasses: 3, boxes: [], anchors: 10 },
      { name: 'layout-check' },
    );
    const manifest = await loadModelManifest(written.manifestPath);
    if (!manifest.ok) throw new Error(manifest.error.message);
    await expect(
      loadVisionModel({
        modelPath: written.modelPath,
        manifest: { ...manifest.value, input: { ...manifest.value.input, layout: 'nhwc' } },
        providers: ['cpu'],
      }),
    ).rejects.toMatchObject({ code: 'manifest_invalid', message: expect.stringContaining('not nhwc with 3 channels') });
  });

  it('fails at warm-up when the manifest names a size the model does not take', async () => {
    const written = writeYoloTestModel(temp.dir, {
      layout: 'yolov5',
      inputWidth: 64,
      inputHeight: 64,
      numClasses: 3,
      boxes: [],
      anchors: 10,
    });
    const manifest = await loadModelManifest(written.manifestPath);
    if (!manifest.ok) throw new Error(manifest.error.message);
    await expect(
      loadVisionModel({
        modelPath: written.modelPath,
        manifest: { ...manifest.value, input: { ...manifest.value.input, width: 96, height: 96 } },
        providers: ['cpu'],
      }),
    ).rejects.toMatchObject({ code: 'manifest_invalid', message: expect.stringContaining('warm-up') });
  });
});
