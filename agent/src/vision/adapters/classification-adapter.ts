import type { ModelManifest } from '@edgeloop/protocol';
import type { Detection, ModelAdapter, ModelInput, ModelOutputs, Preprocessed } from './adapter-types.ts';
import { labelFor } from './adapter-types.ts';
import { createInputWriter, lastSizeMemo, letterboxGeometry, stretchGeometry } from './resize.ts';
import { tensorFormatOf } from './yolo-adapter.ts';

/*
 * Image classification: logits (or probabilities) [1, C] -> softmax (optional) -> top k.
 * Each result is a Detection covering the whole frame, so metrics treat all adapters alike.
 */

/** Numerically stable softmax of `logits` into `out` (may be the same array). */
export function softmax(logits: ArrayLike<number>, out: Float32Array): Float32Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) if ((logits[i] as number) > max) max = logits[i] as number;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = Math.exp((logits[i] as number) - max);
    out[i] = e;
    sum += e;
  }
  for (let i = 0; i < logits.length; i++) out[i] = (out[i] as number) / sum;
  return out;
}

/** Indices of the k largest scores, largest first (ties: lower index first). */
export function topKIndices(scores: ArrayLike<number>, k: number): number[] {
  const picked: number[] = [];
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i] as number;
    if (picked.length === k && s <= (scores[picked[k - 1] as number] as number)) continue;
    let at = picked.length;
    while (at > 0 && (scores[picked[at - 1] as number] as number) < s) at--;
    picked.splice(at, 0, i);
    if (picked.length > k) picked.pop();
  }
  return picked;
}

/** Model input size when neither the model nor the manifest fixes it. */
export const CLASSIFICATION_DEFAULT_SIZE = 224;

export interface ClassificationAdapterOptions {
  manifest: ModelManifest;
  input: ModelInput;
  outputName?: string | undefined;
}

export function createClassificationAdapter(options: ClassificationAdapterOptions): ModelAdapter {
  const { manifest, input } = options;
  const width = input.width ?? CLASSIFICATION_DEFAULT_SIZE;
  const height = input.height ?? CLASSIFICATION_DEFAULT_SIZE;
  const format = tensorFormatOf(manifest, input.layout);
  const dims = input.layout === 'nchw' ? [1, 3, height, width] : [1, height, width, 3];
  const write = createInputWriter(format);
  const letterbox = manifest.input.resize === 'letterbox';
  const preFor = lastSizeMemo(
    (w, h): Preprocessed => ({
      dims,
      geometry: letterbox ? letterboxGeometry(w, h, width, height) : stretchGeometry(w, h, width, height),
    }),
  );
  const { topK, softmax: applySoftmax } = manifest.classification;
  const threshold = manifest.thresholds.confidence;
  let probabilities = new Float32Array(0);

  return {
    kind: 'classification',
    labels: manifest.labels,
    threshold,
    inputDims: () => dims,
    sourceScale: { width, height, keepAspect: letterbox },
    preprocess(image, out): Preprocessed {
      const pre = preFor(image.width, image.height);
      write(image, pre.geometry, out);
      return pre;
    },
    postprocess(outputs: ModelOutputs, pre: Preprocessed): Detection[] {
      const name = options.outputName ?? Object.keys(outputs)[0];
      const tensor = name === undefined ? undefined : outputs[name];
      if (!tensor) throw new Error('classification model returned no output');
      const classes = tensor.data.length;
      let scores: Float32Array = tensor.data;
      if (applySoftmax) {
        if (probabilities.length !== classes) probabilities = new Float32Array(classes);
        scores = softmax(tensor.data, probabilities);
      }
      const detections: Detection[] = [];
      for (const classId of topKIndices(scores, topK)) {
        const score = scores[classId] as number;
        if (score < threshold) continue;
        detections.push({
          x1: 0,
          y1: 0,
          x2: pre.geometry.srcWidth,
          y2: pre.geometry.srcHeight,
          score,
          classId,
          label: labelFor(manifest.labels, classId),
        });
      }
      return detections;
    },
  };
}
