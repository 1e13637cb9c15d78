/*
 * Candidate boxes as parallel typed arrays (no object per candidate), top-k selection and greedy
 * non-maximum suppression. Used by the YOLO adapter; pure apart from the scratch they are given.
 */

export interface BoxSet {
  count: number;
  x1: Float32Array;
  y1: Float32Array;
  x2: Float32Array;
  y2: Float32Array;
  score: Float32Array;
  classId: Int32Array;
}

export function createBoxSet(capacity = 256): BoxSet {
  return {
    count: 0,
    x1: new Float32Array(capacity),
    y1: new Float32Array(capacity),
    x2: new Float32Array(capacity),
    y2: new Float32Array(capacity),
    score: new Float32Array(capacity),
    classId: new Int32Array(capacity),
  };
}

function grow(set: BoxSet): void {
  const capacity = set.x1.length * 2;
  const copy = <T extends Float32Array | Int32Array>(a: T, make: (n: number) => T): T => {
    const next = make(capacity);
    next.set(a);
    return next;
  };
  set.x1 = copy(set.x1, (n) => new Float32Array(n));
  set.y1 = copy(set.y1, (n) => new Float32Array(n));
  set.x2 = copy(set.x2, (n) => new Float32Array(n));
  set.y2 = copy(set.y2, (n) => new Float32Array(n));
  set.score = copy(set.score, (n) => new Float32Array(n));
  set.classId = copy(set.classId, (n) => new Int32Array(n));
}

export function pushBox(
  set: BoxSet,
  x1: number,
  y1: number,
  x2: number,
  y2: number,
  score: number,
  classId: number,
): void {
  if (set.count === set.x1.length) grow(set);
  const i = set.count++;
  set.x1[i] = x1;
  set.y1[i] = y1;
  set.x2[i] = x2;
  set.y2[i] = y2;
  set.score[i] = score;
  set.classId[i] = classId;
}

/** Intersection over union of two boxes (x1, y1, x2, y2); 0 when either is empty. */
export function intersectionOverUnion(
  ax1: number,
  ay1: number,
  ax2: number,
  ay2: number,
  bx1: number,
  by1: number,
  bx2: number,
  by2: number,
): number {
  const iw = Math.min(ax2, bx2) - Math.max(ax1, bx1);
  const ih = Math.min(ay2, by2) - Math.max(ay1, by1);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  const union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Indices of the `k` highest-scoring boxes, best first. Sorting all candidates is n log n; the
 * caller keeps n small with the confidence threshold, and NMS afterwards sees at most k boxes.
 */
export function selectTopK(set: BoxSet, k: number): Uint32Array {
  const order = new Uint32Array(set.count);
  for (let i = 0; i < set.count; i++) order[i] = i;
  const score = set.score;
  order.sort((a, b) => (score[b] as number) - (score[a] as number) || a - b);
  return order.length > k ? order.subarray(0, k) : order;
}

/**
 * Greedy NMS over `order` (best first): keeps a box unless a kept box of the same class (any class
 * when `classAware` is false) overlaps it with IoU above `iouThreshold`. Returns kept indices, at
 * most `maxDetections`, best first.
 */
export function nonMaxSuppression(
  set: BoxSet,
  order: Uint32Array,
  iouThreshold: number,
  maxDetections: number,
  classAware = true,
): number[] {
  const kept: number[] = [];
  const n = order.length;
  const suppressed = new Uint8Array(n);
  for (let a = 0; a < n && kept.length < maxDetections; a++) {
    if (suppressed[a]) continue;
    const i = order[a] as number;
    kept.push(i);
    const ix1 = set.x1[i] as number;
    const iy1 = set.y1[i] as number;
    const ix2 = set.x2[i] as number;
    const iy2 = set.y2[i] as number;
    const ic = set.classId[i] as number;
    for (let b = a + 1; b < n; b++) {
      if (suppressed[b]) continue;
      const j = order[b] as number;
      if (classAware && set.classId[j] !== ic) continue;
      const overlap = intersectionOverUnion(
        ix1,
        iy1,
        ix2,
        iy2,
        set.x1[j] as number,
        set.y1[j] as number,
        set.x2[j] as number,
        set.y2[j] as number,
      );
      if (overlap > iouThreshold) suppressed[b] = 1;
    }
  }
  return kept;
}
