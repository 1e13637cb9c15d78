import type { Failure, ModelManifest, Result } from '@edgeloop/protocol';
import { fail, ok } from '@edgeloop/protocol';
import type { Detection, ModelAdapter, ModelInput, ModelOutputs, Preprocessed } from './adapter-types.ts';
import { labelFor } from './adapter-types.ts';
import type { BoxSet } from './box-set.ts';
import { createBoxSet, nonMaxSuppression, pushBox, selectTopK } from './box-set.ts';
import type { TensorFormat } from './resize.ts';
import { createInputWriter, lastSizeMemo, letterboxGeometry, mapBoxToSource, stretchGeometry } from './resize.ts';

/*
 * YOLO-family detectors, both output layouts:
 *   yolov5  [1, N, 5 + C]  rows of (cx, cy, w, h, objectness, C class scores); score = obj * cls
 *   yolov8  [1, 4 + C, N]  columns of (cx, cy, w, h, C class scores) (YOLOv8, YOLO11)
 * Boxes are in model-input pixels. Candidates under the confidence threshold are skipped, the rest
 * capped at topK by score BEFORE the quadratic NMS, then class-aware NMS, then mapped back through
 * the letterbox to source pixels and clamped.
 */

export type YoloLayout = 'yolov5' | 'yolov8';

export interface YoloShape {
  layout: YoloLayout;
  /** Candidate count N. */
  anchors: number;
  /** Class count C. */
  classes: number;
}

/**
 * Decides the layout of a [1, A, B] output. With labels known (C), the shape that fits C wins;
 * otherwise the longer axis holds the candidates (N is in the thousands, 5 + C rarely is).
 */
export function resolveYoloShape(
  dims: readonly number[],
  layout: 'auto' | YoloLayout,
  numClasses: number | null,
): Result<YoloShape, 'bad_shape'> {
  const squeezed = dims.length === 3 && dims[0] === 1 ? dims.slice(1) : dims.length === 2 ? dims : null;
  if (!squeezed) return fail('bad_shape', `YOLO output must be [1, A, B]; got [${dims.join(', ')}]`);
  const a = squeezed[0] as number;
  const b = squeezed[1] as number;
  const asV5 = (): Result<YoloShape, 'bad_shape'> =>
    b >= 5
      ? ok({ layout: 'yolov5', anchors: a, classes: b - 5 })
      : fail('bad_shape', `yolov5 rows need 5 + C values; got ${b}`);
  const asV8 = (): Result<YoloShape, 'bad_shape'> =>
    a >= 5
      ? ok({ layout: 'yolov8', anchors: b, classes: a - 4 })
      : fail('bad_shape', `yolov8 needs 4 + C rows; got ${a}`);
  if (layout === 'yolov5') return asV5();
  if (layout === 'yolov8') return asV8();
  if (numClasses !== null && numClasses > 0) {
    const fitsV5 = b === 5 + numClasses;
    const fitsV8 = a === 4 + numClasses;
    if (fitsV5 && !fitsV8) return asV5();
    if (fitsV8 && !fitsV5) return asV8();
  }
  return a > b ? asV5() : asV8();
}

/**
 * Appends every candidate with score >= `confidence` to `out` (model-input pixels, x1y1x2y2).
 * `scratch` holds per-anchor best scores for the yolov8 layout (grown as needed).
 */
export function decodeYoloCandidates(
  data: Float32Array,
  shape: YoloShape,
  confidence: number,
  out: BoxSet,
  scratch: { best: Float32Array; bestClass: Int32Array },
): void {
  out.count = 0;
  const n = shape.anchors;
  const c = shape.classes;
  if (shape.layout === 'yolov5') {
    const stride = 5 + c;
    for (let i = 0; i < n; i++) {
      const row = i * stride;
      const objectness = data[row + 4] as number;
      if (objectness < confidence) continue;
      let best = c === 0 ? 1 : (data[row + 5] as number);
      let bestClass = 0;
      for (let k = 1; k < c; k++) {
        const s = data[row + 5 + k] as number;
        if (s > best) {
          best = s;
          bestClass = k;
        }
      }
      const score = objectness * best;
      if (score < confidence) continue;
      const cx = data[row] as number;
      const cy = data[row + 1] as number;
      const hw = (data[row + 2] as number) / 2;
      const hh = (data[row + 3] as number) / 2;
      pushBox(out, cx - hw, cy - hh, cx + hw, cy + hh, score, bestClass);
    }
    return;
  }
  // yolov8: class scores are rows of length n; walk them row by row (sequential memory).
  if (scratch.best.length < n) {
    scratch.best = new Float32Array(n);
    scratch.bestClass = new Int32Array(n);
  }
  const best = scratch.best;
  const bestClass = scratch.bestClass;
  best.set(data.subarray(4 * n, 5 * n));
  bestClass.fill(0, 0, n);
  for (let k = 1; k < c; k++) {
    const base = (4 + k) * n;
    for (let i = 0; i < n; i++) {
      const s = data[base + i] as number;
      if (s > (best[i] as number)) {
        best[i] = s;
        bestClass[i] = k;
      }
    }
  }
  for (let i = 0; i < n; i++) {
    const score = best[i] as number;
    if (score < confidence) continue;
    const cx = data[i] as number;
    const cy = data[n + i] as number;
    const hw = (data[2 * n + i] as number) / 2;
    const hh = (data[3 * n + i] as number) / 2;
    pushBox(out, cx - hw, cy - hh, cx + hw, cy + hh, score, bestClass[i] as number);
  }
}

export interface YoloAdapterOptions {
  manifest: ModelManifest;
  input: ModelInput;
  /** Output to read; the first output when absent. */
  outputName?: string | undefined;
}

/** Model input size when neither the model nor the manifest fixes it. */
export const YOLO_DEFAULT_SIZE = 640;

export function tensorFormatOf(manifest: ModelManifest, layout: 'nchw' | 'nhwc'): TensorFormat {
  return {
    layout,
    colorOrder: manifest.input.colorOrder,
    scale: manifest.input.scale,
    mean: manifest.input.mean,
    std: manifest.input.std,
    padValue: manifest.input.padValue,
  };
}

export function createYoloAdapter(options: YoloAdapterOptions): ModelAdapter {
  const { manifest, input } = options;
  const width = input.width ?? YOLO_DEFAULT_SIZE;
  const height = input.height ?? YOLO_DEFAULT_SIZE;
  const format = tensorFormatOf(manifest, input.layout);
  const dims = input.layout === 'nchw' ? [1, 3, height, width] : [1, height, width, 3];
  const write = createInputWriter(format);
  const stretch = manifest.input.resize === 'stretch';
  const preFor = lastSizeMemo(
    (w, h): Preprocessed => ({
      dims,
      geometry: stretch ? stretchGeometry(w, h, width, height) : letterboxGeometry(w, h, width, height),
    }),
  );
  const candidates = createBoxSet(512);
  const scratch = { best: new Float32Array(0), bestClass: new Int32Array(0) };
  const { confidence, iou, topK, maxDetections } = manifest.thresholds;
  const labels = manifest.labels;
  let shapeCache: { key: string; shape: Result<YoloShape, 'bad_shape'> } | null = null;

  const shapeFor = (outDims: readonly number[]): YoloShape => {
    const key = outDims.join('x');
    if (shapeCache?.key !== key) {
      shapeCache = {
        key,
        shape: resolveYoloShape(outDims, manifest.yolo.layout, labels.length > 0 ? labels.length : null),
      };
    }
    const shape = shapeCache.shape;
    if (!shape.ok) throw new Error((shape.error as Failure).message);
    return shape.value;
  };

  return {
    kind: 'yolo',
    labels,
    threshold: confidence,
    inputDims: () => dims,
    sourceScale: { width, height, keepAspect: !stretch },
    preprocess(image, out): Preprocessed {
      const pre = preFor(image.width, image.height);
      write(image, pre.geometry, out);
      return pre;
    },
    postprocess(outputs: ModelOutputs, pre: Preprocessed): Detection[] {
      const name = options.outputName ?? Object.keys(outputs)[0];
      const tensor = name === undefined ? undefined : outputs[name];
      if (!tensor) throw new Error('YOLO model returned no output');
      const shape = shapeFor(tensor.dims);
      decodeYoloCandidates(tensor.data, shape, confidence, candidates, scratch);
      if (candidates.count === 0) return [];
      const order = selectTopK(candidates, topK);
      const kept = nonMaxSuppression(candidates, order, iou, maxDetections, true);
      const detections: Detection[] = [];
      for (const i of kept) {
        const box = mapBoxToSource(pre.geometry, {
          x1: candidates.x1[i] as number,
          y1: candidates.y1[i] as number,
          x2: candidates.x2[i] as number,
          y2: candidates.y2[i] as number,
        });
        if (box.x2 <= box.x1 || box.y2 <= box.y1) continue;
        const classId = candidates.classId[i] as number;
        detections.push({ ...box, score: candidates.score[i] as number, classId, label: labelFor(labels, classId) });
      }
      return detections;
    },
  };
}
