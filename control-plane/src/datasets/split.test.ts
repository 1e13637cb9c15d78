import { describe, expect, it } from 'vitest';
import { splitBucket, splitOf } from './split.ts';

const ids = Array.from({ length: 5000 }, (_, i) => `sample-${i}`);

describe('splitOf', () => {
  it('puts the same sample id in the same split every time', () => {
    const first = ids.map((id) => splitOf(id, { train: 80, val: 10, test: 10 }));
    const again = ids.map((id) => splitOf(id, { train: 80, val: 10, test: 10 }));
    expect(again).toEqual(first);
  });

  it('follows the ratios within a few percent over many ids', () => {
    const counts = { train: 0, val: 0, test: 0 };
    for (const id of ids) counts[splitOf(id, { train: 70, val: 20, test: 10 })]++;
    expect(counts.train / ids.length).toBeGreaterThan(0.67);
    expect(counts.train / ids.length).toBeLessThan(0.73);
    expect(counts.val / ids.length).toBeGreaterThan(0.17);
    expect(counts.val / ids.length).toBeLessThan(0.23);
    expect(counts.test / ids.length).toBeGreaterThan(0.08);
    expect(counts.test / ids.length).toBeLessThan(0.12);
  });

  it('keeps a sample in train when the train share grows (buckets are nested)', () => {
    for (const id of ids.slice(0, 500)) {
      if (splitOf(id, { train: 50, val: 25, test: 25 }) === 'train') {
        expect(splitOf(id, { train: 80, val: 10, test: 10 })).toBe('train');
      }
    }
  });

  it('sends everything to one split when it has 100 percent', () => {
    expect(new Set(ids.slice(0, 300).map((id) => splitOf(id, { train: 0, val: 0, test: 100 })))).toEqual(
      new Set(['test']),
    );
  });

  it('has buckets between 0 and 99', () => {
    const buckets = ids.map(splitBucket);
    expect(Math.min(...buckets)).toBe(0);
    expect(Math.max(...buckets)).toBe(99);
  });
});
