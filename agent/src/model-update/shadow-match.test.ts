import { ShadowMetrics } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { createLatencyHistogram } from '../vision/latency-histogram.ts';
import { type BoxLike, iou, matchDetections, ShadowWindow, shadowMetricsOf } from './shadow-match.ts';

const box = (x1: number, y1: number, x2: number, y2: number, label: string, score = 0.9): BoxLike => ({
  x1,
  y1,
  x2,
  y2,
  label,
  score,
});

const ref = {
  id: 'cand@1.0.0',
  name: 'cand',
  version: '1.0.0',
  sha256: 'a'.repeat(64),
};

describe('iou', () => {
  it('is 1 for the same box, 0 for disjoint boxes and the overlap ratio otherwise', () => {
    expect(iou(box(0, 0, 10, 10, 'a'), box(0, 0, 10, 10, 'a'))).toBe(1);
    expect(iou(box(0, 0, 10, 10, 'a'), box(20, 20, 30, 30, 'a'))).toBe(0);
    expect(iou(box(0, 0, 10, 10, 'a'), box(5, 0, 15, 10, 'a'))).toBeCloseTo(50 / 150);
  });
});

describe('matchDetections', () => {
  it('matches every box of an identical candidate', () => {
    const current = [box(0, 0, 10, 10, 'person'), box(50, 50, 80, 90, 'car')];
    const counts = matchDetections(
      current,
      current.map((b) => ({ ...b })),
    );
    expect(counts.get('person')).toEqual({ matched: 1, candidate: 1, current: 1 });
    expect(counts.get('car')).toEqual({ matched: 1, candidate: 1, current: 1 });
  });

  it('does not match across classes or below the IoU threshold', () => {
    const current = [box(0, 0, 10, 10, 'person'), box(50, 50, 60, 60, 'car')];
    const candidate = [box(0, 0, 10, 10, 'dog'), box(55, 50, 65, 60, 'car')];
    const counts = matchDetections(current, candidate, 0.5);
    expect(counts.get('person')).toEqual({ matched: 0, candidate: 0, current: 1 });
    expect(counts.get('dog')).toEqual({ matched: 0, candidate: 1, current: 0 });
    // IoU 50/150 = 0.33 < 0.5
    expect(counts.get('car')).toEqual({ matched: 0, candidate: 1, current: 1 });
    expect(matchDetections(current, candidate, 0.3).get('car')?.matched).toBe(1);
  });

  it('matches greedily by candidate score, each current box once', () => {
    const current = [box(0, 0, 10, 10, 'person')];
    const weakExact = box(0, 0, 10, 10, 'person', 0.3);
    const strongShifted = box(1, 0, 11, 10, 'person', 0.9);
    const counts = matchDetections(current, [weakExact, strongShifted]);
    // The stronger candidate takes the only current box; the exact but weaker one stays unmatched.
    expect(counts.get('person')).toEqual({ matched: 1, candidate: 2, current: 1 });
  });

  it('adds into the counts it is given, frame after frame', () => {
    const counts = new Map();
    matchDetections([box(0, 0, 10, 10, 'a')], [box(0, 0, 10, 10, 'a')], 0.5, counts);
    matchDetections([box(0, 0, 10, 10, 'a'), box(20, 20, 30, 30, 'a')], [box(0, 0, 10, 10, 'a')], 0.5, counts);
    expect(counts.get('a')).toEqual({ matched: 2, candidate: 2, current: 3 });
  });
});

describe('shadow metrics', () => {
  it('gives precision and recall per class and overall, null where undefined', () => {
    const counts = new Map([
      ['person', { matched: 3, candidate: 3, current: 4 }],
      ['car', { matched: 0, candidate: 2, current: 0 }],
      ['dog', { matched: 0, candidate: 0, current: 1 }],
    ]);
    const latency = createLatencyHistogram();
    latency.record(4);
    const metrics = ShadowMetrics.parse(
      shadowMetricsOf({ candidate: ref, counts, framesCompared: 7, framesSkipped: 2, latency }),
    );
    expect(metrics).toMatchObject({
      framesCompared: 7,
      framesSkipped: 2,
      precision: 0.6,
      recall: 0.6,
      perClass: {
        person: { precision: 1, recall: 0.75, support: 4 },
        car: { precision: 0, recall: null, support: 0 },
        dog: { precision: null, recall: 0, support: 1 },
      },
    });
    expect(metrics.candidateLatencyMs.count).toBe(1);
  });

  it('starts a new window after take', () => {
    const window = new ShadowWindow(ref);
    window.compared([box(0, 0, 10, 10, 'a')], [], 3, 0.5);
    window.skipped();
    const first = window.take();
    expect(first).toMatchObject({ framesCompared: 1, framesSkipped: 1, precision: null, recall: 0 });
    expect(window.take()).toMatchObject({ framesCompared: 0, framesSkipped: 0, precision: null, recall: null });
  });
});
