import { describe, expect, it } from 'vitest';
import { createSeededRandom } from '../../seeded-random.ts';
import type { DbRegionOptions } from './db-text-adapter.ts';
import { dbInputSize, extractTextRegions } from './db-text-adapter.ts';

const options: DbRegionOptions = {
  binaryThreshold: 0.3,
  boxThreshold: 0.6,
  unclipRatio: 1.5,
  minSize: 3,
  maxCandidates: 1000,
};

function map(width: number, height: number, rects: { x1: number; y1: number; x2: number; y2: number; p: number }[]) {
  const prob = new Float32Array(width * height);
  for (const r of rects) {
    for (let y = r.y1; y <= r.y2; y++) for (let x = r.x1; x <= r.x2; x++) prob[y * width + x] = r.p;
  }
  return prob;
}

describe('extractTextRegions', () => {
  it('turns each thresholded region into a box grown by the DB unclip distance', () => {
    const prob = map(100, 60, [
      { x1: 10, y1: 10, x2: 50, y2: 20, p: 0.9 },
      { x1: 60, y1: 40, x2: 90, y2: 50, p: 0.8 },
    ]);
    const regions = extractTextRegions(prob, 100, 60, options);
    expect(regions).toHaveLength(2);
    // 40 x 10 through the pixel centres: distance = 400 * 1.5 / 100 = 6.
    const first = regions[0];
    expect(first?.score).toBeCloseTo(0.9, 6);
    expect([first?.x1, first?.y1, first?.x2, first?.y2]).toEqual([4, 4, 56, 26]);
    expect(regions[1]?.score).toBeCloseTo(0.8, 6);
  });

  it('keeps no region when unclip is 0 beyond its own extent', () => {
    const prob = map(40, 20, [{ x1: 5, y1: 5, x2: 30, y2: 12, p: 0.7 }]);
    expect(extractTextRegions(prob, 40, 20, { ...options, unclipRatio: 0 })).toEqual([
      { x1: 5, y1: 5, x2: 30, y2: 12, score: expect.closeTo(0.7, 6) },
    ]);
  });

  it('drops regions whose mean probability is below boxThreshold', () => {
    const prob = map(50, 20, [{ x1: 5, y1: 5, x2: 30, y2: 12, p: 0.5 }]);
    expect(extractTextRegions(prob, 50, 20, options)).toEqual([]);
  });

  it('drops regions thinner than minSize', () => {
    const prob = map(50, 20, [{ x1: 5, y1: 5, x2: 40, y2: 6, p: 0.95 }]);
    expect(extractTextRegions(prob, 50, 20, options)).toEqual([]);
  });

  it('joins diagonal neighbours into one region (8-connectivity)', () => {
    const prob = map(30, 30, [
      { x1: 2, y1: 2, x2: 10, y2: 10, p: 0.9 },
      { x1: 11, y1: 11, x2: 20, y2: 20, p: 0.9 },
    ]);
    const regions = extractTextRegions(prob, 30, 30, { ...options, unclipRatio: 0 });
    expect(regions).toHaveLength(1);
    expect(regions[0]).toMatchObject({ x1: 2, y1: 2, x2: 20, y2: 20 });
  });

  it('finds nothing in an empty map and stops at maxCandidates', () => {
    expect(extractTextRegions(new Float32Array(100), 10, 10, options)).toEqual([]);
    const prob = map(100, 20, [
      { x1: 0, y1: 0, x2: 10, y2: 10, p: 0.9 },
      { x1: 20, y1: 0, x2: 30, y2: 10, p: 0.9 },
      { x1: 40, y1: 0, x2: 50, y2: 10, p: 0.9 },
    ]);
    expect(extractTextRegions(prob, 100, 20, { ...options, maxCandidates: 2 })).toHaveLength(2);
  });
});

/** The regions by the definition: every pixel tested in raster order, breadth-first labelling. */
function referenceRegions(prob: Float32Array, width: number, height: number, o: DbRegionOptions) {
  const seen = new Uint8Array(width * height);
  const out: { x1: number; y1: number; x2: number; y2: number; score: number }[] = [];
  let candidates = 0;
  for (let start = 0; start < width * height; start++) {
    if (candidates >= o.maxCandidates) break;
    if (seen[start] || (prob[start] as number) <= o.binaryThreshold) continue;
    candidates++;
    const queue = [start];
    seen[start] = 1;
    let [minX, minY, maxX, maxY, sum] = [width, height, -1, -1, 0];
    for (let i = 0; i < queue.length; i++) {
      const p = queue[i] as number;
      const [x, y] = [p % width, Math.floor(p / width)];
      sum += prob[p] as number;
      [minX, maxX, minY, maxY] = [Math.min(minX, x), Math.max(maxX, x), Math.min(minY, y), Math.max(maxY, y)];
      for (let ny = y - 1; ny <= y + 1; ny++) {
        for (let nx = x - 1; nx <= x + 1; nx++) {
          const q = ny * width + nx;
          if (nx < 0 || ny < 0 || nx >= width || ny >= height || seen[q]) continue;
          if ((prob[q] as number) <= o.binaryThreshold) continue;
          seen[q] = 1;
          queue.push(q);
        }
      }
    }
    const [w, h] = [maxX - minX, maxY - minY];
    const score = sum / queue.length;
    if (Math.min(w, h) < o.minSize || score < o.boxThreshold) continue;
    const d = w + h > 0 ? (w * h * o.unclipRatio) / (2 * (w + h)) : 0;
    if (Math.min(w + 2 * d, h + 2 * d) < o.minSize + 2) continue;
    out.push({ x1: minX - d, y1: minY - d, x2: maxX + d, y2: maxY + d, score });
  }
  return out;
}

describe('extractTextRegions against the definition', () => {
  it.each([
    { maxCandidates: 1000, speckle: 0.01, width: 160, height: 96 },
    { maxCandidates: 7, speckle: 0.01, width: 160, height: 96 },
    // Sparse and of a size that is no multiple of eight: long background runs skipped eight at a
    // time, and text in the map's last pixels, after the last full group of eight.
    { maxCandidates: 1000, speckle: 0.0005, width: 157, height: 93 },
  ])('finds the same regions in random maps with noise (%o)', ({ maxCandidates, speckle, width, height }) => {
    const random = createSeededRandom(maxCandidates + width);
    const o = { ...options, maxCandidates };
    let total = 0;
    for (let round = 0; round < 20; round++) {
      const prob = new Float32Array(width * height);
      // Background below the threshold, single-pixel speckle above it, and a few text blocks.
      for (let i = 0; i < prob.length; i++) prob[i] = random() < speckle ? 0.35 + random() * 0.6 : random() * 0.3;
      for (let k = 0; k < 6; k++) {
        const [x, y] = [Math.floor(random() * (width - 30)), Math.floor(random() * (height - 12))];
        const [w, h, p] = [3 + Math.floor(random() * 27), 2 + Math.floor(random() * 10), 0.4 + random() * 0.6];
        for (let yy = y; yy < y + h; yy++) for (let xx = x; xx < x + w; xx++) prob[yy * width + xx] = p;
      }
      // A block in the bottom-right corner: its last pixel is the map's last.
      const corner = 4 + (round % 5);
      for (let yy = height - corner; yy < height; yy++) {
        for (let xx = width - corner; xx < width; xx++) prob[yy * width + xx] = 0.9;
      }
      const got = extractTextRegions(prob, width, height, o);
      const want = referenceRegions(prob, width, height, o);
      expect(got.map(({ score, ...box }) => box)).toEqual(want.map(({ score, ...box }) => box));
      for (const [i, r] of got.entries()) expect(r.score).toBeCloseTo(want[i]?.score ?? Number.NaN, 9);
      total += got.length;
    }
    // The cap of 7 is mostly spent on speckle, so fewer regions survive it.
    expect(total).toBeGreaterThan(maxCandidates === 7 ? 2 : 20);
  });
});

describe('extractTextRegions skipping background', () => {
  it('counts a lone pixel at every place in a group of eight as a candidate', () => {
    // Row 0: lone foreground pixels, each one full group of eight after the previous and then at
    // offset 0, 1, .. 7 of the next group (groups start after the previous pixel); below, a text
    // block. With maxCandidates equal to the lone pixels, the cap is spent before the block; a
    // pixel missed by the skip would leave room for the block.
    const [width, height] = [128, 12];
    const prob = new Float32Array(width * height).fill(0.1);
    const lone = [3];
    for (let k = 0; k < 8; k++) lone.push((lone.at(-1) as number) + 1 + 8 + k);
    for (const p of lone) prob[p] = 0.9;
    for (let y = 4; y < 10; y++) for (let x = 10; x < 40; x++) prob[y * width + x] = 0.9;
    const capped = { ...options, maxCandidates: lone.length };
    expect(referenceRegions(prob, width, height, capped)).toEqual([]);
    expect(extractTextRegions(prob, width, height, capped)).toEqual([]);
    expect(extractTextRegions(prob, width, height, { ...capped, maxCandidates: lone.length + 1 })).toHaveLength(1);
  });
});

describe('dbInputSize', () => {
  it('rounds both sides to multiples of 32 and limits the longest side', () => {
    expect(dbInputSize(800, 600, { width: null, height: null }, 960, 32)).toEqual({ width: 800, height: 608 });
    expect(dbInputSize(1920, 1080, { width: null, height: null }, 960, 32)).toEqual({ width: 960, height: 544 });
    expect(dbInputSize(10, 10, { width: null, height: null }, 960, 32)).toEqual({ width: 32, height: 32 });
    expect(dbInputSize(1920, 1080, { width: 320, height: 320 }, 960, 32)).toEqual({ width: 320, height: 320 });
  });
});
