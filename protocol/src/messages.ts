import { z } from 'zod';
import { JsonObject, JsonValue } from './json-value.ts';
import { ModelAssignment, ModelRef } from './models.ts';

/* ------------------------------------------------------------------------------------------------
 * Envelope: every device -> cloud message carries these.
 *   msgId   unique per device; the control plane stores a message at most once per (device, msgId)
 *   bootId  changes every time the agent process starts; (bootId, seq) orders a device's messages
 *   seq     per-boot sequence number, starting at 1 and increasing by one per message
 *   ts      device clock, milliseconds since the epoch (may be skewed: the control plane also
 *           records when it received the message)
 * ---------------------------------------------------------------------------------------------- */

const TOKEN_PATTERN = /^[A-Za-z0-9_-]+$/;

export const MsgId = z.string().min(8).max(80).regex(TOKEN_PATTERN, 'msgId may hold only A-Z a-z 0-9 _ -');
export const BootId = z.string().min(8).max(64).regex(TOKEN_PATTERN, 'bootId may hold only A-Z a-z 0-9 _ -');
export const Seq = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
/** Milliseconds since the Unix epoch. */
export const EpochMs = z.int().min(0).max(8.64e15);

export const Envelope = z.object({
  msgId: MsgId,
  bootId: BootId,
  seq: Seq,
  ts: EpochMs,
});
export type Envelope = z.infer<typeof Envelope>;

/** The msgId the agent gives a message: unique per device because bootIds are random. */
export function messageId(bootId: string, seq: number): string {
  return `${bootId}-${seq}`;
}

/* ---------------------------------------- status ---------------------------------------------- */

export const StatusState = z.enum(['online', 'offline']);
export type StatusState = z.infer<typeof StatusState>;

/**
 * Birth ("online", retained, published right after every connect) and death ("offline"): either
 * the last will the broker publishes when the connection is lost, or a clean shutdown message.
 */
export const Status = Envelope.extend({
  state: StatusState,
  reason: z.enum(['birth', 'shutdown', 'connection-lost']),
  /**
   * Connection number within the boot (1, 2, ...). The will of connection n and the birth of
   * connection n both carry n, so the control plane orders status by (bootId, session) and, within
   * one session, the will (offline) after the birth. The will lies outside the per-boot sequence
   * (seq 0), because the broker publishes it.
   */
  session: z.int().min(1).optional(),
  agentVersion: z.string().max(64).optional(),
  /** MQTT keepalive the agent uses, so the control plane can judge silence. */
  keepaliveS: z.int().min(1).max(3600).optional(),
  telemetryIntervalS: z.number().min(0.1).max(86_400).optional(),
});
export type Status = z.infer<typeof Status>;

/* --------------------------------------- telemetry -------------------------------------------- */

export const SystemMetrics = z.object({
  cpu: z.object({
    /** Average load over all cores, 0..100. */
    loadPct: z.number().min(0).max(100),
    cores: z.int().min(1).max(4096),
  }),
  memory: z.object({ usedBytes: z.number().min(0), totalBytes: z.number().min(0) }),
  disk: z.object({ usedBytes: z.number().min(0), totalBytes: z.number().min(0), path: z.string().max(256).optional() }),
  temperatures: z.object({
    cpuC: z.number().min(-100).max(250).nullable(),
    gpuC: z.number().min(-100).max(250).nullable(),
    /** Every thermal zone read, by its type name (Jetson: CPU-therm, GPU-therm, ...). */
    zones: z.record(z.string().max(64), z.number().min(-100).max(250)).default({}),
  }),
  /** Integrated or discrete GPU load, 0..100, null where none could be read. */
  gpu: z.object({ loadPct: z.number().min(0).max(100).nullable() }).optional(),
  uptimeS: z.number().min(0),
});
export type SystemMetrics = z.infer<typeof SystemMetrics>;

/** Pipeline stages whose latency is reported. */
export const PIPELINE_STAGES = ['queue', 'preprocess', 'inference', 'postprocess', 'total'] as const;
export const PipelineStage = z.enum(PIPELINE_STAGES);
export type PipelineStage = z.infer<typeof PipelineStage>;

export const LatencySummary = z.object({
  count: z.int().min(0),
  p50: z.number().min(0),
  p95: z.number().min(0),
  p99: z.number().min(0),
  max: z.number().min(0),
});
export type LatencySummary = z.infer<typeof LatencySummary>;

/**
 * Confidence histogram bins are fixed for every device and model so the control plane can compare
 * distributions (PSI) across devices: CONFIDENCE_BINS equal-width bins over [0, 1].
 */
export const CONFIDENCE_BINS = 20;

export const CameraHealth = z.object({
  /** Lens covered or image black. */
  black: z.boolean(),
  /** Consecutive frames identical (stuck stream). */
  frozen: z.boolean(),
  blurred: z.boolean(),
  /** The scene changed abruptly against its recent baseline (camera moved or knocked). */
  sceneChange: z.boolean(),
  /** Mean luma 0..255 over the window. */
  brightness: z.number().min(0).max(255),
  /** Variance of the Laplacian (higher is sharper). */
  sharpness: z.number().min(0),
});
export type CameraHealth = z.infer<typeof CameraHealth>;

export const ProviderInfo = z.object({
  /** Preference list from config, in order. */
  requested: z.array(z.string().max(32)).max(8),
  /** The execution provider the session actually runs on. */
  active: z.string().max(32),
  /** Why a preferred provider was not used, when one was skipped. */
  fallbackReason: z.string().max(1024).optional(),
});
export type ProviderInfo = z.infer<typeof ProviderInfo>;

/** Metrics of the vision pipeline over one window. */
export const PipelineMetrics = z.object({
  windowS: z.number().positive(),
  framesIn: z.int().min(0),
  framesProcessed: z.int().min(0),
  framesDropped: z.int().min(0),
  inferenceErrors: z.int().min(0),
  fps: z.number().min(0),
  latencyMs: z.partialRecord(PipelineStage, LatencySummary),
  /** Detections per 1000 processed frames, per class label. */
  detectionsPer1000: z.record(z.string().max(64), z.number().min(0)),
  /** CONFIDENCE_BINS counts of detection confidences over [0, 1]. */
  confidenceHistogram: z.array(z.int().min(0)).length(CONFIDENCE_BINS),
  /** Share of detections whose confidence lies within 0.1 above the threshold. */
  nearThresholdShare: z.number().min(0).max(1),
  /** Last successful inference (epoch ms): liveness that a connected socket cannot show. */
  lastInferenceAt: EpochMs.nullable(),
  provider: ProviderInfo,
  model: ModelRef.nullable(),
  camera: CameraHealth.nullable(),
});
export type PipelineMetrics = z.infer<typeof PipelineMetrics>;

/** Candidate-vs-current agreement from shadow inference over one window. */
export const ShadowMetrics = z.object({
  candidate: ModelRef,
  framesCompared: z.int().min(0),
  /** Frames skipped because the shadow compute budget was spent. */
  framesSkipped: z.int().min(0),
  /** IoU-matched precision and recall of candidate against current; null when undefined (0/0). */
  precision: z.number().min(0).max(1).nullable(),
  recall: z.number().min(0).max(1).nullable(),
  perClass: z.record(
    z.string().max(64),
    z.object({
      precision: z.number().min(0).max(1).nullable(),
      recall: z.number().min(0).max(1).nullable(),
      support: z.int().min(0),
    }),
  ),
  candidateLatencyMs: LatencySummary,
});
export type ShadowMetrics = z.infer<typeof ShadowMetrics>;

export const Telemetry = Envelope.extend({
  /** Seconds between telemetry messages when this one was sent. */
  intervalS: z.number().min(0.1).max(86_400),
  system: SystemMetrics,
  pipeline: PipelineMetrics.optional(),
  shadow: ShadowMetrics.optional(),
});
export type Telemetry = z.infer<typeof Telemetry>;

/* ---------------------------------------- events ---------------------------------------------- */

export const EventSeverity = z.enum(['debug', 'info', 'warning', 'error', 'critical']);
export type EventSeverity = z.infer<typeof EventSeverity>;

/**
 * Known event types (others are accepted if they follow the dotted kebab-case pattern):
 *   agent.started, agent.stopping, agent.config-reloaded, agent.fault,
 *   outbox.dropped, camera.fault, model.update, sample.ready
 */
export const EventType = z
  .string()
  .min(3)
  .max(64)
  .regex(/^[a-z0-9]+(?:[.-][a-z0-9]+)*$/, 'event type must be dotted kebab-case, e.g. model.update');

export const DeviceEvent = Envelope.extend({
  type: EventType,
  severity: EventSeverity,
  message: z.string().max(2048).optional(),
  /** Set on every event that belongs to a model rollout. */
  rolloutId: z.string().max(64).optional(),
  data: JsonObject.default({}),
});
export type DeviceEvent = z.infer<typeof DeviceEvent>;

/* -------------------------------------- reported state ---------------------------------------- */

export const Reported = Envelope.extend({
  agentVersion: z.string().max(64),
  /** The desired-state version last applied (0 before any). */
  desiredVersion: z.int().min(0),
  telemetryIntervalS: z.number().min(0.1).max(86_400),
  config: JsonObject.default({}),
  hardware: z
    .object({
      profile: z.string().max(64).optional(),
      arch: z.string().max(32).optional(),
      platform: z.string().max(32).optional(),
    })
    .default({}),
  /** Model state; filled in by the model manager. */
  model: z
    .object({
      active: ModelRef.nullable(),
      previous: ModelRef.nullable().optional(),
      shadow: ModelRef.nullable().optional(),
      /** Model-update state machine, when an update is under way or just ended. */
      update: z
        .object({
          rolloutId: z.string().max(64).nullable(),
          target: ModelRef,
          state: z.string().max(32),
          /** Stable reason code of a refused or reverted update (hash_mismatch, bad_signature, ...). */
          code: z.string().max(64).optional(),
          reason: z.string().max(1024).optional(),
        })
        .nullable()
        .optional(),
      highestReleaseCounter: z.int().min(0).optional(),
    })
    .optional(),
  providers: z.array(z.string().max(32)).max(16).optional(),
});
export type Reported = z.infer<typeof Reported>;

/* -------------------------------------- desired state ----------------------------------------- */

/**
 * Desired state, retained on the device's desired topic. `version` increases with every change;
 * an agent applies a version once and reports it back in `Reported.desiredVersion`.
 */
export const Desired = z.object({
  version: z.int().min(0),
  issuedAt: EpochMs,
  telemetryIntervalS: z.number().min(0.1).max(86_400).optional(),
  config: JsonObject.optional(),
  model: ModelAssignment.nullable().optional(),
});
export type Desired = z.infer<typeof Desired>;

/* ------------------------------------ commands and replies ------------------------------------ */

export const RequestId = z.string().min(1).max(64).regex(TOKEN_PATTERN, 'requestId may hold only A-Z a-z 0-9 _ -');
export const CommandName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9]+(?:-[a-z0-9]+)*$/, 'command name must be kebab-case');

export const Command = z.object({
  requestId: RequestId,
  name: CommandName,
  args: JsonObject.default({}),
  issuedAt: EpochMs.optional(),
  /** A command that arrives after this instant is answered with `expired` and not run. */
  expiresAt: EpochMs.optional(),
});
export type Command = z.infer<typeof Command>;

export const ReplyErrorCode = z.enum(['unknown_command', 'invalid_args', 'failed', 'expired', 'busy']);
export type ReplyErrorCode = z.infer<typeof ReplyErrorCode>;

export const Reply = z.discriminatedUnion('ok', [
  Envelope.extend({ requestId: RequestId, ok: z.literal(true), data: JsonValue.optional() }),
  Envelope.extend({
    requestId: RequestId,
    ok: z.literal(false),
    error: z.object({ code: ReplyErrorCode, message: z.string().max(2048) }),
  }),
]);
export type Reply = z.infer<typeof Reply>;

/** Arguments of the commands every agent answers. */
export const COMMAND_ARGS = {
  ping: z.object({}),
  'reload-config': z.object({}),
  'set-telemetry-interval': z.object({ seconds: z.number().min(0.1).max(86_400) }),
} as const;
export type KnownCommand = keyof typeof COMMAND_ARGS;
