import {
  CONFIDENCE_BINS,
  type DriftBand,
  type DriftBands,
  type DriftNumbers,
  driftBandRank,
  type PipelineMetrics,
} from '@edgeloop/protocol';
import { psi } from '../psi.ts';

/*
 * Drift maths, pure: the sums one window (or a reference) accumulates from telemetry, how a closed
 * window is judged against its reference, window slicing, reference completion and the state
 * transition from one judged window to the next.
 *
 *   sums      add() folds one PipelineMetrics into a DriftSums in O(bins + classes): the confidence
 *             histogram counts, detections per class (detectionsPer1000 * framesProcessed / 1000),
 *             near-threshold detections (share * detections of the message) and scene-change messages.
 *   judge     confidence PSI over the histograms, class-mix PSI over the per-class detection counts
 *             (the union of labels, in a fixed order); band = the worse of the two against the bounds;
 *             a near-threshold share that rose by more than `nearThresholdDelta`, or a scene-change
 *             rate more than `sceneChangeDelta` above the reference's, lifts stable to moderate. A
 *             window with fewer than `minDetections` detections (or a reference with fewer) is not
 *             judged: too few counts make PSI noise. Nor is one whose PSI noise floor (psiNoiseFloor: about
 *             (bins - 1) / detections) reaches a quarter of the moderate bound.
 */

export type DriftSums = {
  /** Frames processed. */
  frames: number;
  /** Telemetry messages folded in. */
  messages: number;
  /** CONFIDENCE_BINS counts. */
  confidence: number[];
  /** Detections per class label. */
  classes: Record<string, number>;
  /** Detections in the confidence histogram. */
  detections: number;
  /** Detections near the threshold (nearThresholdShare * detections, summed). */
  nearThreshold: number;
  /** Detections of the messages that carried a near-threshold share (a dataset reference has none). */
  nearDetections: number;
  /** Messages that measured the camera, and those that reported a scene change. */
  cameraMessages: number;
  sceneChanges: number;
};

export function emptySums(): DriftSums {
  return {
    frames: 0,
    messages: 0,
    confidence: new Array<number>(CONFIDENCE_BINS).fill(0),
    classes: {},
    detections: 0,
    nearThreshold: 0,
    nearDetections: 0,
    cameraMessages: 0,
    sceneChanges: 0,
  };
}

/** Folds one telemetry window of pipeline metrics into `sums` (mutates it; returns it). */
export function addPipeline(sums: DriftSums, pipeline: PipelineMetrics): DriftSums {
  addPipelineTo(pipeline, sums, null);
  return sums;
}

/**
 * Folds one telemetry window into `a` and, when given, `b` in one pass (a device's message counts
 * for its device track and its site track).
 */
export function addPipelineTo(pipeline: PipelineMetrics, a: DriftSums, b: DriftSums | null): void {
  const frames = pipeline.framesProcessed;
  let detections = 0;
  const histogram = pipeline.confidenceHistogram;
  const ca = a.confidence;
  const cb = b?.confidence;
  for (let bin = 0; bin < CONFIDENCE_BINS; bin++) {
    const count = histogram[bin] ?? 0;
    ca[bin] = (ca[bin] ?? 0) + count;
    if (cb) cb[bin] = (cb[bin] ?? 0) + count;
    detections += count;
  }
  const near = pipeline.nearThresholdShare * detections;
  const camera = pipeline.camera;
  const scene = camera?.sceneChange === true ? 1 : 0;
  addCounts(a, frames, detections, near, camera ? 1 : 0, scene);
  if (b) addCounts(b, frames, detections, near, camera ? 1 : 0, scene);
  if (frames > 0) {
    const per1000 = pipeline.detectionsPer1000;
    for (const label in per1000) {
      const count = ((per1000[label] ?? 0) * frames) / 1000;
      a.classes[label] = (a.classes[label] ?? 0) + count;
      if (b) b.classes[label] = (b.classes[label] ?? 0) + count;
    }
  }
}

function addCounts(
  sums: DriftSums,
  frames: number,
  detections: number,
  near: number,
  cameraMessages: number,
  sceneChanges: number,
): void {
  sums.frames += frames;
  sums.messages += 1;
  sums.detections += detections;
  sums.nearThreshold += near;
  sums.nearDetections += detections;
  sums.cameraMessages += cameraMessages;
  sums.sceneChanges += sceneChanges;
}

/** Adds `other` into `sums` (mutates and returns `sums`). */
export function mergeSums(sums: DriftSums, other: DriftSums): DriftSums {
  sums.frames += other.frames;
  sums.messages += other.messages;
  for (let bin = 0; bin < CONFIDENCE_BINS; bin++) {
    sums.confidence[bin] = (sums.confidence[bin] ?? 0) + (other.confidence[bin] ?? 0);
  }
  for (const label in other.classes) sums.classes[label] = (sums.classes[label] ?? 0) + (other.classes[label] ?? 0);
  sums.detections += other.detections;
  sums.nearThreshold += other.nearThreshold;
  sums.nearDetections += other.nearDetections;
  sums.cameraMessages += other.cameraMessages;
  sums.sceneChanges += other.sceneChanges;
  return sums;
}

/** A DriftSums read back from JSON (the database): anything malformed is treated as empty. */
export function parseSums(value: unknown): DriftSums {
  const sums = emptySums();
  if (typeof value !== 'object' || value === null) return sums;
  const v = value as Record<string, unknown>;
  const n = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) && x >= 0 ? x : 0);
  sums.frames = n(v.frames);
  sums.messages = n(v.messages);
  if (Array.isArray(v.confidence))
    for (let bin = 0; bin < CONFIDENCE_BINS; bin++) sums.confidence[bin] = n(v.confidence[bin]);
  if (typeof v.classes === 'object' && v.classes !== null) {
    for (const [label, count] of Object.entries(v.classes as Record<string, unknown>)) sums.classes[label] = n(count);
  }
  sums.detections = n(v.detections);
  sums.nearThreshold = n(v.nearThreshold);
  sums.nearDetections = n(v.nearDetections);
  sums.cameraMessages = n(v.cameraMessages);
  sums.sceneChanges = n(v.sceneChanges);
  return sums;
}

export function nearThresholdShare(sums: DriftSums): number | null {
  return sums.nearDetections > 0 ? Math.min(1, sums.nearThreshold / sums.nearDetections) : null;
}

export function sceneChangeRate(sums: DriftSums): number | null {
  return sums.cameraMessages > 0 ? sums.sceneChanges / sums.cameraMessages : null;
}

/** PSI of the class mix: detections per class over the union of labels of both sides. */
export function classMixPsi(reference: DriftSums, current: DriftSums): number | null {
  const expected: number[] = [];
  const actual: number[] = [];
  for (const label in reference.classes) {
    expected.push(reference.classes[label] ?? 0);
    actual.push(current.classes[label] ?? 0);
  }
  for (const label in current.classes) {
    if (label in reference.classes) continue;
    expected.push(0);
    actual.push(current.classes[label] ?? 0);
  }
  return expected.length === 0 ? null : psi(expected, actual);
}

/**
 * The PSI that sampling noise alone gives two histograms drawn from one distribution: about
 * (bins - 1) * (1/n_reference + 1/n_current), over the bins the reference uses (under no change
 * the window draws from those; PSI is close to a symmetric chi-square statistic, whose mean is its
 * degrees of freedom). A window
 * is judged only when this floor is well under the moderate bound (NOISE_FLOOR_SHARE of it):
 * otherwise a tail of a few hundred detections, such as the last window of a model the devices are
 * leaving, reads as drift. Infinity when either side is empty.
 */
export function psiNoiseFloor(expected: readonly number[], actual: readonly number[]): number {
  let totalE = 0;
  let totalA = 0;
  let bins = 0;
  for (let bin = 0; bin < Math.max(expected.length, actual.length); bin++) {
    const e = expected[bin] ?? 0;
    const a = actual[bin] ?? 0;
    totalE += e;
    totalA += a;
    if (e > 0) bins++;
  }
  if (totalE <= 0 || totalA <= 0) return Number.POSITIVE_INFINITY;
  return Math.max(bins - 1, 1) * (1 / totalE + 1 / totalA);
}

/** The share of the moderate bound the noise floor may reach for a window to be judged. */
export const NOISE_FLOOR_SHARE = 0.25;

export type DriftJudgeConfig = {
  readonly bands: DriftBands;
  /** A rise of the near-threshold share beyond this (absolute) lifts stable to moderate. */
  readonly nearThresholdDelta: number;
  /** A scene-change rate (per message) more than this above the reference's lifts stable to moderate. */
  readonly sceneChangeDelta: number;
  /** Fewer detections than this in the window (or the reference): the window is not judged. */
  readonly minDetections: number;
};

export const DEFAULT_JUDGE_CONFIG: DriftJudgeConfig = Object.freeze({
  bands: Object.freeze({ moderate: 0.1, major: 0.25 }),
  nearThresholdDelta: 0.1,
  sceneChangeDelta: 0.2,
  minDetections: 100,
});

/** The band of one PSI: below `moderate` stable, below `major` moderate, else major; null: stable. */
export function bandOf(index: number | null, bands: DriftBands): DriftBand {
  if (index === null || index < bands.moderate) return 'stable';
  return index < bands.major ? 'moderate' : 'major';
}

export function worstBand(a: DriftBand, b: DriftBand): DriftBand {
  return driftBandRank(a) >= driftBandRank(b) ? a : b;
}

export type WindowJudgement =
  | { readonly judged: false; readonly reason: 'reference-too-small' | 'window-too-small' }
  | {
      readonly judged: true;
      readonly band: DriftBand;
      /** Which signals raised the band (empty when stable). */
      readonly signals: readonly ('confidence' | 'class-mix' | 'near-threshold' | 'scene-change')[];
      readonly numbers: DriftNumbers;
    };

/** Judges one closed window against a complete reference. */
export function judgeWindow(reference: DriftSums, current: DriftSums, config: DriftJudgeConfig): WindowJudgement {
  if (reference.detections < config.minDetections) return { judged: false, reason: 'reference-too-small' };
  if (current.detections < config.minDetections) return { judged: false, reason: 'window-too-small' };
  if (psiNoiseFloor(reference.confidence, current.confidence) > config.bands.moderate * NOISE_FLOOR_SHARE) {
    return { judged: false, reason: 'window-too-small' };
  }
  const confidencePsi = psi(reference.confidence, current.confidence);
  const mixPsi = classMixPsi(reference, current);
  const near = { reference: nearThresholdShare(reference), current: nearThresholdShare(current) };
  const scene = { reference: sceneChangeRate(reference), current: sceneChangeRate(current) };
  const signals: ('confidence' | 'class-mix' | 'near-threshold' | 'scene-change')[] = [];
  const confidenceBand = bandOf(confidencePsi, config.bands);
  const mixBand = bandOf(mixPsi, config.bands);
  let band = worstBand(confidenceBand, mixBand);
  if (confidenceBand !== 'stable') signals.push('confidence');
  if (mixBand !== 'stable') signals.push('class-mix');
  if (near.reference !== null && near.current !== null && near.current - near.reference > config.nearThresholdDelta) {
    signals.push('near-threshold');
    band = worstBand(band, 'moderate');
  }
  if (scene.current !== null && scene.current - (scene.reference ?? 0) > config.sceneChangeDelta) {
    signals.push('scene-change');
    band = worstBand(band, 'moderate');
  }
  return {
    judged: true,
    band,
    signals,
    numbers: {
      confidencePsi: confidencePsi === null ? null : round(confidencePsi),
      classMixPsi: mixPsi === null ? null : round(mixPsi),
      nearThresholdShare: { reference: roundOrNull(near.reference), current: roundOrNull(near.current) },
      sceneChangeRate: { reference: roundOrNull(scene.reference), current: roundOrNull(scene.current) },
    },
  };
}

function round(value: number): number {
  return Math.round(value * 1e6) / 1e6;
}

function roundOrNull(value: number | null): number | null {
  return value === null ? null : round(value);
}

/* ------------------------------------------ windows ------------------------------------------- */

/** The window a receive time falls in: consecutive slices of `windowMs` since the epoch. */
export function windowIndex(at: number, windowMs: number): number {
  return Math.floor(at / windowMs);
}

export function windowRange(index: number, windowMs: number): { index: number; from: number; to: number } {
  return { index, from: index * windowMs, to: (index + 1) * windowMs };
}

/** An auto reference: the first `referenceMs` after the model was first seen there. */
export function autoReference(firstSeen: number, referenceMs: number): { from: number; to: number } {
  return { from: firstSeen, to: firstSeen + referenceMs };
}

/** Whether telemetry received at `at` belongs in an auto reference still being filled. */
export function inReference(reference: { from: number; to: number }, at: number): boolean {
  return at >= reference.from && at < reference.to;
}

/* ------------------------------------------- state -------------------------------------------- */

/** What the state keeps between judged windows. */
export type DriftProgress = {
  readonly band: DriftBand;
  /** Consecutive judged windows at moderate or worse, and at major. */
  readonly moderateStreak: number;
  readonly majorStreak: number;
  /** Consecutive judged stable windows. */
  readonly stableStreak: number;
  /** When the band left stable; null while stable. */
  readonly since: number | null;
};

export const STABLE_PROGRESS: DriftProgress = Object.freeze({
  band: 'stable',
  moderateStreak: 0,
  majorStreak: 0,
  stableStreak: 0,
  since: null,
});

/**
 * The progress after one more judged window at `band`, closed at `at`. The stable streak stops
 * counting at `stableCap` (what adaptive sampling needs to know), so a track that stays stable
 * stops changing (and is not written again).
 */
export function advance(
  previous: DriftProgress,
  band: DriftBand,
  at: number,
  stableCap = Number.POSITIVE_INFINITY,
): DriftProgress {
  const rank = driftBandRank(band);
  return {
    band,
    moderateStreak: rank >= 1 ? previous.moderateStreak + 1 : 0,
    majorStreak: rank >= 2 ? previous.majorStreak + 1 : 0,
    stableStreak: rank === 0 ? Math.min(stableCap, previous.stableStreak + 1) : 0,
    since: rank === 0 ? null : (previous.since ?? at),
  };
}

/** Consecutive closed windows at the progress's band or worse (0 while stable). */
export function sustainedWindows(progress: DriftProgress): number {
  if (progress.band === 'major') return progress.majorStreak;
  if (progress.band === 'moderate') return progress.moderateStreak;
  return 0;
}
