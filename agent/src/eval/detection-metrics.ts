/*
 * Detection metrics the COCO way (pycocotools' COCOeval, iouType "bbox", area "all", maxDets 100),
 * as plain functions over boxes in memory:
 *
 *   per image and class: detections sorted by score (stable), cut to maxDets; each one, in that
 *   order, takes the unmatched ground truth with the highest IoU at or above the threshold
 *   (a crowd box can be taken again; a detection matched to an ignored box is ignored);
 *   per class: every image's detections sorted by score again, cumulative TP/FP, precision made
 *   monotone from the right, sampled at 101 recall thresholds 0:0.01:1 (0 past the last recall
 *   reached) and averaged: AP. mAP@0.5 is the mean AP at IoU 0.5 over the classes that have
 *   ground truth; mAP@[0.5:0.95] the mean over those classes and the 10 IoU thresholds.
 *
 * Precision and recall per class are taken at IoU 0.5 over every detection given (the model's
 * adapter has already dropped those under its score threshold), so they describe the model as it
 * runs on a device, not a point of the curve.
 *
 * Checked against pycocotools' published figures in detection-metrics.test.ts.
 */

/** A box in pixels, COCO style: left, top, width, height. */
export type XywhBox = readonly [number, number, number, number];

export type GroundTruthBox = {
  readonly category: string;
  readonly bbox: XywhBox;
  /** A crowd region: never a false negative, may absorb several detections (COCO iscrowd). */
  readonly crowd?: boolean;
};

export type PredictedBox = {
  readonly category: string;
  readonly bbox: XywhBox;
  readonly score: number;
};

export type EvaluatedImage = {
  readonly id: string;
  readonly groundTruth: readonly GroundTruthBox[];
  readonly predictions: readonly PredictedBox[];
};

export type DetectionMetricsOptions = {
  /** IoU thresholds; default COCO's 0.5:0.05:0.95. */
  readonly iouThresholds?: readonly number[];
  /** Detections kept per image and class, best first (default 100). */
  readonly maxDetections?: number;
};

export type ClassDetectionMetrics = {
  readonly category: string;
  /** Ground-truth boxes (crowd ones left out). */
  readonly groundTruth: number;
  /** Detections counted (after maxDetections per image). */
  readonly detections: number;
  /** At IoU 0.5. */
  readonly truePositives: number;
  readonly falsePositives: number;
  /** TP / (TP + FP) at IoU 0.5; null without detections. */
  readonly precision: number | null;
  /** TP / ground truth at IoU 0.5; null without ground truth. */
  readonly recall: number | null;
  /** AP at IoU 0.5; null without ground truth (COCO's -1). */
  readonly ap50: number | null;
  readonly ap75: number | null;
  /** AP averaged over the IoU thresholds; null without ground truth. */
  readonly ap: number | null;
};

export type DetectionMetrics = {
  readonly images: number;
  /** Mean AP at IoU 0.5 over the classes with ground truth; null when none has any. */
  readonly map50: number | null;
  readonly map75: number | null;
  /** Mean AP over the classes with ground truth and every IoU threshold (COCO's AP). */
  readonly map: number | null;
  readonly classes: readonly ClassDetectionMetrics[];
};

/** numpy.linspace(start, stop, count), value for value (pycocotools builds its thresholds so). */
function linspace(start: number, stop: number, count: number): number[] {
  const step = (stop - start) / (count - 1);
  return Array.from({ length: count }, (_, i) => (i === count - 1 ? stop : i * step + start));
}

/** COCO's IoU thresholds 0.5, 0.55, ..., 0.95. */
export const COCO_IOU_THRESHOLDS: readonly number[] = Object.freeze(linspace(0.5, 0.95, 10));
/** COCO's 101 recall thresholds 0, 0.01, ..., 1. */
export const COCO_RECALL_THRESHOLDS: readonly number[] = Object.freeze(linspace(0, 1, 101));
/** numpy.spacing(1): what pycocotools adds to TP + FP before dividing. */
const EPS = 2.220446049250313e-16;

/** IoU of two xywh boxes; against a crowd box the union is the detection's own area (COCO). */
export function boxIou(detection: XywhBox, truth: XywhBox, crowd = false): number {
  const [dx, dy, dw, dh] = detection;
  const [gx, gy, gw, gh] = truth;
  const w = Math.min(dx + dw, gx + gw) - Math.max(dx, gx);
  if (w <= 0) return 0;
  const h = Math.min(dy + dh, gy + gh) - Math.max(dy, gy);
  if (h <= 0) return 0;
  const inter = w * h;
  const union = crowd ? dw * dh : dw * dh + gw * gh - inter;
  return union <= 0 ? 0 : inter / union;
}

/** Indices of `values` ordered by score, highest first, ties in their original order (mergesort). */
function byScoreDesc(scores: readonly number[]): number[] {
  return scores.map((_, i) => i).sort((a, b) => (scores[b] as number) - (scores[a] as number) || a - b);
}

type ImageMatch = {
  /** Per IoU threshold, per detection (score order): matched to a non-crowd box? */
  readonly matched: boolean[][];
  /** Per IoU threshold, per detection: ignored (matched to a crowd box)? */
  readonly ignored: boolean[][];
  readonly scores: number[];
  /** Non-crowd ground-truth boxes. */
  readonly groundTruth: number;
};

/** COCOeval.evaluateImg for one image and class. */
function matchImage(
  truths: readonly GroundTruthBox[],
  predictions: readonly PredictedBox[],
  thresholds: readonly number[],
  maxDetections: number,
): ImageMatch {
  // Non-crowd boxes first (a stable sort on the ignore flag), detections by score, cut.
  const gts = [...truths.filter((g) => !g.crowd), ...truths.filter((g) => g.crowd)];
  const dts = byScoreDesc(predictions.map((p) => p.score))
    .slice(0, maxDetections)
    .map((i) => predictions[i] as PredictedBox);
  const ious = dts.map((d) => gts.map((g) => boxIou(d.bbox, g.bbox, g.crowd === true)));
  const matched: boolean[][] = [];
  const ignored: boolean[][] = [];
  for (const t of thresholds) {
    const gtTaken = new Array<boolean>(gts.length).fill(false);
    const dtMatched = new Array<boolean>(dts.length).fill(false);
    const dtIgnored = new Array<boolean>(dts.length).fill(false);
    for (let d = 0; d < dts.length; d++) {
      let best = Math.min(t, 1 - 1e-10);
      let m = -1;
      for (let g = 0; g < gts.length; g++) {
        const crowd = gts[g]?.crowd === true;
        if (gtTaken[g] && !crowd) continue;
        // Matched to a real box already and only crowd boxes are left: stop.
        if (m > -1 && gts[m]?.crowd !== true && crowd) break;
        const iou = ious[d]?.[g] as number;
        if (iou < best) continue;
        best = iou;
        m = g;
      }
      if (m === -1) continue;
      gtTaken[m] = true;
      if (gts[m]?.crowd === true) dtIgnored[d] = true;
      else dtMatched[d] = true;
    }
    matched.push(dtMatched);
    ignored.push(dtIgnored);
  }
  return {
    matched,
    ignored,
    scores: dts.map((d) => d.score),
    groundTruth: gts.length - truths.filter((g) => g.crowd).length,
  };
}

/** COCOeval.accumulate for one class and IoU threshold: the 101-point interpolated AP. */
function averagePrecision(
  tpFlags: readonly boolean[],
  ignoredFlags: readonly boolean[],
  groundTruth: number,
  recallThresholds: readonly number[],
): number {
  const recall: number[] = [];
  const precision: number[] = [];
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < tpFlags.length; i++) {
    if (!ignoredFlags[i]) {
      if (tpFlags[i]) tp++;
      else fp++;
    }
    // pycocotools keeps ignored detections in the arrays (their cumulative counts repeat).
    recall.push(tp / groundTruth);
    precision.push(tp / (tp + fp + EPS));
  }
  for (let i = precision.length - 1; i > 0; i--) {
    if ((precision[i] as number) > (precision[i - 1] as number)) precision[i - 1] = precision[i] as number;
  }
  let sum = 0;
  let at = 0;
  for (const r of recallThresholds) {
    // numpy.searchsorted(recall, r, side='left'): the first index whose recall is >= r.
    while (at < recall.length && (recall[at] as number) < r) at++;
    if (at >= recall.length) break;
    sum += precision[at] as number;
  }
  return sum / recallThresholds.length;
}

const mean = (values: readonly number[]): number | null =>
  values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;

/**
 * mAP@0.5, mAP@0.75, mAP@[0.5:0.95] and per-class AP, precision and recall of `images`, in the
 * order the images are given (ties between equal scores of different images keep that order, as
 * COCOeval keeps its image id order). Classes: every category seen, in ground truth or predictions.
 */
export function evaluateDetections(
  images: readonly EvaluatedImage[],
  options: DetectionMetricsOptions = {},
): DetectionMetrics {
  const thresholds = options.iouThresholds ?? COCO_IOU_THRESHOLDS;
  const maxDetections = options.maxDetections ?? 100;
  const at50 = thresholds.findIndex((t) => Math.abs(t - 0.5) < 1e-9);
  const at75 = thresholds.findIndex((t) => Math.abs(t - 0.75) < 1e-9);
  const categories: string[] = [];
  const seen = new Set<string>();
  for (const image of images) {
    for (const box of [...image.groundTruth, ...image.predictions]) {
      if (seen.has(box.category)) continue;
      seen.add(box.category);
      categories.push(box.category);
    }
  }
  const classes: ClassDetectionMetrics[] = [];
  for (const category of categories) {
    const scores: number[] = [];
    const matched: boolean[][] = thresholds.map(() => []);
    const ignored: boolean[][] = thresholds.map(() => []);
    let groundTruth = 0;
    for (const image of images) {
      const truths = image.groundTruth.filter((g) => g.category === category);
      const predictions = image.predictions.filter((p) => p.category === category);
      if (truths.length === 0 && predictions.length === 0) continue;
      const result = matchImage(truths, predictions, thresholds, maxDetections);
      groundTruth += result.groundTruth;
      scores.push(...result.scores);
      for (let t = 0; t < thresholds.length; t++) {
        matched[t]?.push(...(result.matched[t] as boolean[]));
        ignored[t]?.push(...(result.ignored[t] as boolean[]));
      }
    }
    const order = byScoreDesc(scores);
    const aps = thresholds.map((_, t) =>
      groundTruth === 0
        ? null
        : averagePrecision(
            order.map((i) => matched[t]?.[i] === true),
            order.map((i) => ignored[t]?.[i] === true),
            groundTruth,
            COCO_RECALL_THRESHOLDS,
          ),
    );
    const flags50 = at50 >= 0 ? (matched[at50] as boolean[]) : [];
    const ignored50 = at50 >= 0 ? (ignored[at50] as boolean[]) : [];
    const truePositives = flags50.filter((m) => m).length;
    const falsePositives = flags50.filter((m, i) => !m && !ignored50[i]).length;
    const counted = truePositives + falsePositives;
    const defined = aps.filter((ap): ap is number => ap !== null);
    classes.push({
      category,
      groundTruth,
      detections: scores.length,
      truePositives,
      falsePositives,
      precision: counted === 0 ? null : truePositives / counted,
      recall: groundTruth === 0 ? null : truePositives / groundTruth,
      ap50: at50 >= 0 ? (aps[at50] ?? null) : null,
      ap75: at75 >= 0 ? (aps[at75] ?? null) : null,
      ap: mean(defined),
    });
  }
  const withTruth = classes.filter((c) => c.ap !== null);
  return {
    images: images.length,
    map50: mean(withTruth.flatMap((c) => (c.ap50 === null ? [] : [c.ap50]))),
    map75: mean(withTruth.flatMap((c) => (c.ap75 === null ? [] : [c.ap75]))),
    map: mean(withTruth.map((c) => c.ap as number)),
    classes,
  };
}

/** [x1, y1, x2, y2] corners to COCO's [x, y, w, h]. */
export function xyxyToXywh(x1: number, y1: number, x2: number, y2: number): XywhBox {
  return [x1, y1, x2 - x1, y2 - y1];
}
