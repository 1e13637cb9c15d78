import type { CameraHealth } from '@edgeloop/protocol';

/*
 * Camera-health detectors on a downscaled luma image of sampled frames:
 *   black        mean luma low and little variation (lens covered, camera dark)
 *   frozen       consecutive samples (near-)identical for `frozenSamples` samples (stuck stream);
 *                not reported while black
 *   blurred      variance of the Laplacian below `blurRelative` x the scene's own baseline for
 *                `blurSamples` samples in a row, or below `blurAbsolute` (featureless); not
 *                evaluated while black
 *   sceneChange  luma-histogram distance to an EMA baseline above `sceneChangeDistance` (camera
 *                moved or knocked); the histogram baseline jumps to the new scene, so it fires once
 * Measured on 320-wide thumbnails: vtest.avi sharpness 1230..1470, its consecutive frames differ
 * by >= 0.31 mean luma; testsrc after gblur sigma 3: ~20, sigma 6: ~7; vtest after gblur sigma 3:
 * ~62 (caught by the relative rule); a looped still encoded with x264: difference 0; histogram
 * distance within vtest <= 0.03, from vtest to the scenetext photo 0.28.
 * Thresholds were tuned on generated clips (lavfi black, frozen still, gblur) and OpenCV's
 * vtest.avi (a soft MPEG-4 street scene), which must stay quiet.
 */

export interface LumaImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * Luma (BT.601 weights) of an RGB24 frame, averaged over factor x factor blocks so the result is
 * at most about `targetWidth` wide. Writes into `scratch` when it is large enough.
 */
export function lumaThumbnail(
  rgb: Uint8Array,
  width: number,
  height: number,
  targetWidth = 320,
  scratch?: Uint8Array,
): LumaImage {
  const factor = Math.max(1, Math.floor(width / targetWidth));
  const tw = Math.floor(width / factor);
  const th = Math.floor(height / factor);
  const data = scratch && scratch.length >= tw * th ? scratch.subarray(0, tw * th) : new Uint8Array(tw * th);
  const area = factor * factor;
  const stride = width * 3;
  for (let ty = 0; ty < th; ty++) {
    for (let tx = 0; tx < tw; tx++) {
      let sum = 0;
      for (let dy = 0; dy < factor; dy++) {
        let o = (ty * factor + dy) * stride + tx * factor * 3;
        for (let dx = 0; dx < factor; dx++, o += 3) {
          sum += 77 * (rgb[o] as number) + 150 * (rgb[o + 1] as number) + 29 * (rgb[o + 2] as number);
        }
      }
      data[ty * tw + tx] = (sum / area) >> 8;
    }
  }
  return { data, width: tw, height: th };
}

export function lumaMeanAndStdDev(image: LumaImage): { mean: number; std: number } {
  const n = image.width * image.height;
  if (n === 0) return { mean: 0, std: 0 };
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < n; i++) {
    const v = image.data[i] as number;
    sum += v;
    sumSq += v * v;
  }
  const mean = sum / n;
  return { mean, std: Math.sqrt(Math.max(0, sumSq / n - mean * mean)) };
}

/** Variance of the 4-neighbour Laplacian over the interior pixels (higher is sharper). */
export function laplacianVariance(image: LumaImage): number {
  const { data, width, height } = image;
  if (width < 3 || height < 3) return 0;
  let sum = 0;
  let sumSq = 0;
  let n = 0;
  for (let y = 1; y < height - 1; y++) {
    const row = y * width;
    for (let x = 1; x < width - 1; x++) {
      const i = row + x;
      const lap =
        (data[i - 1] as number) +
        (data[i + 1] as number) +
        (data[i - width] as number) +
        (data[i + width] as number) -
        4 * (data[i] as number);
      sum += lap;
      sumSq += lap * lap;
      n++;
    }
  }
  const mean = sum / n;
  return Math.max(0, sumSq / n - mean * mean);
}

export const HISTOGRAM_BINS = 32;

/** Normalised luma histogram (sums to 1) into `out`. */
export function lumaHistogram(image: LumaImage, out: Float64Array = new Float64Array(HISTOGRAM_BINS)): Float64Array {
  out.fill(0);
  const n = image.width * image.height;
  const shift = 256 / out.length;
  for (let i = 0; i < n; i++) {
    const bin = Math.floor((image.data[i] as number) / shift);
    out[bin] = (out[bin] as number) + 1;
  }
  if (n > 0) for (let b = 0; b < out.length; b++) out[b] = (out[b] as number) / n;
  return out;
}

/** Total-variation distance between two normalised histograms: 0 same, 1 disjoint. */
export function histogramDistance(a: Float64Array, b: Float64Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d += Math.abs((a[i] as number) - (b[i] as number));
  return d / 2;
}

/** Mean absolute difference of two luma images of the same size; Infinity when sizes differ. */
export function meanAbsoluteDifference(a: LumaImage, b: LumaImage): number {
  if (a.width !== b.width || a.height !== b.height) return Number.POSITIVE_INFINITY;
  const n = a.width * a.height;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.abs((a.data[i] as number) - (b.data[i] as number));
  return n > 0 ? sum / n : 0;
}

/**
 * One pass over a luma image: mean, standard deviation, the normalised histogram (into `histogram`)
 * and the mean absolute difference to `previous` (Infinity when its size differs).
 */
export function measureLuma(
  image: LumaImage,
  previous: LumaImage,
  histogram: Float64Array,
): { mean: number; std: number; difference: number } {
  const n = image.width * image.height;
  const data = image.data;
  const prev = previous.data;
  const comparable = previous.width === image.width && previous.height === image.height;
  const bins = histogram.length;
  const shift = 256 / bins;
  histogram.fill(0);
  let sum = 0;
  let sumSq = 0;
  let diff = 0;
  for (let i = 0; i < n; i++) {
    const v = data[i] as number;
    sum += v;
    sumSq += v * v;
    const bin = (v / shift) | 0;
    histogram[bin] = (histogram[bin] as number) + 1;
    if (comparable) {
      const d = v - (prev[i] as number);
      diff += d < 0 ? -d : d;
    }
  }
  if (n === 0) return { mean: 0, std: 0, difference: Number.POSITIVE_INFINITY };
  for (let b = 0; b < bins; b++) histogram[b] = (histogram[b] as number) / n;
  const mean = sum / n;
  return {
    mean,
    std: Math.sqrt(Math.max(0, sumSq / n - mean * mean)),
    difference: comparable ? diff / n : Number.POSITIVE_INFINITY,
  };
}

export interface CameraHealthOptions {
  /** Black: mean luma below this ... */
  blackMaxMean: number;
  /** ... and standard deviation below this. */
  blackMaxStd: number;
  /** Two samples are "the same" when their mean absolute luma difference is below this. */
  frozenMaxDiff: number;
  /** Frozen after this many same samples in a row. */
  frozenSamples: number;
  /** Blurred when sharpness < blurRelative x baseline ... */
  blurRelative: number;
  /** ... for this many samples in a row. */
  blurSamples: number;
  /** Blurred whatever the baseline when sharpness is below this (featureless image). */
  blurAbsolute: number;
  /** EMA weight of a new sample in the sharpness and histogram baselines. */
  baselineAlpha: number;
  /** Scene change when the histogram distance to the baseline exceeds this. */
  sceneChangeDistance: number;
  /** Samples before blur and scene change are judged (the baselines settle). */
  warmupSamples: number;
}

export const DEFAULT_CAMERA_HEALTH_OPTIONS: CameraHealthOptions = {
  blackMaxMean: 24,
  blackMaxStd: 10,
  frozenMaxDiff: 0.05,
  frozenSamples: 6,
  blurRelative: 0.3,
  blurSamples: 3,
  blurAbsolute: 25,
  baselineAlpha: 0.05,
  sceneChangeDistance: 0.2,
  warmupSamples: 3,
};

export type CameraHealthSample = CameraHealth;

export interface CameraHealthMonitor {
  /** Judges one sampled frame (its luma thumbnail) against the ones before. */
  update(image: LumaImage): CameraHealthSample;
  reset(): void;
}

export function createCameraHealthMonitor(options: Partial<CameraHealthOptions> = {}): CameraHealthMonitor {
  const o: CameraHealthOptions = { ...DEFAULT_CAMERA_HEALTH_OPTIONS, ...options };
  let previous: LumaImage = { data: new Uint8Array(0), width: 0, height: 0 };
  let samples = 0;
  let sameRun = 0;
  let blurRun = 0;
  let sharpnessBaseline = 0;
  let histogramBaseline = new Float64Array(HISTOGRAM_BINS);
  let histogram = new Float64Array(HISTOGRAM_BINS);

  return {
    update(image) {
      const { mean, std, difference } = measureLuma(image, previous, histogram);
      const sharpness = laplacianVariance(image);
      const black = mean < o.blackMaxMean && std < o.blackMaxStd;

      const same = samples > 0 && difference < o.frozenMaxDiff;
      sameRun = same ? sameRun + 1 : 0;
      const frozen = !black && sameRun >= o.frozenSamples;

      let sceneChange = false;
      if (samples === 0) {
        histogramBaseline.set(histogram);
        sharpnessBaseline = sharpness;
      } else {
        sceneChange =
          samples >= o.warmupSamples && histogramDistance(histogram, histogramBaseline) > o.sceneChangeDistance;
        if (sceneChange) {
          // New scene: later samples are compared with it. The sharpness baseline stays: a jump in
          // the histogram together with a collapse of sharpness is a knocked or fogged camera.
          const swap = histogramBaseline;
          histogramBaseline = histogram;
          histogram = swap;
        } else {
          for (let b = 0; b < HISTOGRAM_BINS; b++) {
            histogramBaseline[b] =
              (histogramBaseline[b] as number) +
              o.baselineAlpha * ((histogram[b] as number) - (histogramBaseline[b] as number));
          }
        }
      }

      let blurred = false;
      if (!black) {
        const relativeLow = samples >= o.warmupSamples && sharpness < o.blurRelative * sharpnessBaseline;
        blurRun = relativeLow ? blurRun + 1 : 0;
        blurred = blurRun >= o.blurSamples || sharpness < o.blurAbsolute;
        if (samples > 0) {
          // A blurred scene drags its baseline down ten times slower, so a lasting defocus stays flagged for a while.
          const alpha = relativeLow ? o.baselineAlpha / 10 : o.baselineAlpha;
          sharpnessBaseline += alpha * (sharpness - sharpnessBaseline);
        }
      }

      if (previous.data.length < image.data.length)
        previous = { data: new Uint8Array(image.data.length), width: 0, height: 0 };
      previous.data.set(image.data.subarray(0, image.width * image.height));
      previous.width = image.width;
      previous.height = image.height;
      samples++;
      return {
        black,
        frozen,
        blurred,
        sceneChange,
        brightness: Math.min(255, Math.max(0, mean)),
        sharpness,
      };
    },
    reset() {
      samples = 0;
      sameRun = 0;
      blurRun = 0;
      sharpnessBaseline = 0;
      histogramBaseline = new Float64Array(HISTOGRAM_BINS);
    },
  };
}
