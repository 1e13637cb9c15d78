import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { ModelManifestInput } from '@edgeloop/protocol';
import type { onnx as OnnxNamespace } from 'onnx-proto';

/*
 * Small ONNX models whose outputs are KNOWN for known inputs, built with onnx-proto, so the
 * adapters can be tested end to end through a real onnxruntime session.
 *
 * Graph (opset 13):
 *   m      = ReduceMax(images)              scalar: the largest input value
 *   output = base + gain * m
 * `base` holds what does not depend on the input (box coordinates, objectness, background
 * candidates); `gain` holds the class scores. A frame with a white pixel (1.0 after /255) gives
 * the scores as written; a letterboxed black frame gives them times 114/255 (the padding), so the
 * session really computes from the input.
 */

const require = createRequire(import.meta.url);
const { onnx } = require('onnx-proto') as { onnx: typeof OnnxNamespace };

const FLOAT = 1;

export interface ConstantOutputModelSpec {
  inputName?: string;
  /** Input dims; strings are dynamic dimensions. */
  inputShape: readonly (number | string)[];
  outputName?: string;
  outputDims: readonly number[];
  base: Float32Array;
  gain: Float32Array;
}

function valueInfo(name: string, dims: readonly (number | string)[]): OnnxNamespace.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function initializer(name: string, dims: readonly number[], values: Float32Array): OnnxNamespace.ITensorProto {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  return { name, dims: [...dims], dataType: FLOAT, rawData: bytes.slice() };
}

/** An ONNX model (bytes) computing output = base + gain * max(input). */
export function buildConstantOutputModel(spec: ConstantOutputModelSpec): Uint8Array {
  const inputName = spec.inputName ?? 'images';
  const outputName = spec.outputName ?? 'output0';
  const size = spec.outputDims.reduce((a, b) => a * b, 1);
  if (spec.base.length !== size || spec.gain.length !== size) {
    throw new Error(`base and gain must hold ${size} values`);
  }
  const model: OnnxNamespace.IModelProto = {
    irVersion: 7,
    producerName: 'edgeloop-test-models',
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'constant-output',
      input: [valueInfo(inputName, spec.inputShape)],
      output: [valueInfo(outputName, spec.outputDims)],
      initializer: [initializer('base', spec.outputDims, spec.base), initializer('gain', spec.outputDims, spec.gain)],
      node: [
        {
          name: 'max',
          opType: 'ReduceMax',
          input: [inputName],
          output: ['m'],
          attribute: [{ name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 }],
        },
        { name: 'scale', opType: 'Mul', input: ['gain', 'm'], output: ['scaled'] },
        { name: 'add', opType: 'Add', input: ['base', 'scaled'], output: [outputName] },
      ],
    },
  };
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
}

export interface YoloTestBox {
  /** Centre and size in model-input pixels. */
  cx: number;
  cy: number;
  w: number;
  h: number;
  classId: number;
  /** Class score for an input whose maximum is 1.0. */
  score: number;
  /** yolov5 objectness (default 1). */
  objectness?: number;
}

export interface YoloTestModelSpec {
  layout: 'yolov5' | 'yolov8';
  inputWidth: number;
  inputHeight: number;
  numClasses: number;
  boxes: readonly YoloTestBox[];
  /** Candidates N in the output (default 64); those beyond `boxes` are background with score 0.001. */
  anchors?: number;
  /** Declare the input's height and width dynamic ('height', 'width'). */
  dynamicInput?: boolean;
}

/** Output dims of a YOLO test model: [1, N, 5 + C] or [1, 4 + C, N]. */
export function yoloTestOutputDims(spec: YoloTestModelSpec): number[] {
  const n = spec.anchors ?? 64;
  return spec.layout === 'yolov5' ? [1, n, 5 + spec.numClasses] : [1, 4 + spec.numClasses, n];
}

/** base and gain tensors of a YOLO test model. */
export function yoloTestTensors(spec: YoloTestModelSpec): { base: Float32Array; gain: Float32Array } {
  const n = spec.anchors ?? 64;
  const c = spec.numClasses;
  if (spec.boxes.length > n) throw new Error(`${spec.boxes.length} boxes do not fit in ${n} anchors`);
  const size = n * (spec.layout === 'yolov5' ? 5 + c : 4 + c);
  const base = new Float32Array(size);
  const gain = new Float32Array(size);
  // yolov5: row i holds (cx, cy, w, h, obj, c0..); yolov8: value k of anchor i sits at k * n + i.
  const at = (anchor: number, k: number): number => (spec.layout === 'yolov5' ? anchor * (5 + c) + k : k * n + anchor);
  const classOffset = spec.layout === 'yolov5' ? 5 : 4;
  for (let i = 0; i < n; i++) {
    const box = spec.boxes[i];
    const cx = box ? box.cx : ((i * 37) % spec.inputWidth) + 4;
    const cy = box ? box.cy : ((i * 53) % spec.inputHeight) + 4;
    base[at(i, 0)] = cx;
    base[at(i, 1)] = cy;
    base[at(i, 2)] = box ? box.w : 8;
    base[at(i, 3)] = box ? box.h : 8;
    if (spec.layout === 'yolov5') base[at(i, 4)] = box ? (box.objectness ?? 1) : 0.001;
    for (let k = 0; k < c; k++) gain[at(i, classOffset + k)] = 0.001;
    if (box) {
      if (box.classId < 0 || box.classId >= c) throw new Error(`classId ${box.classId} out of range`);
      gain[at(i, classOffset + box.classId)] = box.score;
    }
  }
  return { base, gain };
}

/** A YOLO-format ONNX model (bytes) whose output encodes `spec.boxes`. */
export function buildYoloTestModel(spec: YoloTestModelSpec): Uint8Array {
  const { base, gain } = yoloTestTensors(spec);
  return buildConstantOutputModel({
    inputShape: spec.dynamicInput ? [1, 3, 'height', 'width'] : [1, 3, spec.inputHeight, spec.inputWidth],
    outputDims: yoloTestOutputDims(spec),
    base,
    gain,
  });
}

/** A classification model (bytes): logits [1, C] = logits * max(input). */
export function buildClassificationTestModel(spec: {
  inputWidth: number;
  inputHeight: number;
  logits: readonly number[];
}): Uint8Array {
  return buildConstantOutputModel({
    inputName: 'input',
    inputShape: [1, 3, spec.inputHeight, spec.inputWidth],
    outputName: 'logits',
    outputDims: [1, spec.logits.length],
    base: new Float32Array(spec.logits.length),
    gain: Float32Array.from(spec.logits),
  });
}

/**
 * The scene the tests and the benchmark use, in a 640x640 input: two overlapping "person" boxes
 * (the weaker one must be suppressed), a "car" overlapping the stronger person (class-aware NMS
 * keeps it), a separate "dog", and a low-score box under the default 0.25 threshold.
 */
export const SAMPLE_LABELS = ['person', 'car', 'dog'] as const;

export function sampleYoloBoxes(): YoloTestBox[] {
  return [
    { cx: 200, cy: 320, w: 100, h: 200, classId: 0, score: 0.9 },
    { cx: 210, cy: 325, w: 100, h: 200, classId: 0, score: 0.6 },
    { cx: 220, cy: 330, w: 120, h: 180, classId: 1, score: 0.8 },
    { cx: 480, cy: 300, w: 80, h: 60, classId: 2, score: 0.7 },
    { cx: 420, cy: 420, w: 40, h: 40, classId: 2, score: 0.1 },
  ];
}

export interface WrittenModel {
  modelPath: string;
  manifestPath: string;
  manifest: ModelManifestInput;
}

/** Writes a YOLO test model and its manifest (protocol ModelManifest) into `dir`. */
export function writeYoloTestModel(
  dir: string,
  spec: YoloTestModelSpec,
  options: { name?: string; labels?: readonly string[] } = {},
): WrittenModel {
  const name = options.name ?? `yolo-test-${spec.layout}`;
  const modelPath = path.join(dir, `${name}.onnx`);
  const manifestPath = path.join(dir, `${name}.manifest.json`);
  const labels = options.labels ?? Array.from({ length: spec.numClasses }, (_, i) => SAMPLE_LABELS[i] ?? `class${i}`);
  const manifest: ModelManifestInput = {
    name,
    version: '1.0.0',
    adapter: 'yolo',
    description: `generated ${spec.layout} test model: output = base + gain * max(input)`,
    input: { name: 'images', width: spec.inputWidth, height: spec.inputHeight, padValue: 114 },
    labels: [...labels],
    thresholds: { confidence: 0.25, iou: 0.45, topK: 1000, maxDetections: 300 },
    yolo: { layout: spec.layout },
  };
  writeFileSync(modelPath, buildYoloTestModel(spec));
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  return { modelPath, manifestPath, manifest };
}
