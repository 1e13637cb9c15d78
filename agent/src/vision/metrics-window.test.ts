import { PipelineMetrics } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import type { Detection } from './adapters/adapter-types.ts';
import { createMetricsWindow } from './metrics-window.ts';

const provider = { requested: ['cuda', 'cpu'], active: 'cpu', fallbackReason: 'cuda: not installed' };
const model = { id: 'm@1.0.0', name: 'm', version: '1.0.0', sha256: 'a'.repeat(64) };
const timings = { queueMs: 1, preprocessMs: 2, inferenceMs: 20, postprocessMs: 1, totalMs: 24 };

function det(label: string, score: number): Detection {
  return { x1: 0, y1: 0, x2: 1, y2: 1, score, classId: 0, label };
}

describe('metrics window', () => {
  it('summarises one window as a valid protocol PipelineMetrics and starts a new one', () => {
    let now = 1_000_000;
    const window = createMetricsWindow({ clock: { now: () => now } });
    for (let i = 0; i < 12; i++) window.recordFrameIn();
    window.recordDropped(2);
    for (let i = 0; i < 9; i++) {
      window.recordProcessed(timings, i === 0 ? [det('person', 0.3), det('person', 0.95), det('car', 1)] : [], 0.25);
    }
    window.recordInferenceError();
    window.recordCameraHealth({
      black: false,
      frozen: true,
      blurred: false,
      sceneChange: false,
      brightness: 100,
      sharpness: 50,
    });
    window.recordCameraHealth({
      black: false,
      frozen: false,
      blurred: false,
      sceneChange: true,
      brightness: 120,
      sharpness: 70,
    });
    now += 2000;
    const m = window.take({ provider, model });
    expect(PipelineMetrics.parse(m)).toEqual(m);
    expect(m).toMatchObject({
      windowS: 2,
      framesIn: 12,
      framesDropped: 2,
      framesProcessed: 10,
      inferenceErrors: 1,
      fps: 4.5,
    });
    expect(m.lastInferenceAt).toBe(1_000_000);
    expect(m.detectionsPer1000).toEqual({ person: 222.222, car: 111.111 });
    // 0.3 -> bin 6, 0.95 -> bin 19, 1.0 -> bin 19.
    expect(m.confidenceHistogram[6]).toBe(1);
    expect(m.confidenceHistogram[19]).toBe(2);
    expect(m.confidenceHistogram.reduce((a, b) => a + b, 0)).toBe(3);
    expect(m.nearThresholdShare).toBeCloseTo(1 / 3, 4);
    expect(m.latencyMs.inference).toMatchObject({ count: 9, p50: 20, max: 20 });
    expect(m.camera).toEqual({
      black: false,
      frozen: true,
      blurred: false,
      sceneChange: true,
      brightness: 110,
      sharpness: 60,
    });
    expect(m.provider.fallbackReason).toBe('cuda: not installed');

    now += 1000;
    const next = window.take({ provider, model: null });
    expect(next).toMatchObject({
      windowS: 1,
      framesIn: 0,
      framesProcessed: 0,
      fps: 0,
      camera: null,
      detectionsPer1000: {},
    });
    expect(next.latencyMs).toEqual({});
    expect(next.lastInferenceAt).toBe(1_000_000);
  });
});
