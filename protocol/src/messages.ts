import { z } from 'zod';
import { JsonObject, JsonValue } from './json-value.ts';
import { ModelAssignment, ModelRef } from './models.ts';
import { SampleCaptureArgs, SampleTelemetry } from './samples.ts';

/* ------------------------------------------------------------------------------------------------
 * Envelope: every device -> cloud message carries these.
 *   msgId   unique per device; the control plane stores a message at most once per (device, msgId)
 *   bootId  changes every time the agent process starts; (bootId, seq) orders a device's messages
 *   seq     per-boot sequence number, starting at 1 and increasing by one per message
 *   ts      device clock, milliseconds since the epoch (may be skewed: the control plane also
 *           records when it received the message)
 * ---------------------------------------------------------------------------------------------- */

const TOKEN_PATTERN = /^[A-Za-z0-9_-]+$/;

export const MsgId = z
  .string()
  .min(8)
  .max(80)
  .regex(TOKEN_PATTERN, 'msgId may hold only A-Z a-z 0-9 _ -')
  .describe('Unique per device: the control plane stores a message at most once per (device, msgId)');
export const BootId = z
  .string()
  .min(8)
  .max(64)
  .regex(TOKEN_PATTERN, 'bootId may hold only A-Z a-z 0-9 _ -')
  .describe("Random per start of the agent process; (bootId, seq) orders a device's messages");
export const Seq = z
  .int()
  .min(0)
  .max(Number.MAX_SAFE_INTEGER)
  .describe('Per-boot sequence number: 1, 2, 3, ... (0 for the broker-published last will)');
/** Milliseconds since the Unix epoch. */
export const EpochMs = z.int().min(0).max(8.64e15).describe('Milliseconds since the Unix epoch');

export const Envelope = z
  .object({
    msgId: MsgId,
    bootId: BootId,
    seq: Seq,
    ts: EpochMs.describe('Device clock when sent (ms since the epoch; may be skewed)'),
  })
  .describe('Fields every device-to-cloud message carries');
export type Envelope = z.infer<typeof Envelope>;

/** The msgId the agent gives a message: unique per device because bootIds are random. */
export function messageId(bootId: string, seq: number): string {
  return `${bootId}-${seq}`;
}

/* ---------------------------------------- status ---------------------------------------------- */

export const StatusState = z.enum(['online', 'offline']).describe('Whether the device is connected');
export type StatusState = z.infer<typeof StatusState>;

/**
 * Birth ("online", retained, published right after every connect) and death ("offline"): either
 * the last will the broker publishes when the connection is lost, or a clean shutdown message.
 */
export const Status = Envelope.extend({
  state: StatusState,
  reason: z
    .enum(['birth', 'shutdown', 'connection-lost'])
    .describe('birth: after a connect; shutdown: a clean stop; connection-lost: the last will'),
  /**
   * Connection number within the boot (1, 2, ...). The will of connection n and the birth of
   * connection n both carry n, so the control plane orders status by (bootId, session) and, within
   * one session, the will (offline) after the birth. The will lies outside the per-boot sequence
   * (seq 0), because the broker publishes it.
   */
  session: z
    .int()
    .min(1)
    .optional()
    .describe('Connection number within the boot; a will and the birth of one connection carry the same number'),
  agentVersion: z.string().max(64).optional().describe('Version of the agent software'),
  /** MQTT keepalive the agent uses, so the control plane can judge silence. */
  keepaliveS: z.int().min(1).max(3600).optional().describe('MQTT keepalive the agent uses, in seconds'),
  telemetryIntervalS: z.number().min(0.1).max(86_400).optional().describe('Seconds between telemetry messages'),
}).describe('Birth (online, retained) and death (offline: last will or clean shutdown) of a device connection');
export type Status = z.infer<typeof Status>;

/* --------------------------------------- telemetry -------------------------------------------- */

export const SystemMetrics = z
  .object({
    cpu: z
      .object({
        /** Average load over all cores, 0..100. */
        loadPct: z.number().min(0).max(100).describe('Average load over all cores, percent'),
        cores: z.int().min(1).max(4096).describe('Logical cores'),
      })
      .describe('CPU load'),
    memory: z
      .object({
        usedBytes: z.number().min(0).describe('Memory in use, bytes'),
        totalBytes: z.number().min(0).describe('Installed memory, bytes'),
      })
      .describe('Memory use'),
    disk: z
      .object({
        usedBytes: z.number().min(0).describe('Bytes used on the data disk'),
        totalBytes: z.number().min(0).describe('Size of the data disk, bytes'),
        path: z.string().max(256).optional().describe('Mount point measured'),
      })
      .describe('Disk use of the agent data directory'),
    temperatures: z
      .object({
        cpuC: z.number().min(-100).max(250).nullable().describe('CPU temperature, degrees Celsius; null if unknown'),
        gpuC: z.number().min(-100).max(250).nullable().describe('GPU temperature, degrees Celsius; null if unknown'),
        /** Every thermal zone read, by its type name (Jetson: CPU-therm, GPU-therm, ...). */
        zones: z
          .record(z.string().max(64), z.number().min(-100).max(250))
          .default({})
          .describe('Every thermal zone read, degrees Celsius, by its type name (Jetson: CPU-therm, ...)'),
      })
      .describe('Temperatures'),
    /** Integrated or discrete GPU load, 0..100, null where none could be read. */
    gpu: z
      .object({ loadPct: z.number().min(0).max(100).nullable().describe('GPU load, percent; null if unreadable') })
      .optional()
      .describe('Integrated or discrete GPU load'),
    uptimeS: z.number().min(0).describe('Seconds since the device booted'),
  })
  .describe('Host metrics of the device');
export type SystemMetrics = z.infer<typeof SystemMetrics>;

/** Pipeline stages whose latency is reported. */
export const PIPELINE_STAGES = ['queue', 'preprocess', 'inference', 'postprocess', 'total'] as const;
export const PipelineStage = z
  .enum(PIPELINE_STAGES)
  .describe('A stage of the vision pipeline whose latency is reported');
export type PipelineStage = z.infer<typeof PipelineStage>;

export const LatencySummary = z
  .object({
    count: z.int().min(0).describe('Observations in the window'),
    p50: z.number().min(0).describe('Median, milliseconds'),
    p95: z.number().min(0).describe('95th percentile, milliseconds'),
    p99: z.number().min(0).describe('99th percentile, milliseconds'),
    max: z.number().min(0).describe('Maximum, milliseconds'),
  })
  .describe('Latency quantiles over one window, in milliseconds');
export type LatencySummary = z.infer<typeof LatencySummary>;

/**
 * Confidence histogram bins are fixed for every device and model so the control plane can compare
 * distributions (PSI) across devices: CONFIDENCE_BINS equal-width bins over [0, 1].
 */
export const CONFIDENCE_BINS = 20;

export const CameraHealth = z
  .object({
    /** Lens covered or image black. */
    black: z.boolean().describe('Lens covered or image black'),
    /** Consecutive frames identical (stuck stream). */
    frozen: z.boolean().describe('Consecutive frames identical (stuck stream)'),
    blurred: z.boolean().describe('Image out of focus (sharpness below its threshold)'),
    /** The scene changed abruptly against its recent baseline (camera moved or knocked). */
    sceneChange: z.boolean().describe('The scene changed abruptly against its baseline (camera moved or knocked)'),
    /** Mean luma 0..255 over the window. */
    brightness: z.number().min(0).max(255).describe('Mean luma 0..255 over the window'),
    /** Variance of the Laplacian (higher is sharper). */
    sharpness: z.number().min(0).describe('Variance of the Laplacian (higher is sharper)'),
  })
  .describe('Camera faults seen in the window');
export type CameraHealth = z.infer<typeof CameraHealth>;

export const ProviderInfo = z
  .object({
    /** Preference list from config, in order. */
    requested: z.array(z.string().max(32)).max(8).describe('Execution providers from config, in preference order'),
    /** The execution provider the session actually runs on. */
    active: z.string().max(32).describe('The execution provider the session runs on (tensorrt, cuda, cpu, ...)'),
    /** Why a preferred provider was not used, when one was skipped. */
    fallbackReason: z.string().max(1024).optional().describe('Why a preferred provider was skipped'),
  })
  .describe('ONNX Runtime execution provider in use');
export type ProviderInfo = z.infer<typeof ProviderInfo>;

/** Metrics of the vision pipeline over one window. */
export const PipelineMetrics = z
  .object({
    windowS: z.number().positive().describe('Length of the window, seconds'),
    framesIn: z.int().min(0).describe('Frames the source delivered in the window'),
    framesProcessed: z.int().min(0).describe('Frames that went through inference'),
    framesDropped: z.int().min(0).describe('Frames dropped by the bounded queue (oldest first)'),
    inferenceErrors: z.int().min(0).describe('Failed inference runs'),
    fps: z.number().min(0).describe('Processed frames per second'),
    latencyMs: z.partialRecord(PipelineStage, LatencySummary).describe('Latency per pipeline stage, milliseconds'),
    /** Detections per 1000 processed frames, per class label. */
    detectionsPer1000: z
      .record(z.string().max(64), z.number().min(0))
      .describe('Detections per 1000 processed frames, per class label'),
    /** CONFIDENCE_BINS counts of detection confidences over [0, 1]. */
    confidenceHistogram: z
      .array(z.int().min(0))
      .length(CONFIDENCE_BINS)
      .describe(`Counts of detection confidences in ${CONFIDENCE_BINS} equal bins over [0, 1]`),
    /** Share of detections whose confidence lies within 0.1 above the threshold. */
    nearThresholdShare: z
      .number()
      .min(0)
      .max(1)
      .describe('Share of detections whose confidence lies within 0.1 above the threshold'),
    /** Last successful inference (epoch ms): liveness that a connected socket cannot show. */
    lastInferenceAt: EpochMs.nullable().describe('Last successful inference (ms since the epoch); null before any'),
    provider: ProviderInfo,
    model: ModelRef.nullable().describe('The model the pipeline runs; null without one'),
    camera: CameraHealth.nullable().describe('Camera health; null when not measured'),
  })
  .describe('Metrics of the vision pipeline over one window');
export type PipelineMetrics = z.infer<typeof PipelineMetrics>;

/** Candidate-vs-current agreement from shadow inference over one window. */
export const ShadowMetrics = z
  .object({
    candidate: ModelRef.describe('The candidate model run in shadow'),
    framesCompared: z.int().min(0).describe('Frames run through both models (a sampled share)'),
    /** Frames skipped because the shadow compute budget was spent. */
    framesSkipped: z.int().min(0).describe('Frames skipped because the shadow compute budget was spent'),
    /** IoU-matched precision and recall of candidate against current; null when undefined (0/0). */
    precision: z
      .number()
      .min(0)
      .max(1)
      .nullable()
      .describe('Candidate detections matched (IoU) by the current model; null when 0/0'),
    recall: z
      .number()
      .min(0)
      .max(1)
      .nullable()
      .describe('Current-model detections matched by the candidate; null when 0/0'),
    perClass: z
      .record(
        z.string().max(64),
        z.object({
          precision: z.number().min(0).max(1).nullable().describe('Precision for the class; null when 0/0'),
          recall: z.number().min(0).max(1).nullable().describe('Recall for the class; null when 0/0'),
          support: z.int().min(0).describe('Current-model detections of the class'),
        }),
      )
      .describe('Agreement per class label'),
    candidateLatencyMs: LatencySummary.describe('Inference latency of the candidate, milliseconds'),
  })
  .describe('Candidate-vs-current agreement from shadow inference over one window');
export type ShadowMetrics = z.infer<typeof ShadowMetrics>;

/** The device's outbox when the telemetry was built: what waits for the link. */
export const OutboxMetrics = z
  .object({
    pending: z.int().min(0).describe('Messages not yet acknowledged by the broker (waiting or in flight)'),
    pendingBytes: z.int().min(0).describe('Bytes of those messages'),
    maxBytes: z.int().min(0).describe("The outbox's bound in bytes"),
    droppedTotal: z.int().min(0).describe('Messages dropped by the bound since the outbox was opened'),
  })
  .describe("The device's outbox when the telemetry was built");
export type OutboxMetrics = z.infer<typeof OutboxMetrics>;

export const Telemetry = Envelope.extend({
  /** Seconds between telemetry messages when this one was sent. */
  intervalS: z.number().min(0.1).max(86_400).describe('Seconds between telemetry messages when this one was sent'),
  system: SystemMetrics,
  pipeline: PipelineMetrics.optional(),
  shadow: ShadowMetrics.optional().describe('Present while a candidate runs in shadow'),
  samples: SampleTelemetry.optional().describe('Present while hard-sample capture is configured'),
  outbox: OutboxMetrics.optional().describe("The device's outbox (absent from agents that predate it)"),
}).describe('Periodic system and pipeline metrics of a device');
export type Telemetry = z.infer<typeof Telemetry>;

/* ---------------------------------------- events ---------------------------------------------- */

export const EventSeverity = z
  .enum(['debug', 'info', 'warning', 'error', 'critical'])
  .describe('How serious an event is');
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
  .regex(/^[a-z0-9]+(?:[.-][a-z0-9]+)*$/, 'event type must be dotted kebab-case, e.g. model.update')
  .describe(
    'Dotted kebab-case event type: agent.started, agent.stopping, agent.config-reloaded, agent.fault, ' +
      'outbox.dropped, camera.fault, model.update, sample.ready, or another that follows the pattern',
  );

export const DeviceEvent = Envelope.extend({
  type: EventType,
  severity: EventSeverity,
  message: z.string().max(2048).optional().describe('Human-readable text'),
  /** Set on every event that belongs to a model rollout. */
  rolloutId: z.string().max(64).optional().describe('Set on every event that belongs to a model rollout'),
  data: JsonObject.default({}).describe('Event-specific fields'),
}).describe('Something that happened on a device: model update progress, faults, samples ready');
export type DeviceEvent = z.infer<typeof DeviceEvent>;

/* -------------------------------------- reported state ---------------------------------------- */

/**
 * Why an agent ignored a desired model assignment: `assignment-expired` (its expiresAt is before the
 * device's clock) or `assignment-replayed` (an older desired version than the one applied, or a
 * rollout the device already finished or rolled back for that model).
 */
export const ASSIGNMENT_IGNORED_REASONS = ['assignment-expired', 'assignment-replayed'] as const;
export type AssignmentIgnoredReason = (typeof ASSIGNMENT_IGNORED_REASONS)[number];

export const Reported = Envelope.extend({
  agentVersion: z.string().max(64).describe('Version of the agent software'),
  /** The desired-state version last applied (0 before any). */
  desiredVersion: z.int().min(0).describe('The desired-state version last applied (0 before any)'),
  telemetryIntervalS: z.number().min(0.1).max(86_400).describe('Seconds between telemetry messages'),
  config: JsonObject.default({}).describe('The configuration in effect'),
  hardware: z
    .object({
      profile: z.string().max(64).optional().describe('Hardware profile a release may be limited to (e.g. rpi5)'),
      arch: z.string().max(32).optional().describe('CPU architecture (arm64, x64)'),
      platform: z.string().max(32).optional().describe('Operating system (linux)'),
    })
    .default({})
    .describe('What the device runs on'),
  /** Model state; filled in by the model manager. */
  model: z
    .object({
      active: ModelRef.nullable().describe('The model in use; null without one'),
      previous: ModelRef.nullable().optional().describe('The model before the last switch, kept for rollback'),
      shadow: ModelRef.nullable().optional().describe('A candidate running in shadow beside the active model'),
      /** Model-update state machine, when an update is under way or just ended. */
      update: z
        .object({
          rolloutId: z.string().max(64).nullable().describe('The rollout behind the update; null for none'),
          target: ModelRef.describe('The model being installed'),
          state: z
            .string()
            .max(32)
            .describe(
              'notified, downloading, verifying, loading, warming, shadow, active, committed, reverted or failed',
            ),
          /** Stable reason code of a refused or reverted update (hash_mismatch, bad_signature, ...). */
          code: z
            .string()
            .max(64)
            .optional()
            .describe('Stable reason code of a refused or reverted update (hash_mismatch, bad_signature, ...)'),
          reason: z.string().max(1024).optional().describe('The reason in words'),
        })
        .nullable()
        .optional()
        .describe('Model-update state machine, when an update is under way or just ended'),
      /** The last model assignment the device refused to act on (stale or replayed), if any. */
      ignored: z
        .object({
          reason: z
            .enum(ASSIGNMENT_IGNORED_REASONS)
            .describe('assignment-expired: its expiresAt had passed; assignment-replayed: already finished or older'),
          rolloutId: z.string().max(64).nullable().describe('The rollout the assignment named'),
          target: ModelRef.describe('The model it named'),
          at: EpochMs.describe('When the device ignored it (device clock)'),
        })
        .nullable()
        .optional()
        .describe('The last model assignment the device ignored as expired or replayed'),
      highestReleaseCounter: z
        .int()
        .min(0)
        .optional()
        .describe('Highest release counter installed: older releases are refused (anti-rollback)'),
    })
    .optional()
    .describe('Model state, filled in by the model manager'),
  providers: z.array(z.string().max(32)).max(16).optional().describe('Execution providers available on the device'),
}).describe('Reported state: what the device runs (model, config, versions)');
export type Reported = z.infer<typeof Reported>;

/* -------------------------------------- desired state ----------------------------------------- */

/**
 * Desired state, retained on the device's desired topic. `version` increases with every change;
 * an agent applies a version once and reports it back in `Reported.desiredVersion`.
 */
export const Desired = z
  .object({
    version: z.int().min(0).describe('Increases with every change; applied once and reported back'),
    issuedAt: EpochMs.describe('When the control plane issued this version'),
    telemetryIntervalS: z.number().min(0.1).max(86_400).optional().describe('Seconds between telemetry messages'),
    config: JsonObject.optional().describe('Configuration to apply'),
    model: ModelAssignment.nullable().optional().describe('The model to run; null or absent keeps the current one'),
    samplePolicy: JsonObject.nullable()
      .optional()
      .describe(
        'Hard-sample policy (a SamplePolicy). Kept loose here so one malformed policy never makes the whole ' +
          'desired state unreadable: the agent parses it, refuses it with a reported error and keeps the old one',
      ),
  })
  .describe('Desired state, retained on the device desired topic');
export type Desired = z.infer<typeof Desired>;

/* ------------------------------------ commands and replies ------------------------------------ */

export const RequestId = z
  .string()
  .min(1)
  .max(64)
  .regex(TOKEN_PATTERN, 'requestId may hold only A-Z a-z 0-9 _ -')
  .describe('Matches a reply to its command');
export const CommandName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9]+(?:-[a-z0-9]+)*$/, 'command name must be kebab-case')
  .describe('Kebab-case command name: ping, reload-config, set-telemetry-interval, or one the agent adds');

export const Command = z
  .object({
    requestId: RequestId,
    name: CommandName,
    args: JsonObject.default({}).describe('Command arguments'),
    issuedAt: EpochMs.optional().describe('When the control plane sent it'),
    /** A command that arrives after this instant is answered with `expired` and not run. */
    expiresAt: EpochMs.optional().describe('A command that arrives after this instant is answered expired, not run'),
  })
  .describe('A request to a device; answered with a reply of the same requestId');
export type Command = z.infer<typeof Command>;

export const ReplyErrorCode = z
  .enum(['unknown_command', 'invalid_args', 'failed', 'expired', 'busy'])
  .describe('Why a device refused or failed a command');
export type ReplyErrorCode = z.infer<typeof ReplyErrorCode>;

export const Reply = z
  .discriminatedUnion('ok', [
    Envelope.extend({
      requestId: RequestId,
      ok: z.literal(true).describe('The command ran'),
      data: JsonValue.optional().describe('What the command returned'),
    }).describe('A command that ran'),
    Envelope.extend({
      requestId: RequestId,
      ok: z.literal(false).describe('The command was refused or failed'),
      error: z
        .object({ code: ReplyErrorCode, message: z.string().max(2048).describe('The error in words') })
        .describe('Why'),
    }).describe('A command that was refused or failed'),
  ])
  .describe("A device's answer to a command");
export type Reply = z.infer<typeof Reply>;

/** Arguments of the commands every agent answers. */
export const COMMAND_ARGS = {
  ping: z.object({}),
  'reload-config': z.object({}),
  'set-telemetry-interval': z.object({ seconds: z.number().min(0.1).max(86_400) }),
  /** The next `frames` frames become on-demand hard samples (needs an enabled sample policy). */
  capture: SampleCaptureArgs,
} as const;
export type KnownCommand = keyof typeof COMMAND_ARGS;

/**
 * The command that hands a device its rotated secret. Only the control plane's rotation
 * (POST /api/v1/devices/:id/credentials/rotate) sends it; the generic command route refuses it.
 */
export const ROTATE_CREDENTIALS_COMMAND = 'rotate-credentials';

export const RotateCredentialsArgs = z
  .strictObject({
    password: z.string().min(16).max(1024).describe('The new secret'),
    deadline: EpochMs.optional().describe('When the old secret stops working'),
  })
  .describe('Arguments of rotate-credentials: the new secret the agent stores and reconnects with');
export type RotateCredentialsArgs = z.infer<typeof RotateCredentialsArgs>;
