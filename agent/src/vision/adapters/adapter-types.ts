import type { AdapterName } from '@edgeloop/protocol';
import type { ResizeGeometry, RgbImage, SourceScale } from './resize.ts';

/** One detection in source-frame pixels. Classification results cover the whole frame. */
export interface Detection {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  /** Confidence 0..1. */
  score: number;
  classId: number;
  label: string;
}

/** What the adapters read from onnxruntime's output tensors. */
export interface OutputTensor {
  readonly dims: readonly number[];
  readonly data: Float32Array;
}

export type ModelOutputs = Readonly<Record<string, OutputTensor>>;

/** The model input as the session and manifest resolved it (see resolveModelInput). */
export interface ModelInput {
  name: string;
  layout: 'nchw' | 'nhwc';
  /** Fixed input size; null when the model takes any size and the manifest names none. */
  width: number | null;
  height: number | null;
}

/** What preprocess tells postprocess about one frame. */
export interface Preprocessed {
  /** Tensor dims written, e.g. [1, 3, H, W]. */
  readonly dims: readonly number[];
  readonly geometry: ResizeGeometry;
}

/**
 * Pre- and post-processing for one model family. Adapters hold only reusable scratch (resize
 * plans, candidate arrays); the same input gives the same output.
 */
export interface ModelAdapter {
  readonly kind: AdapterName;
  readonly labels: readonly string[];
  /** The score a detection needs to be kept (the near-threshold share is measured against it). */
  readonly threshold: number;
  /** Input tensor dims for a frame of this size. */
  inputDims(frameWidth: number, frameHeight: number): readonly number[];
  /**
   * The frame size a scaling source (ffmpeg) should deliver so preprocess only normalises; null
   * when the input size follows the frame (a dynamic-size model without a fixed size).
   */
  readonly sourceScale: SourceScale | null;
  /**
   * Writes the input tensor for `image` into `out` (length >= product of inputDims). The returned
   * object is shared by frames of the same size (do not change it).
   */
  preprocess(image: RgbImage, out: Float32Array): Preprocessed;
  /** Detections in source pixels, best first. */
  postprocess(outputs: ModelOutputs, pre: Preprocessed): Detection[];
}

export function tensorLength(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function labelFor(labels: readonly string[], classId: number): string {
  return labels[classId] ?? String(classId);
}
