import type { DeviceStatus, HealthState, Telemetry } from '@edgeloop/protocol';

/*
 * Fleet health, as pure functions. A device is
 *   offline   when its status is offline;
 *   unknown   when it never connected, or is online but has sent no telemetry yet;
 *   degraded  when online and any reason below holds;
 *   healthy   otherwise.
 * Reasons: high-temperature, disk-nearly-full, memory-pressure, telemetry-stale, and from the
 * vision pipeline (when reported) camera-black, camera-frozen, camera-blurred, inference-stalled.
 */

export const HEALTH_REASONS = [
  'high-temperature',
  'disk-nearly-full',
  'memory-pressure',
  'telemetry-stale',
  'camera-black',
  'camera-frozen',
  'camera-blurred',
  'inference-stalled',
] as const;
export type HealthReason = (typeof HEALTH_REASONS)[number];

export type HealthThresholds = {
  readonly highTemperatureC: number;
  readonly diskNearlyFullRatio: number;
  readonly memoryPressureRatio: number;
  /** Telemetry is stale after this many intervals plus the grace. */
  readonly staleIntervals: number;
  readonly heartbeatGraceS: number;
  readonly defaultTelemetryIntervalS: number;
  readonly inferenceStallS: number;
};

/**
 * The few numbers of a telemetry message that health depends on. The ingest writer keeps this
 * instead of the whole document, so the sweeper can judge thousands of devices every second.
 */
export type TelemetryDigest = {
  /** Hottest reading over CPU, GPU and every thermal zone, null when none. */
  readonly maxTemperatureC: number | null;
  readonly diskUsedRatio: number | null;
  readonly memoryUsedRatio: number | null;
  readonly camera: { readonly black: boolean; readonly frozen: boolean; readonly blurred: boolean } | null;
  /** True when the pipeline saw frames but inferred none, or its last inference is too old. */
  readonly inferenceStalled: boolean;
};

export type HealthInput = {
  readonly status: DeviceStatus;
  readonly telemetry: TelemetryDigest | null;
  /** When the control plane received the latest telemetry (its own clock). */
  readonly telemetryAt: number | null;
  /** The interval the device reported; the default applies when null. */
  readonly telemetryIntervalS: number | null;
};

export type HealthAssessment = { readonly health: HealthState; readonly reasons: readonly string[] };

function ratio(used: number, total: number): number | null {
  return total > 0 ? used / total : null;
}

/** Reduces a telemetry message to what health needs; pure. */
export function digestTelemetry(telemetry: Telemetry, thresholds: Pick<HealthThresholds, 'inferenceStallS'>) {
  const { system, pipeline } = telemetry;
  const temperatures = [
    system.temperatures.cpuC,
    system.temperatures.gpuC,
    ...Object.values(system.temperatures.zones ?? {}),
  ].filter((value): value is number => typeof value === 'number');
  let inferenceStalled = false;
  if (pipeline) {
    const framesButNoInference = pipeline.framesIn > 0 && pipeline.framesProcessed === 0;
    // Compared on the device's own clock (telemetry.ts), so clock skew does not matter.
    const lastInferenceAge =
      pipeline.lastInferenceAt === null ? Number.POSITIVE_INFINITY : telemetry.ts - pipeline.lastInferenceAt;
    const stale = pipeline.framesIn > 0 && lastInferenceAge > thresholds.inferenceStallS * 1000;
    inferenceStalled = framesButNoInference || stale;
  }
  const digest: TelemetryDigest = {
    maxTemperatureC: temperatures.length > 0 ? Math.max(...temperatures) : null,
    diskUsedRatio: ratio(system.disk.usedBytes, system.disk.totalBytes),
    memoryUsedRatio: ratio(system.memory.usedBytes, system.memory.totalBytes),
    camera: pipeline?.camera
      ? { black: pipeline.camera.black, frozen: pipeline.camera.frozen, blurred: pipeline.camera.blurred }
      : null,
    inferenceStalled,
  };
  return digest;
}

/** Milliseconds after which telemetry received at `telemetryAt` counts as stale. */
export function telemetryStaleAfterMs(telemetryIntervalS: number | null, thresholds: HealthThresholds): number {
  const interval = telemetryIntervalS ?? thresholds.defaultTelemetryIntervalS;
  return (thresholds.staleIntervals * interval + thresholds.heartbeatGraceS) * 1000;
}

/** The health of one device at `now`; pure. Reasons come in the order of HEALTH_REASONS. */
export function assessHealth(input: HealthInput, thresholds: HealthThresholds, now: number): HealthAssessment {
  if (input.status === 'offline') return { health: 'offline', reasons: [] };
  if (input.status === 'unknown' || input.telemetry === null || input.telemetryAt === null) {
    return { health: 'unknown', reasons: [] };
  }
  const t = input.telemetry;
  const reasons: HealthReason[] = [];
  if (t.maxTemperatureC !== null && t.maxTemperatureC >= thresholds.highTemperatureC) reasons.push('high-temperature');
  if (t.diskUsedRatio !== null && t.diskUsedRatio >= thresholds.diskNearlyFullRatio) reasons.push('disk-nearly-full');
  if (t.memoryUsedRatio !== null && t.memoryUsedRatio >= thresholds.memoryPressureRatio) {
    reasons.push('memory-pressure');
  }
  if (now - input.telemetryAt > telemetryStaleAfterMs(input.telemetryIntervalS, thresholds)) {
    reasons.push('telemetry-stale');
  }
  if (t.camera?.black) reasons.push('camera-black');
  if (t.camera?.frozen) reasons.push('camera-frozen');
  if (t.camera?.blurred) reasons.push('camera-blurred');
  if (t.inferenceStalled) reasons.push('inference-stalled');
  return { health: reasons.length > 0 ? 'degraded' : 'healthy', reasons };
}

/**
 * Milliseconds of silence after which an online device counts as gone:
 * max(1.5 x keepalive, 3 x telemetry interval) + grace.
 */
export function silenceLimitMs(
  keepaliveS: number | null,
  telemetryIntervalS: number | null,
  thresholds: HealthThresholds & { readonly defaultKeepaliveS: number },
): number {
  const keepalive = keepaliveS ?? thresholds.defaultKeepaliveS;
  const interval = telemetryIntervalS ?? thresholds.defaultTelemetryIntervalS;
  return (Math.max(1.5 * keepalive, 3 * interval) + thresholds.heartbeatGraceS) * 1000;
}

export function sameAssessment(a: HealthAssessment, b: HealthAssessment): boolean {
  return (
    a.health === b.health && a.reasons.length === b.reasons.length && a.reasons.every((r, i) => r === b.reasons[i])
  );
}
