import { describe, expect, it } from 'vitest';
import type { LumaImage } from './camera-health.ts';
import {
  createCameraHealthMonitor,
  histogramDistance,
  laplacianVariance,
  lumaHistogram,
  lumaMeanAndStdDev,
  lumaThumbnail,
} from './camera-health.ts';

function luma(width: number, height: number, pixel: (x: number, y: number) => number): LumaImage {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = pixel(x, y);
  return { data, width, height };
}

const checker = (shift = 0) => luma(64, 48, (x, y) => ((((x + shift) >> 2) + (y >> 2)) % 2 ? 200 : 40));
const smooth = (shift = 0) => luma(64, 48, (x) => 60 + ((x + shift) % 64));
const noise = (seed: number) => luma(64, 48, (x, y) => 80 + ((x * 7919 + y * 104729 + seed * 31) % 97));

describe('luma measurements', () => {
  it('averages RGB blocks into luma with BT.601 weights', () => {
    const rgb = new Uint8Array(4 * 2 * 3);
    for (let i = 0; i < 8; i++) rgb.set([255, 255, 255], i * 3);
    const t = lumaThumbnail(rgb, 4, 2, 2);
    expect(t).toMatchObject({ width: 2, height: 1 });
    expect(Array.from(t.data)).toEqual([255, 255]);
  });

  it('measures mean, spread, sharpness and histogram distance', () => {
    const flat = luma(10, 10, () => 50);
    expect(lumaMeanAndStdDev(flat)).toEqual({ mean: 50, std: 0 });
    expect(laplacianVariance(flat)).toBe(0);
    expect(laplacianVariance(checker())).toBeGreaterThan(1000);
    expect(histogramDistance(lumaHistogram(flat), lumaHistogram(flat))).toBe(0);
    expect(histogramDistance(lumaHistogram(flat), lumaHistogram(luma(10, 10, () => 250)))).toBe(1);
  });
});

describe('camera health monitor', () => {
  it('reports a black, uniform image as black and not frozen', () => {
    const monitor = createCameraHealthMonitor();
    let last = monitor.update(luma(64, 48, () => 3));
    for (let i = 0; i < 10; i++) last = monitor.update(luma(64, 48, () => 3));
    expect(last).toMatchObject({ black: true, frozen: false, blurred: false });
  });

  it('reports frozen only after frozenSamples identical samples in a row', () => {
    const monitor = createCameraHealthMonitor({ frozenSamples: 3 });
    const frames = [noise(1), noise(1), noise(1), noise(1), noise(2)];
    const frozen = frames.map((f) => monitor.update(f).frozen);
    expect(frozen).toEqual([false, false, false, true, false]);
  });

  it('reports blur when sharpness collapses against the scene baseline', () => {
    const monitor = createCameraHealthMonitor({ blurSamples: 2, blurAbsolute: 0 });
    const results = [];
    for (let i = 0; i < 5; i++) results.push(monitor.update(checker(i)).blurred);
    for (let i = 0; i < 3; i++) results.push(monitor.update(smooth(i)).blurred);
    expect(results).toEqual([false, false, false, false, false, false, true, true]);
  });

  it('reports a featureless image as blurred whatever the baseline', () => {
    const monitor = createCameraHealthMonitor();
    expect(monitor.update(luma(64, 48, () => 128)).blurred).toBe(true);
  });

  it('reports a scene change once, then judges against the new scene', () => {
    const monitor = createCameraHealthMonitor({ warmupSamples: 2 });
    const flags = [];
    for (let i = 0; i < 4; i++) flags.push(monitor.update(smooth(i)).sceneChange);
    for (let i = 0; i < 3; i++) flags.push(monitor.update(checker(i)).sceneChange);
    expect(flags).toEqual([false, false, false, false, true, false, false]);
  });
});
