import { CONFIDENCE_BINS, type PipelineMetrics } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { psi } from '../psi.ts';
import {
  addPipeline,
  advance,
  bandOf,
  classMixPsi,
  DEFAULT_JUDGE_CONFIG,
  emptySums,
  inReference,
  judgeWindow,
  mergeSums,
  NOISE_FLOOR_SHARE,
  parseSums,
  psiNoiseFloor,
  STABLE_PROGRESS,
  sustainedWindows,
  windowIndex,
  windowRange,
} from './maths.ts';

/** Pipeline metrics with `detections` confidences spread around `mean` (a narrow bell over the bins). */
function pipeline(options: {
  mean?: number;
  detections?: number;
  near?: number;
  classes?: Record<string, number>;
  sceneChange?: boolean;
  frames?: number;
}): PipelineMetrics {
  const mean = options.mean ?? 0.7;
  const detections = options.detections ?? 400;
  const histogram = new Array<number>(CONFIDENCE_BINS).fill(0);
  const centre = Math.min(CONFIDENCE_BINS - 1, Math.floor(mean * CONFIDENCE_BINS));
  const weights = [0.1, 0.2, 0.4, 0.2, 0.1];
  weights.forEach((weight, offset) => {
    const bin = Math.max(0, Math.min(CONFIDENCE_BINS - 1, centre + offset - 2));
    histogram[bin]! += Math.round(weight * detections);
  });
  const frames = options.frames ?? 1000;
  return {
    windowS: 10,
    framesIn: frames,
    framesProcessed: frames,
    framesDropped: 0,
    inferenceErrors: 0,
    fps: frames / 10,
    latencyMs: {},
    detectionsPer1000: options.classes ?? { person: 300, car: 100 },
    confidenceHistogram: histogram,
    nearThresholdShare: options.near ?? 0.1,
    lastInferenceAt: 1,
    provider: { requested: ['cpu'], active: 'cpu' },
    model: { id: 'det@1.0.0', name: 'det', version: '1.0.0', sha256: 'a'.repeat(64) },
    camera: {
      black: false,
      frozen: false,
      blurred: false,
      sceneChange: options.sceneChange ?? false,
      brightness: 100,
      sharpness: 400,
    },
  };
}

const sumsOf = (...metrics: PipelineMetrics[]) => {
  const sums = emptySums();
  for (const m of metrics) addPipeline(sums, m);
  return sums;
};

describe('drift sums', () => {
  it('adds confidence counts, detections per class weighted by frames, near-threshold detections and scene changes', () => {
    const sums = sumsOf(
      pipeline({ detections: 100, near: 0.2, frames: 1000, classes: { person: 50 } }),
      pipeline({ detections: 100, near: 0.4, frames: 500, classes: { person: 100, car: 20 }, sceneChange: true }),
    );
    expect(sums.detections).toBe(200);
    expect(sums.frames).toBe(1500);
    expect(sums.classes).toEqual({ person: 100, car: 10 });
    expect(sums.nearThreshold).toBeCloseTo(60);
    expect(sums.sceneChanges).toBe(1);
    expect(sums.cameraMessages).toBe(2);
  });

  it('merges two sums into the sum of their messages, and reads a stored one back (garbage as empty)', () => {
    const a = sumsOf(pipeline({ detections: 100 }));
    const b = sumsOf(pipeline({ detections: 300, sceneChange: true }));
    const both = sumsOf(pipeline({ detections: 100 }), pipeline({ detections: 300, sceneChange: true }));
    expect(mergeSums(a, b)).toEqual(both);
    expect(parseSums(JSON.parse(JSON.stringify(both)))).toEqual(both);
    expect(parseSums({ frames: -3, confidence: 'x', classes: null })).toEqual(emptySums());
  });
});

describe('drift bands', () => {
  it('reads PSI against the bounds: below moderate stable, up to major moderate, from major on major', () => {
    const bands = { moderate: 0.1, major: 0.25 };
    expect(bandOf(null, bands)).toBe('stable');
    expect(bandOf(0.099, bands)).toBe('stable');
    expect(bandOf(0.1, bands)).toBe('moderate');
    expect(bandOf(0.249, bands)).toBe('moderate');
    expect(bandOf(0.25, bands)).toBe('major');
    expect(bandOf(0.3, { moderate: 0.35, major: 0.5 })).toBe('stable');
  });

  it('judges an unchanged distribution stable and a confidence shift major, with the numbers', () => {
    const reference = sumsOf(pipeline({ mean: 0.7 }), pipeline({ mean: 0.7 }));
    const same = judgeWindow(reference, sumsOf(pipeline({ mean: 0.7 })), DEFAULT_JUDGE_CONFIG);
    expect(same).toMatchObject({ judged: true, band: 'stable', signals: [] });
    const shifted = judgeWindow(reference, sumsOf(pipeline({ mean: 0.45 })), DEFAULT_JUDGE_CONFIG);
    expect(shifted.judged && shifted.band).toBe('major');
    expect(shifted.judged && shifted.signals).toContain('confidence');
    expect(shifted.judged && shifted.numbers.confidencePsi).toBeGreaterThan(0.25);
  });

  it('judges a class-mix change on its own PSI', () => {
    const reference = sumsOf(pipeline({ classes: { person: 300, car: 100 } }));
    const current = sumsOf(pipeline({ classes: { person: 50, car: 350 } }));
    expect(classMixPsi(reference, current)).toBeGreaterThan(0.25);
    const judged = judgeWindow(reference, current, DEFAULT_JUDGE_CONFIG);
    expect(judged).toMatchObject({ judged: true, band: 'major', signals: ['class-mix'] });
  });

  it('lifts stable to moderate when the near-threshold share rises beyond the delta, and never to major', () => {
    const reference = sumsOf(pipeline({ near: 0.1 }));
    const rose = judgeWindow(reference, sumsOf(pipeline({ near: 0.35 })), DEFAULT_JUDGE_CONFIG);
    expect(rose).toMatchObject({ judged: true, band: 'moderate', signals: ['near-threshold'] });
    expect(rose.judged && rose.numbers.nearThresholdShare).toEqual({ reference: 0.1, current: 0.35 });
    const small = judgeWindow(reference, sumsOf(pipeline({ near: 0.15 })), DEFAULT_JUDGE_CONFIG);
    expect(small).toMatchObject({ judged: true, band: 'stable' });
  });

  it('lifts stable to moderate when scene changes become frequent', () => {
    const reference = sumsOf(pipeline({}), pipeline({}), pipeline({}), pipeline({}));
    const current = sumsOf(pipeline({ sceneChange: true }), pipeline({}));
    expect(judgeWindow(reference, current, DEFAULT_JUDGE_CONFIG)).toMatchObject({
      band: 'moderate',
      signals: ['scene-change'],
    });
  });

  it('does not judge a window or a reference with fewer detections than the minimum', () => {
    const big = sumsOf(pipeline({ detections: 400 }));
    const small = sumsOf(pipeline({ detections: 40, mean: 0.3 }));
    expect(judgeWindow(big, small, DEFAULT_JUDGE_CONFIG)).toEqual({ judged: false, reason: 'window-too-small' });
    expect(judgeWindow(small, big, DEFAULT_JUDGE_CONFIG)).toEqual({ judged: false, reason: 'reference-too-small' });
  });
});

describe('the PSI noise floor', () => {
  /** Counts of `n` draws from fixed proportions over 12 bins, by a seeded generator. */
  function draw(n: number, seed: number): number[] {
    const weights = [1, 2, 4, 7, 10, 12, 12, 10, 7, 4, 2, 1];
    const total = weights.reduce((sum, w) => sum + w, 0);
    const counts = new Array<number>(CONFIDENCE_BINS).fill(0);
    let state = seed;
    for (let i = 0; i < n; i++) {
      state = (state * 1103515245 + 12345) % 2147483648;
      let u = (state / 2147483648) * total;
      let bin = 0;
      while (u >= (weights[bin] ?? 0) && bin < weights.length - 1) u -= weights[bin++] ?? 0;
      counts[bin + 4]!++;
    }
    return counts;
  }

  it('is about the mean PSI of two samples from one distribution (bins - 1 over the counts)', () => {
    const reference = draw(20_000, 1);
    let sum = 0;
    for (let seed = 2; seed < 42; seed++) sum += psi(reference, draw(300, seed)) ?? 0;
    const mean = sum / 40;
    const floor = psiNoiseFloor(reference, draw(300, 99));
    // 11 used bins: 11 * (1/20000 + 1/300) = 0.037; the measured mean lies within a third of it.
    expect(floor).toBeCloseTo(11 * (1 / 20_000 + 1 / 300), 3);
    expect(mean).toBeGreaterThan(floor * 0.67);
    expect(mean).toBeLessThan(floor * 1.33);
  });

  it('leaves unjudged a window too small for its bins, the tail of a model devices are leaving', () => {
    const reference = sumsOf(pipeline({ detections: 20_000 }));
    const tail = sumsOf(pipeline({ detections: 150 }));
    const floor = psiNoiseFloor(reference.confidence, tail.confidence);
    expect(floor).toBeGreaterThan(DEFAULT_JUDGE_CONFIG.bands.moderate * NOISE_FLOOR_SHARE);
    expect(judgeWindow(reference, tail, DEFAULT_JUDGE_CONFIG)).toEqual({ judged: false, reason: 'window-too-small' });
    expect(judgeWindow(reference, sumsOf(pipeline({ detections: 2000 })), DEFAULT_JUDGE_CONFIG)).toMatchObject({
      judged: true,
      band: 'stable',
    });
  });
});

describe('drift windows and references', () => {
  it('slices receive time into consecutive windows of the same length', () => {
    const windowMs = 300_000;
    expect(windowIndex(0, windowMs)).toBe(0);
    expect(windowIndex(299_999, windowMs)).toBe(0);
    expect(windowIndex(300_000, windowMs)).toBe(1);
    expect(windowRange(7, windowMs)).toEqual({ index: 7, from: 2_100_000, to: 2_400_000 });
  });

  it('keeps telemetry in an auto reference from its first message until the reference length has passed', () => {
    const reference = { from: 1_000, to: 1_000 + 86_400_000 };
    expect(inReference(reference, 999)).toBe(false);
    expect(inReference(reference, 1_000)).toBe(true);
    expect(inReference(reference, 86_400_999)).toBe(true);
    expect(inReference(reference, 86_401_000)).toBe(false);
  });

  it('counts sustained windows at the band or worse and resets them on a stable window', () => {
    let progress = STABLE_PROGRESS;
    progress = advance(progress, 'moderate', 10);
    expect([progress.band, sustainedWindows(progress), progress.since]).toEqual(['moderate', 1, 10]);
    progress = advance(progress, 'major', 20);
    expect([progress.band, sustainedWindows(progress), progress.since]).toEqual(['major', 1, 10]);
    progress = advance(progress, 'moderate', 30);
    expect([progress.band, sustainedWindows(progress)]).toEqual(['moderate', 3]);
    progress = advance(progress, 'stable', 40);
    expect([progress.band, sustainedWindows(progress), progress.since, progress.stableStreak]).toEqual([
      'stable',
      0,
      null,
      1,
    ]);
  });
});
