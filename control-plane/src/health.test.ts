import type { Telemetry } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import {
  assessHealth,
  digestTelemetry,
  type HealthThresholds,
  silenceLimitMs,
  type TelemetryDigest,
} from './health.ts';

const thresholds: HealthThresholds & { defaultKeepaliveS: number } = {
  highTemperatureC: 85,
  diskNearlyFullRatio: 0.9,
  memoryPressureRatio: 0.92,
  staleIntervals: 3,
  heartbeatGraceS: 5,
  defaultTelemetryIntervalS: 10,
  defaultKeepaliveS: 60,
  inferenceStallS: 60,
};

const NOW = 1_700_000_000_000;

const fine: TelemetryDigest = {
  maxTemperatureC: 50,
  diskUsedRatio: 0.5,
  memoryUsedRatio: 0.4,
  camera: null,
  inferenceStalled: false,
  pipeline: null,
};

function telemetry(overrides: Partial<Telemetry> = {}): Telemetry {
  return {
    msgId: 'boot0001-1',
    bootId: 'boot0001',
    seq: 1,
    ts: NOW,
    intervalS: 10,
    system: {
      cpu: { loadPct: 10, cores: 4 },
      memory: { usedBytes: 2, totalBytes: 8 },
      disk: { usedBytes: 1, totalBytes: 10 },
      temperatures: { cpuC: 40, gpuC: 45, zones: { 'CPU-therm': 41 } },
      uptimeS: 10,
    },
    ...overrides,
  };
}

const pipeline = {
  windowS: 10,
  framesIn: 100,
  framesProcessed: 100,
  framesDropped: 0,
  inferenceErrors: 0,
  fps: 10,
  latencyMs: {},
  detectionsPer1000: {},
  confidenceHistogram: new Array(20).fill(0),
  nearThresholdShare: 0,
  lastInferenceAt: NOW - 100,
  provider: { requested: ['cpu'], active: 'cpu' },
  model: null,
  camera: { black: false, frozen: false, blurred: false, sceneChange: false, brightness: 120, sharpness: 300 },
};

describe('assessHealth', () => {
  it('is healthy when online with fresh, unremarkable telemetry', () => {
    const result = assessHealth(
      { status: 'online', telemetry: fine, telemetryAt: NOW - 1_000, telemetryIntervalS: 10 },
      thresholds,
      NOW,
    );
    expect(result).toEqual({ health: 'healthy', reasons: [] });
  });

  it('is offline when the status is offline, whatever the telemetry says', () => {
    const result = assessHealth(
      { status: 'offline', telemetry: { ...fine, maxTemperatureC: 99 }, telemetryAt: NOW, telemetryIntervalS: 10 },
      thresholds,
      NOW,
    );
    expect(result).toEqual({ health: 'offline', reasons: [] });
  });

  it('carries the connection reasons in every state, and they alone make an online device degraded', () => {
    const base = { telemetry: fine, telemetryAt: NOW - 1_000, telemetryIntervalS: 10 };
    expect(assessHealth({ ...base, status: 'offline', connection: ['auth-failing'] }, thresholds, NOW)).toEqual({
      health: 'offline',
      reasons: ['auth-failing'],
    });
    expect(
      assessHealth(
        {
          status: 'unknown',
          telemetry: null,
          telemetryAt: null,
          telemetryIntervalS: null,
          connection: ['auth-failing'],
        },
        thresholds,
        NOW,
      ),
    ).toEqual({ health: 'unknown', reasons: ['auth-failing'] });
    expect(
      assessHealth(
        { ...base, status: 'online', telemetry: { ...fine, maxTemperatureC: 99 }, connection: ['client-id-flapping'] },
        thresholds,
        NOW,
      ),
    ).toEqual({ health: 'degraded', reasons: ['high-temperature', 'client-id-flapping'] });
    expect(assessHealth({ ...base, status: 'online', connection: ['client-id-flapping'] }, thresholds, NOW)).toEqual({
      health: 'degraded',
      reasons: ['client-id-flapping'],
    });
  });

  it('is unknown before the first connection and before the first telemetry', () => {
    expect(
      assessHealth({ status: 'unknown', telemetry: null, telemetryAt: null, telemetryIntervalS: null }, thresholds, NOW)
        .health,
    ).toBe('unknown');
    expect(
      assessHealth({ status: 'online', telemetry: null, telemetryAt: null, telemetryIntervalS: null }, thresholds, NOW)
        .health,
    ).toBe('unknown');
  });

  it('reports every reason that holds, in a fixed order', () => {
    const result = assessHealth(
      {
        status: 'online',
        telemetry: {
          maxTemperatureC: 91,
          diskUsedRatio: 0.95,
          memoryUsedRatio: 0.97,
          camera: { black: true, frozen: true, blurred: true },
          inferenceStalled: true,
          pipeline: null,
        },
        telemetryAt: NOW - 60_000,
        telemetryIntervalS: 10,
      },
      thresholds,
      NOW,
    );
    expect(result).toEqual({
      health: 'degraded',
      reasons: [
        'high-temperature',
        'disk-nearly-full',
        'memory-pressure',
        'telemetry-stale',
        'camera-black',
        'camera-frozen',
        'camera-blurred',
        'inference-stalled',
      ],
    });
  });

  it('calls telemetry stale only after staleIntervals x interval + grace', () => {
    const input = { status: 'online' as const, telemetry: fine, telemetryIntervalS: 10 };
    expect(assessHealth({ ...input, telemetryAt: NOW - 35_000 }, thresholds, NOW).reasons).toEqual([]);
    expect(assessHealth({ ...input, telemetryAt: NOW - 35_001 }, thresholds, NOW).reasons).toEqual(['telemetry-stale']);
    // A slower device gets a longer allowance.
    expect(
      assessHealth({ ...input, telemetryIntervalS: 60, telemetryAt: NOW - 100_000 }, thresholds, NOW).reasons,
    ).toEqual([]);
  });
});

describe('digestTelemetry', () => {
  it('takes the hottest of CPU, GPU and every thermal zone, and usage ratios', () => {
    const digest = digestTelemetry(
      telemetry({
        system: { ...telemetry().system, temperatures: { cpuC: 40, gpuC: null, zones: { 'GPU-therm': 88 } } },
      }),
      thresholds,
    );
    expect(digest.maxTemperatureC).toBe(88);
    expect(digest.diskUsedRatio).toBeCloseTo(0.1);
    expect(digest.memoryUsedRatio).toBeCloseTo(0.25);
    expect(digest.camera).toBeNull();
    expect(digest.inferenceStalled).toBe(false);
  });

  it('treats zero totals and missing temperatures as unknown, not as alarming', () => {
    const base = telemetry();
    const digest = digestTelemetry(
      telemetry({
        system: {
          ...base.system,
          disk: { usedBytes: 0, totalBytes: 0 },
          temperatures: { cpuC: null, gpuC: null, zones: {} },
        },
      }),
      thresholds,
    );
    expect(digest.diskUsedRatio).toBeNull();
    expect(digest.maxTemperatureC).toBeNull();
  });

  it('reads camera flags and detects a stalled pipeline on the device clock', () => {
    const camera = { ...pipeline.camera, black: true, blurred: true };
    expect(digestTelemetry(telemetry({ pipeline: { ...pipeline, camera } }), thresholds).camera).toEqual({
      black: true,
      frozen: false,
      blurred: true,
    });
    const noInference = { ...pipeline, framesProcessed: 0 };
    expect(digestTelemetry(telemetry({ pipeline: noInference }), thresholds).inferenceStalled).toBe(true);
    const oldInference = { ...pipeline, lastInferenceAt: NOW - 61_000 };
    expect(digestTelemetry(telemetry({ pipeline: oldInference }), thresholds).inferenceStalled).toBe(true);
    const idleCamera = { ...pipeline, framesIn: 0, framesProcessed: 0, lastInferenceAt: null };
    expect(digestTelemetry(telemetry({ pipeline: idleCamera }), thresholds).inferenceStalled).toBe(false);
  });
});

describe('silenceLimitMs', () => {
  it('is max(1.5 x keepalive, 3 x telemetry interval) + grace', () => {
    expect(silenceLimitMs(30, 10, thresholds)).toBe((45 + 5) * 1000);
    expect(silenceLimitMs(10, 60, thresholds)).toBe((180 + 5) * 1000);
    expect(silenceLimitMs(null, null, thresholds)).toBe((90 + 5) * 1000);
  });
});
