import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ModelManifest, type ModelManifestInput } from '@edgeloop/protocol';
import {
  buildConstantOutputModel,
  buildYoloTestModel,
  SAMPLE_LABELS,
  sampleYoloBoxes,
  type YoloTestBox,
  yoloTestOutputDims,
} from '../../scripts/test-models.ts';
import { loadVisionModel, type VisionModel } from '../../src/vision/vision-model.ts';

/*
 * Real ONNX models for the model-update tests, all on a 160x160 input with the sample scene
 * (person 0.9, car 0.8, dog 0.7 after NMS on any bright frame), in variants: other bytes with the
 * same detections (another layout or anchor count), a model that misses the dog, one that sees
 * nothing, one whose every output is NaN.
 */

export const INPUT = 160;
const scale = INPUT / 640;

export function sceneBoxes(options: { withoutDog?: boolean } = {}): YoloTestBox[] {
  return sampleYoloBoxes()
    .filter((box) => !(options.withoutDog && box.classId === 2))
    .map((box) => ({ ...box, cx: box.cx * scale, cy: box.cy * scale, w: box.w * scale, h: box.h * scale }));
}

export type Variant = {
  readonly layout?: 'yolov5' | 'yolov8';
  readonly anchors?: number;
  readonly boxes?: readonly YoloTestBox[];
};

export function yoloBytes(variant: Variant = {}): Uint8Array {
  return buildYoloTestModel({
    layout: variant.layout ?? 'yolov8',
    inputWidth: INPUT,
    inputHeight: INPUT,
    numClasses: 3,
    boxes: variant.boxes ?? sceneBoxes(),
    anchors: variant.anchors ?? 30,
  });
}

/** A yolov8-layout model whose every output value is NaN, whatever the input. */
export function nanModelBytes(anchors = 30): Uint8Array {
  const dims = yoloTestOutputDims({
    layout: 'yolov8',
    inputWidth: INPUT,
    inputHeight: INPUT,
    numClasses: 3,
    boxes: [],
    anchors,
  });
  const size = dims.reduce((a, b) => a * b, 1);
  return buildConstantOutputModel({
    inputShape: [1, 3, INPUT, INPUT],
    outputDims: dims,
    base: new Float32Array(size).fill(Number.NaN),
    gain: new Float32Array(size),
  });
}

export function yoloManifest(
  name: string,
  version: string,
  layout: 'yolov5' | 'yolov8' = 'yolov8',
): ModelManifestInput {
  return {
    name,
    version,
    adapter: 'yolo',
    input: { name: 'images', width: INPUT, height: INPUT, padValue: 114 },
    labels: [...SAMPLE_LABELS],
    thresholds: { confidence: 0.25, iou: 0.45, topK: 1000, maxDetections: 300 },
    yolo: { layout },
  };
}

/** Writes a model and its manifest into `dir`; returns their paths. */
export function writeModel(
  dir: string,
  bytes: Uint8Array,
  manifest: ModelManifestInput,
): { modelPath: string; manifestPath: string } {
  const base = `${manifest.name}-${manifest.version}`;
  const modelPath = path.join(dir, `${base}.onnx`);
  const manifestPath = path.join(dir, `${base}.json`);
  writeFileSync(modelPath, bytes);
  writeFileSync(manifestPath, JSON.stringify(manifest));
  return { modelPath, manifestPath };
}

/**
 * The models the shadow tests compare, loaded as real onnxruntime sessions from files in `dir`:
 * the current model, a candidate with other bytes and the same detections, and one that misses
 * the dog.
 */
export async function loadShadowModels(
  dir: string,
): Promise<{ current: VisionModel; identical: VisionModel; missesDog: VisionModel; release(): Promise<void> }> {
  const load = (name: string, variant: Variant) => {
    const manifest = yoloManifest(name, '1.0.0', variant.layout ?? 'yolov8');
    const written = writeModel(dir, yoloBytes(variant), manifest);
    return loadVisionModel({
      modelPath: written.modelPath,
      manifest: ModelManifest.parse(manifest),
      providers: ['cpu'],
      intraOpThreads: 1,
    });
  };
  const current = await load('current', { layout: 'yolov8', anchors: 30 });
  const identical = await load('identical', { layout: 'yolov5', anchors: 40 });
  const missesDog = await load('misses-dog', {
    layout: 'yolov8',
    anchors: 30,
    boxes: sceneBoxes({ withoutDog: true }),
  });
  return {
    current,
    identical,
    missesDog,
    async release() {
      for (const model of [current, identical, missesDog]) await model.release();
    },
  };
}
