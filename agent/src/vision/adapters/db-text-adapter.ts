import type { ModelManifest } from '@edgeloop/protocol';
import type { Detection, ModelAdapter, ModelInput, ModelOutputs, Preprocessed } from './adapter-types.ts';
import { labelFor } from './adapter-types.ts';
import { createInputWriter, lastSizeMemo, letterboxGeometry, mapBoxToSource, stretchGeometry } from './resize.ts';
import { tensorFormatOf } from './yolo-adapter.ts';

/*
 * DB (Differentiable Binarization) text detection, as PaddleOCR's PP-OCRv4 det model needs it:
 *   preprocess   resize so both sides are multiples of 32 (longest side at most maxSide when the
 *                model takes any size), normalise (ImageNet mean/std unless the manifest says
 *                otherwise; PaddleOCR feeds BGR)
 *   postprocess  probability map [1, 1, H, W] -> binary map (p > binaryThreshold) -> 8-connected
 *                regions -> axis-aligned boxes; a region is kept when its mean probability
 *                >= boxThreshold and its short side >= minSize; the box grows by DB's unclip
 *                distance (area * unclipRatio / perimeter) and is mapped back to source pixels.
 * Axis-aligned boxes only: rotated text gets its bounding box.
 */

export interface TextRegion {
  /** Map coordinates (pixel centres), after unclip. */
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  /** Mean probability over the region's pixels. */
  score: number;
}

export interface DbRegionOptions {
  binaryThreshold: number;
  boxThreshold: number;
  unclipRatio: number;
  minSize: number;
  maxCandidates: number;
}

/** Reusable scratch for extractTextRegions (grown as needed). */
export interface DbScratch {
  visited: Uint8Array;
  stack: Int32Array;
}

export function createDbScratch(): DbScratch {
  return { visited: new Uint8Array(0), stack: new Int32Array(0) };
}

/**
 * Finds text regions in a probability map (row-major, width x height). Regions are visited in
 * raster order of their first pixel; at most maxCandidates are examined.
 */
export function extractTextRegions(
  prob: Float32Array,
  width: number,
  height: number,
  options: DbRegionOptions,
  scratch: DbScratch = createDbScratch(),
): TextRegion[] {
  const size = width * height;
  if (scratch.visited.length < size) {
    scratch.visited = new Uint8Array(size);
    scratch.stack = new Int32Array(size);
  } else {
    scratch.visited.fill(0, 0, size);
  }
  const visited = scratch.visited;
  const stack = scratch.stack;
  const threshold = options.binaryThreshold;
  const regions: TextRegion[] = [];
  const maxCandidates = options.maxCandidates;
  let candidates = 0;
  for (let start = 0; start < size && candidates < maxCandidates; start++) {
    // Most pixels are background (about 0.01 % are text on vtest.avi): skip them in a tight loop
    // that reads only the map, eight at a time while all eight are background (measured on
    // PP-OCRv4 maps of 320x320: 0.08 ms against 0.17 ms for one at a time in a hot loop; the whole
    // region search right after a session.run 0.11 against 0.14 ms; one at a time was itself about
    // half the cost of testing the visited map and the candidate count at every pixel).
    while (
      start + 8 <= size &&
      (prob[start] as number) <= threshold &&
      (prob[start + 1] as number) <= threshold &&
      (prob[start + 2] as number) <= threshold &&
      (prob[start + 3] as number) <= threshold &&
      (prob[start + 4] as number) <= threshold &&
      (prob[start + 5] as number) <= threshold &&
      (prob[start + 6] as number) <= threshold &&
      (prob[start + 7] as number) <= threshold
    ) {
      start += 8;
    }
    while (start < size && (prob[start] as number) <= threshold) start++;
    if (start >= size) break;
    if (visited[start]) continue;
    candidates++;
    // Flood fill (8-connected) from `start`, accumulating extent, pixel count and probability.
    let top = 0;
    stack[top++] = start;
    visited[start] = 1;
    let minX = width;
    let minY = height;
    let maxX = -1;
    let maxY = -1;
    let count = 0;
    let sum = 0;
    while (top > 0) {
      const p = stack[--top] as number;
      const y = (p / width) | 0;
      const x = p - y * width;
      count++;
      sum += prob[p] as number;
      if (x < minX) minX = x;
      if (x > maxX) maxX = x;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
      const yFrom = y > 0 ? y - 1 : y;
      const yTo = y < height - 1 ? y + 1 : y;
      const xFrom = x > 0 ? x - 1 : x;
      const xTo = x < width - 1 ? x + 1 : x;
      for (let ny = yFrom; ny <= yTo; ny++) {
        const row = ny * width;
        for (let nx = xFrom; nx <= xTo; nx++) {
          const q = row + nx;
          if ((prob[q] as number) <= threshold || visited[q]) continue;
          visited[q] = 1;
          stack[top++] = q;
        }
      }
    }
    // Box through the outermost pixel centres, as DB's contour would give.
    const w = maxX - minX;
    const h = maxY - minY;
    if (Math.min(w, h) < options.minSize) continue;
    const score = sum / count;
    if (score < options.boxThreshold) continue;
    const perimeter = 2 * (w + h);
    const distance = perimeter > 0 ? (w * h * options.unclipRatio) / perimeter : 0;
    const x1 = minX - distance;
    const y1 = minY - distance;
    const x2 = maxX + distance;
    const y2 = maxY + distance;
    if (Math.min(x2 - x1, y2 - y1) < options.minSize + 2) continue;
    regions.push({ x1, y1, x2, y2, score });
  }
  return regions;
}

/** Rounds `value` to a multiple of `multiple`, at least `multiple`. */
function roundToMultiple(value: number, multiple: number): number {
  return Math.max(multiple, Math.round(value / multiple) * multiple);
}

/**
 * DB input size for a frame: the fixed size when there is one, else the frame scaled down so its
 * longest side is at most maxSide, both sides rounded to sizeMultiple.
 */
export function dbInputSize(
  frameWidth: number,
  frameHeight: number,
  fixed: { width: number | null; height: number | null },
  maxSide: number,
  multiple: number,
): { width: number; height: number } {
  if (fixed.width !== null && fixed.height !== null) return { width: fixed.width, height: fixed.height };
  const longest = Math.max(frameWidth, frameHeight);
  const ratio = longest > maxSide ? maxSide / longest : 1;
  return {
    width: fixed.width ?? roundToMultiple(frameWidth * ratio, multiple),
    height: fixed.height ?? roundToMultiple(frameHeight * ratio, multiple),
  };
}

export interface DbTextAdapterOptions {
  manifest: ModelManifest;
  input: ModelInput;
  outputName?: string | undefined;
}

export function createDbTextAdapter(options: DbTextAdapterOptions): ModelAdapter {
  const { manifest, input } = options;
  const db = manifest.dbText;
  const format = tensorFormatOf(manifest, input.layout);
  const write = createInputWriter(format);
  const scratch = createDbScratch();
  const labels = manifest.labels.length > 0 ? manifest.labels : ['text'];
  const regionOptions: DbRegionOptions = {
    binaryThreshold: db.binaryThreshold,
    boxThreshold: db.boxThreshold,
    unclipRatio: db.unclipRatio,
    minSize: db.minSize,
    maxCandidates: db.maxCandidates,
  };
  const sizeFor = (w: number, h: number): { width: number; height: number } =>
    dbInputSize(w, h, { width: input.width, height: input.height }, db.maxSide, db.sizeMultiple);
  const dimsFor = (size: { width: number; height: number }): number[] =>
    input.layout === 'nchw' ? [1, 3, size.height, size.width] : [1, size.height, size.width, 3];
  const letterbox = manifest.input.resize === 'letterbox';
  const preFor = lastSizeMemo((w, h): Preprocessed => {
    const size = sizeFor(w, h);
    const geometry = letterbox
      ? letterboxGeometry(w, h, size.width, size.height)
      : stretchGeometry(w, h, size.width, size.height);
    return { dims: dimsFor(size), geometry };
  });

  return {
    kind: 'db-text',
    labels,
    threshold: db.boxThreshold,
    inputDims: (w, h) => preFor(w, h).dims,
    sourceScale:
      input.width !== null && input.height !== null
        ? { width: input.width, height: input.height, keepAspect: letterbox }
        : null,
    preprocess(image, out): Preprocessed {
      const pre = preFor(image.width, image.height);
      write(image, pre.geometry, out);
      return pre;
    },
    postprocess(outputs: ModelOutputs, pre: Preprocessed): Detection[] {
      const name = options.outputName ?? Object.keys(outputs)[0];
      const tensor = name === undefined ? undefined : outputs[name];
      if (!tensor) throw new Error('DB model returned no output');
      const dims = tensor.dims;
      const mapH = dims[dims.length - 2] as number;
      const mapW = dims[dims.length - 1] as number;
      if (tensor.data.length < mapW * mapH) throw new Error(`DB output [${dims.join(', ')}] is not a probability map`);
      // The map may differ in size from the input (a model with a stride); scale through it.
      const sx = pre.geometry.dstWidth / mapW;
      const sy = pre.geometry.dstHeight / mapH;
      const regions = extractTextRegions(tensor.data, mapW, mapH, regionOptions, scratch);
      const detections: Detection[] = [];
      for (const region of regions) {
        const box = mapBoxToSource(pre.geometry, {
          x1: region.x1 * sx,
          y1: region.y1 * sy,
          x2: region.x2 * sx,
          y2: region.y2 * sy,
        });
        if (box.x2 <= box.x1 || box.y2 <= box.y1) continue;
        detections.push({ ...box, score: region.score, classId: 0, label: labelFor(labels, 0) });
      }
      detections.sort((a, b) => b.score - a.score);
      return detections.slice(0, manifest.thresholds.maxDetections);
    },
  };
}
