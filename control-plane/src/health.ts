import type { DeviceStatus, FleetPipelineSummary, HealthState, Telemetry } from '@edgeloop/protocol';

/*
 * Fleet health, as pure functions. A device is
 *   offline   when its status is offline;
 *   unknown   when it never connected, or is online but has sent no telemetry yet;
 *   degraded  when online and any reason below holds;
 *   healthy   otherwise.
 * Reasons: high-temperature, disk-nearly-full, memory-pressure, telemetry-stale, and from the
 * vision pipeline (when reported) camera-black, camera-frozen, camera-blurred, inference-stalled.
 * Connection reasons come from the MQTT front (mqtt-front-issues.ts), not from the device:
 * auth-failing (its credential keeps failing) and client-id-flapping (two sessions fight over its
 * id). They show in every state, so an offline or never-seen device says why it is not online.
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
  'auth-failing',
  'client-id-flapping',
] as const;
export type HealthReason = (typeof HEALTH_REASONS)[number];
export type ConnectionHealthReason = Extract<HealthReason, 'auth-failing' | 'client-id-flapping'>;

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
  /** The latest pipeline window, for fleet-wide numbers; null without a pipeline. */
  readonly pipeline: PipelineDigest | null;
};

export type PipelineDigest = {
  readonly fps: number;
  readonly framesIn: number;
  readonly framesProcessed: number;
  readonly framesDropped: number;
  readonly inferenceErrors: number;
  readonly inferenceP95Ms: number | null;
  readonly detectionsPer1000: Readonly<Record<string, number>>;
  readonly provider: string;
  readonly modelId: string | null;
};

export type HealthInput = {
  readonly status: DeviceStatus;
  readonly telemetry: TelemetryDigest | null;
  /** When the control plane received the latest telemetry (its own clock). */
  readonly telemetryAt: number | null;
  /** The interval the device reported; the default applies when null. */
  readonly telemetryIntervalS: number | null;
  /** What the MQTT front knows about its connections (in HEALTH_REASONS order); none when absent. */
  readonly connection?: readonly ConnectionHealthReason[];
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
    pipeline: pipeline
      ? {
          fps: pipeline.fps,
          framesIn: pipeline.framesIn,
          framesProcessed: pipeline.framesProcessed,
          framesDropped: pipeline.framesDropped,
          inferenceErrors: pipeline.inferenceErrors,
          inferenceP95Ms: pipeline.latencyMs.inference?.p95 ?? null,
          detectionsPer1000: pipeline.detectionsPer1000,
          provider: pipeline.provider.active,
          modelId: pipeline.model?.id ?? null,
        }
      : null,
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
  const connection = input.connection ?? [];
  if (input.status === 'offline') return { health: 'offline', reasons: [...connection] };
  if (input.status === 'unknown' || input.telemetry === null || input.telemetryAt === null) {
    return { health: 'unknown', reasons: [...connection] };
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
  reasons.push(...connection);
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

/** Fleet-wide pipeline numbers over the latest windows of online devices. */
export function summarisePipelines(
  digests: Iterable<PipelineDigest & { readonly camera: TelemetryDigest['camera'] }>,
): FleetPipelineSummary {
  const summary: FleetPipelineSummary = {
    devicesReporting: 0,
    fps: 0,
    framesIn: 0,
    framesProcessed: 0,
    framesDropped: 0,
    inferenceErrors: 0,
    inferenceP95Ms: { median: null, max: null },
    detectionsPer1000: {},
    providers: {},
    models: {},
    cameraFaults: { black: 0, frozen: 0, blurred: 0 },
  };
  const p95s: number[] = [];
  const detections: Record<string, number> = {};
  for (const digest of digests) {
    summary.devicesReporting += 1;
    summary.fps += digest.fps;
    summary.framesIn += digest.framesIn;
    summary.framesProcessed += digest.framesProcessed;
    summary.framesDropped += digest.framesDropped;
    summary.inferenceErrors += digest.inferenceErrors;
    if (digest.inferenceP95Ms !== null) p95s.push(digest.inferenceP95Ms);
    for (const [label, per1000] of Object.entries(digest.detectionsPer1000)) {
      detections[label] = (detections[label] ?? 0) + (per1000 * digest.framesProcessed) / 1000;
    }
    summary.providers[digest.provider] = (summary.providers[digest.provider] ?? 0) + 1;
    const model = digest.modelId ?? 'none';
    summary.models[model] = (summary.models[model] ?? 0) + 1;
    if (digest.camera?.black) summary.cameraFaults.black += 1;
    if (digest.camera?.frozen) summary.cameraFaults.frozen += 1;
    if (digest.camera?.blurred) summary.cameraFaults.blurred += 1;
  }
  if (p95s.length > 0) {
    p95s.sort((a, b) => a - b);
    summary.inferenceP95Ms = { median: p95s[Math.floor(p95s.length / 2)] ?? null, max: p95s[p95s.length - 1] ?? null };
  }
  for (const [label, count] of Object.entries(detections)) {
    summary.detectionsPer1000[label] =
      summary.framesProcessed > 0 ? Math.round((count / summary.framesProcessed) * 1000 * 100) / 100 : 0;
  }
  summary.fps = Math.round(summary.fps * 100) / 100;
  return summary;
}
