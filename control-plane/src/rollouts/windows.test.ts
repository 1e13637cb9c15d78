import { describe, expect, it } from 'vitest';
import type { TelemetrySample } from '../db/repositories.ts';
import { buildDeviceWindows } from './windows.ts';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const C = 'c'.repeat(64);

function sample(deviceId: string, overrides: Partial<TelemetrySample> = {}): TelemetrySample {
  return {
    deviceId,
    receivedAt: 0,
    modelSha256: A,
    frames: 100,
    errors: 1,
    windowS: 10,
    latencyP95: 20,
    detectionsPer1000: { car: 1000, person: 500 },
    confidence: Array.from({ length: 20 }, (_, bin) => (bin === 15 ? 10 : 1)),
    shadow: null,
    ...overrides,
  };
}

describe('buildDeviceWindows', () => {
  it('sums a device model window: frames, errors, seconds, frame-weighted p95, detections and histogram', () => {
    const windows = buildDeviceWindows([
      sample('cam-1', { frames: 100, latencyP95: 10 }),
      sample('cam-1', { frames: 300, latencyP95: 30, detectionsPer1000: { car: 2000 } }),
    ]);
    expect(windows.get('cam-1')).toEqual([
      {
        deviceId: 'cam-1',
        modelSha256: A,
        frames: 400,
        errors: 2,
        seconds: 20,
        latencyP95: 25,
        // 1500/1000 x 100 + 2000/1000 x 300
        detections: 750,
        confidence: Array.from({ length: 20 }, (_, bin) => (bin === 15 ? 20 : 2)),
        shadow: null,
      },
    ]);
  });

  it('keeps one window per model a device ran, and skips samples without pipeline metrics', () => {
    const windows = buildDeviceWindows([
      sample('cam-1'),
      sample('cam-1', { modelSha256: B }),
      sample('cam-1', { modelSha256: null }),
      sample('cam-2', { frames: 0, latencyP95: null }),
    ]);
    expect(windows.get('cam-1')?.map((w) => w.modelSha256)).toEqual([A, B]);
    expect(windows.get('cam-2')?.[0]).toMatchObject({ frames: 0, latencyP95: null });
  });

  it('weights shadow agreement by frames compared and keeps the most compared candidate', () => {
    const shadow = (candidateSha256: string, compared: number, precision: number | null, recall: number) => ({
      candidateSha256,
      compared,
      precision,
      recall,
      candidateLatencyP95: 40,
    });
    const windows = buildDeviceWindows([
      sample('cam-1', { shadow: shadow(B, 100, 0.9, 0.5) }),
      sample('cam-1', { shadow: shadow(B, 300, null, 0.9) }),
      sample('cam-1', { shadow: shadow(C, 50, 0.1, 0.1) }),
      sample('cam-1', { shadow: shadow(C, 0, 0, 0) }),
    ]);
    const [window] = windows.get('cam-1') ?? [];
    expect(window?.shadow).toEqual({
      candidateSha256: B,
      compared: 400,
      precision: 0.9,
      recall: 0.8,
      candidateLatencyP95: 40,
    });
  });

  it('keeps only the devices asked for', () => {
    const windows = buildDeviceWindows([sample('cam-1'), sample('cam-2')], new Set(['cam-2']));
    expect([...windows.keys()]).toEqual(['cam-2']);
  });
});
