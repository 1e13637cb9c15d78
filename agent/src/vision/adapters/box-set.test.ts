import { describe, expect, it } from 'vitest';
import { createBoxSet, intersectionOverUnion, nonMaxSuppression, pushBox, selectTopK } from './box-set.ts';

describe('intersectionOverUnion', () => {
  it('is 1 for the same box, 0 for disjoint boxes and the overlap ratio otherwise', () => {
    expect(intersectionOverUnion(0, 0, 10, 10, 0, 0, 10, 10)).toBe(1);
    expect(intersectionOverUnion(0, 0, 10, 10, 20, 20, 30, 30)).toBe(0);
    // 5x10 overlap of two 10x10 boxes: 50 / 150.
    expect(intersectionOverUnion(0, 0, 10, 10, 5, 0, 15, 10)).toBeCloseTo(1 / 3, 10);
  });
});

describe('selectTopK', () => {
  it('keeps the k best scores, best first', () => {
    const set = createBoxSet(2);
    [0.3, 0.9, 0.1, 0.7, 0.5].forEach((score, i) => {
      pushBox(set, i, i, i + 1, i + 1, score, 0);
    });
    expect(set.count).toBe(5);
    expect(Array.from(selectTopK(set, 3))).toEqual([1, 3, 4]);
    expect(Array.from(selectTopK(set, 10))).toEqual([1, 3, 4, 0, 2]);
  });
});

describe('nonMaxSuppression', () => {
  function scene() {
    const set = createBoxSet();
    pushBox(set, 0, 0, 100, 100, 0.9, 0); // kept
    pushBox(set, 5, 5, 105, 105, 0.8, 0); // same class, IoU ~0.82: suppressed
    pushBox(set, 10, 10, 110, 110, 0.7, 1); // other class over the first: kept when class-aware
    pushBox(set, 300, 300, 400, 400, 0.6, 0); // far away: kept
    return set;
  }

  it('suppresses overlapping boxes of the same class and keeps overlapping boxes of another class', () => {
    const set = scene();
    expect(nonMaxSuppression(set, selectTopK(set, 100), 0.45, 100, true)).toEqual([0, 2, 3]);
  });

  it('suppresses across classes when not class-aware', () => {
    const set = scene();
    expect(nonMaxSuppression(set, selectTopK(set, 100), 0.45, 100, false)).toEqual([0, 3]);
  });

  it('stops at maxDetections', () => {
    const set = scene();
    expect(nonMaxSuppression(set, selectTopK(set, 100), 0.45, 2, true)).toEqual([0, 2]);
  });

  it('sees only the top-k candidates', () => {
    const set = scene();
    expect(nonMaxSuppression(set, selectTopK(set, 2), 0.45, 100, true)).toEqual([0]);
  });
});
