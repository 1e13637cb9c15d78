import type { ModelRef, ShadowMetrics } from '@edgeloop/protocol';
import type { Detection } from '../vision/adapters/adapter-types.ts';
import { createLatencyHistogram, type LatencyHistogram } from '../vision/latency-histogram.ts';

/*
 * Agreement of a shadow (candidate) model with the current one, frame by frame: the current
 * model's detections are the reference. A candidate box matches a current box of the same class
 * (label) with IoU >= the threshold; candidates are matched greedily, best score first, each to
 * the unmatched current box it overlaps most. Then, per class and overall:
 *
 *   precision = matched / candidate boxes   (null when the candidate found nothing)
 *   recall    = matched / current boxes     (null when the current model found nothing)
 *   support   = current boxes of the class
 */

export type BoxLike = Pick<Detection, 'x1' | 'y1' | 'x2' | 'y2' | 'score' | 'label'>;

export function iou(a: BoxLike, b: BoxLike): number {
  const iw = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  const ih = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  if (!(iw > 0) || !(ih > 0)) return 0;
  const inter = iw * ih;
  const union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
  return union > 0 ? inter / union : 0;
}

export type ClassCounts = { matched: number; candidate: number; current: number };

/** Matches one frame's detections; adds per-label counts into `into` (created when absent). */
export function matchDetections(
  current: readonly BoxLike[],
  candidate: readonly BoxLike[],
  iouThreshold = 0.5,
  into: Map<string, ClassCounts> = new Map(),
): Map<string, ClassCounts> {
  const counts = (label: string): ClassCounts => {
    let entry = into.get(label);
    if (!entry) {
      entry = { matched: 0, candidate: 0, current: 0 };
      into.set(label, entry);
    }
    return entry;
  };
  for (const box of current) counts(box.label).current++;
  const order = candidate.map((_, i) => i).sort((i, j) => (candidate[j]?.score ?? 0) - (candidate[i]?.score ?? 0));
  const used = new Uint8Array(current.length);
  for (const i of order) {
    const box = candidate[i] as BoxLike;
    const entry = counts(box.label);
    entry.candidate++;
    let best = -1;
    let bestIou = iouThreshold;
    for (let k = 0; k < current.length; k++) {
      const other = current[k] as BoxLike;
      if (used[k] || other.label !== box.label) continue;
      const overlap = iou(box, other);
      if (overlap >= bestIou) {
        bestIou = overlap;
        best = k;
      }
    }
    if (best >= 0) {
      used[best] = 1;
      entry.matched++;
    }
  }
  return into;
}

const ratio = (num: number, den: number): number | null => (den > 0 ? Math.round((num / den) * 10_000) / 10_000 : null);

/** Most classes listed in one ShadowMetrics (by support), so a message stays small. */
export const MAX_SHADOW_CLASSES = 100;

/** ShadowMetrics from accumulated counts. */
export function shadowMetricsOf(input: {
  readonly candidate: ModelRef;
  readonly counts: ReadonlyMap<string, ClassCounts>;
  readonly framesCompared: number;
  readonly framesSkipped: number;
  readonly latency: LatencyHistogram;
}): ShadowMetrics {
  let matched = 0;
  let candidate = 0;
  let current = 0;
  const perClass: ShadowMetrics['perClass'] = {};
  const entries = [...input.counts.entries()].sort(
    (a, b) => b[1].current - a[1].current || b[1].candidate - a[1].candidate,
  );
  for (const [, c] of entries) {
    matched += c.matched;
    candidate += c.candidate;
    current += c.current;
  }
  for (const [label, c] of entries.slice(0, MAX_SHADOW_CLASSES)) {
    perClass[label.slice(0, 64)] = {
      precision: ratio(c.matched, c.candidate),
      recall: ratio(c.matched, c.current),
      support: c.current,
    };
  }
  return {
    candidate: input.candidate,
    framesCompared: input.framesCompared,
    framesSkipped: input.framesSkipped,
    precision: ratio(matched, candidate),
    recall: ratio(matched, current),
    perClass,
    candidateLatencyMs: input.latency.summary(),
  };
}

/** Counts over one telemetry window; `take` returns its metrics and starts the next window. */
export class ShadowWindow {
  readonly #candidate: ModelRef;
  #counts = new Map<string, ClassCounts>();
  #compared = 0;
  #skipped = 0;
  readonly #latency = createLatencyHistogram();

  constructor(candidate: ModelRef) {
    this.#candidate = candidate;
  }
  compared(current: readonly BoxLike[], candidate: readonly BoxLike[], latencyMs: number, iouThreshold: number): void {
    this.#compared++;
    this.#latency.record(latencyMs);
    matchDetections(current, candidate, iouThreshold, this.#counts);
  }
  skipped(): void {
    this.#skipped++;
  }
  take(): ShadowMetrics {
    const metrics = shadowMetricsOf({
      candidate: this.#candidate,
      counts: this.#counts,
      framesCompared: this.#compared,
      framesSkipped: this.#skipped,
      latency: this.#latency,
    });
    this.#counts = new Map();
    this.#compared = 0;
    this.#skipped = 0;
    this.#latency.reset();
    return metrics;
  }
}
