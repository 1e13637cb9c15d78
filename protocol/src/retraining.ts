import { z } from 'zod';
import { DatasetName, DatasetSampleQuery, DatasetSplitRatios } from './datasets.ts';
import { DriftBand } from './drift.ts';
import { EpochMs } from './messages.ts';
import { ModelName, Sha256Hex } from './models.ts';

/*
 * Retraining (issue 9 §3): a policy per model name says when the control plane asks for a new model
 * (drift sustained for N windows, N new samples, a cron schedule, or an operator), which dataset
 * version it freezes for the trainer, and where it delivers the webhook. Every firing is a run with
 * a `runId` the trainer carries into the signed release's lineage; the registry links the model
 * registered from it back to the run (status model-registered).
 *
 * The webhook is a POST of RetrainingWebhookPayload (JSON) with
 *   X-Edgeloop-Signature-256: sha256=<hex HMAC-SHA256 of the raw body under the policy's secret>
 *   X-Edgeloop-Event:         retraining.run
 *   X-Edgeloop-Delivery:      <runId>.<attempt>
 * in the manner of GitHub's X-Hub-Signature-256: a receiver computes the HMAC of the bytes it got
 * and compares it in constant time before it parses them.
 */

export const RETRAINING_SIGNATURE_HEADER = 'X-Edgeloop-Signature-256';
export const RETRAINING_EVENT_HEADER = 'X-Edgeloop-Event';
export const RETRAINING_DELIVERY_HEADER = 'X-Edgeloop-Delivery';
/** The X-Edgeloop-Event of a run's webhook. */
export const RETRAINING_EVENT = 'retraining.run';

export const RETRAINING_RUN_STATUSES = [
  'pending',
  'delivering',
  'delivered',
  'failed',
  'claimed',
  'model-registered',
] as const;
export const RetrainingRunStatus = z
  .enum(RETRAINING_RUN_STATUSES)
  .describe(
    'pending: waiting for a trainer to pull it (no webhook); delivering: the webhook is being sent or retried; ' +
      'delivered: the receiver answered 2xx; failed: every attempt failed (or the receiver refused it); ' +
      'claimed: a trainer took it (POST .../claim); model-registered: a model naming this runId was registered',
  );
export type RetrainingRunStatus = z.infer<typeof RetrainingRunStatus>;

export const RETRAINING_REASON_KINDS = ['drift', 'samples', 'schedule', 'manual'] as const;
export const RetrainingReasonKind = z.enum(RETRAINING_REASON_KINDS).describe('What fired the run');
export type RetrainingReasonKind = z.infer<typeof RetrainingReasonKind>;

const Count = z.int().min(0).max(Number.MAX_SAFE_INTEGER);

export const RetrainingTriggers = z
  .object({
    drift: z
      .object({
        band: DriftBand.exclude(['stable'])
          .default('major')
          .describe('The band (or worse) a site must hold: moderate or major'),
        windows: z.int().min(1).max(10_000).default(3).describe('Consecutive closed drift windows at that band'),
        sites: z
          .array(z.string().min(1).max(128))
          .max(256)
          .optional()
          .describe('Only these sites count (all sites when absent)'),
      })
      .strict()
      .optional()
      .describe('Fire when a site running a model of this name has drifted for `windows` windows'),
    samples: z
      .object({
        min: z.int().min(1).max(10_000_000).describe('At least this many new samples since the last run'),
        labelled: z.boolean().default(false).describe('Count only samples with human labels in some dataset version'),
      })
      .strict()
      .optional()
      .describe("Fire when the dataset query matches `min` samples received since the last run's start"),
    schedule: z
      .object({
        cron: z
          .string()
          .min(9)
          .max(128)
          .describe('A cron expression (5 or 6 fields, croner syntax), e.g. "0 3 * * 1" for Mondays 03:00'),
        timezone: z.string().max(64).optional().describe('IANA time zone of the expression (UTC when absent)'),
      })
      .strict()
      .optional()
      .describe('Fire at the times of a cron schedule'),
  })
  .strict()
  .describe('What fires a run; any trigger that holds fires it (none: only manual runs)');
export type RetrainingTriggers = z.infer<typeof RetrainingTriggers>;

export const RetrainingDatasetSpec = z
  .object({
    name: DatasetName.describe('Dataset name: each run freezes the next version name@N'),
    query: DatasetSampleQuery.default({}).describe(
      'The samples the version takes (the filters of GET /api/v1/samples)',
    ),
    split: DatasetSplitRatios.optional().describe('Split ratios; 80/10/10 when absent'),
  })
  .strict()
  .describe('The dataset version a run freezes for the trainer');
export type RetrainingDatasetSpec = z.infer<typeof RetrainingDatasetSpec>;

const WebhookUrl = z
  .url({ protocol: /^https?$/ })
  .max(2048)
  .describe('Where the webhook is POSTed (http or https)');

export const RetrainingPolicy = z
  .object({
    triggers: RetrainingTriggers.default({}),
    cooldownS: z
      .int()
      .min(0)
      .max(365 * 86_400)
      .default(86_400)
      .describe('No automatic run within this many seconds of the previous run (manual runs ignore it)'),
    dataset: RetrainingDatasetSpec,
    webhook: z
      .object({
        url: WebhookUrl,
        secret: z
          .string()
          .min(16)
          .max(256)
          .optional()
          .describe(
            'HMAC-SHA256 key of X-Edgeloop-Signature-256 (write-only: never returned; absent keeps the stored one)',
          ),
      })
      .strict()
      .nullable()
      .default(null)
      .describe('The webhook; null: trainers pull runs (GET /api/v1/retraining/runs?status=pending)'),
    enabled: z.boolean().default(true).describe('false: triggers are not evaluated (manual runs still work)'),
  })
  .strict()
  .describe('PUT /api/v1/retraining/policies/:modelName: when to retrain a model name, on what, and whom to tell');
export type RetrainingPolicy = z.infer<typeof RetrainingPolicy>;
export type RetrainingPolicyInput = z.input<typeof RetrainingPolicy>;

export const RetrainingPolicyView = z
  .object({
    modelName: ModelName,
    triggers: RetrainingTriggers,
    cooldownS: z.int().min(0).describe('Seconds after a run during which no trigger fires'),
    dataset: RetrainingDatasetSpec,
    webhook: z
      .object({
        url: z.string().describe('Where the webhook is POSTed'),
        hasSecret: z.boolean().describe('Whether a signing secret is stored (it is never returned)'),
      })
      .nullable()
      .describe('The webhook, without its secret; null for pull only'),
    enabled: z.boolean().describe('false: triggers are not evaluated (manual runs still work)'),
    updatedAt: EpochMs,
    updatedBy: z.string().nullable().describe('The API token that set it'),
  })
  .describe('A retraining policy as stored (the webhook secret is never shown)');
export type RetrainingPolicyView = z.infer<typeof RetrainingPolicyView>;

export const RetrainingReason = z
  .object({
    kind: RetrainingReasonKind,
    numbers: z
      .record(z.string(), z.union([z.number(), z.string(), z.null()]))
      .describe('The figures behind it: drift band, windows, PSI and site; sample count and threshold; cron due time'),
    detail: z.string().max(512).describe('The reason in words'),
  })
  .describe('Why a run fired');
export type RetrainingReason = z.infer<typeof RetrainingReason>;

export const RetrainingParentModel = z
  .object({ id: z.string().describe('name@version'), sha256: Sha256Hex })
  .describe('The model the run retrains (the champion of the name when it fired)');
export type RetrainingParentModel = z.infer<typeof RetrainingParentModel>;

export const RetrainingExportUrls = z
  .object({
    coco: z.string().describe('The frozen dataset version as COCO (tar), absolute URL'),
    yolo: z.string().describe('The same as YOLO txt (tar), absolute URL'),
  })
  .describe('Where the trainer downloads the dataset version (an operator or viewer token)');
export type RetrainingExportUrls = z.infer<typeof RetrainingExportUrls>;

export const RetrainingDelivery = z
  .object({
    at: EpochMs.describe('When the attempt started'),
    statusCode: z.int().nullable().describe("The receiver's HTTP status; null when none came"),
    error: z.string().nullable().describe('Why the attempt failed; null for a 2xx'),
    durationMs: z.number().min(0).describe('How long the attempt took'),
  })
  .describe('One webhook attempt');
export type RetrainingDelivery = z.infer<typeof RetrainingDelivery>;

export const RetrainingRun = z
  .object({
    runId: z.string().describe('The run id: put it in the release lineage (edgeloop-image sign --run-id)'),
    modelName: ModelName,
    parentModel: RetrainingParentModel.nullable().describe('The model being retrained; null when the name had none'),
    reason: RetrainingReason,
    datasetId: z.string().describe('The dataset version frozen for this run (name@N)'),
    exportUrls: RetrainingExportUrls,
    webhookUrl: z.string().nullable().describe('Where its webhook goes; null for pull only'),
    status: RetrainingRunStatus,
    attempts: Count.describe('Webhook attempts made'),
    lastStatusCode: z
      .int()
      .nullable()
      .describe('HTTP status of the last attempt; null before one or without an answer'),
    lastError: z.string().nullable().describe('Why the last attempt failed; null when it did not'),
    nextAttemptAt: EpochMs.nullable().describe('When the next attempt is due; null when none will be made'),
    deliveries: z.array(RetrainingDelivery).describe('The delivery log, oldest first (the newest 20 attempts)'),
    claimedBy: z.string().nullable().describe('The token (or trainer name) that claimed it'),
    claimedAt: EpochMs.nullable().describe('When it was claimed; null before'),
    resultModelId: z.string().nullable().describe('The model registered from this run (name@version)'),
    createdAt: EpochMs,
    updatedAt: EpochMs,
    createdBy: z.string().nullable().describe('The token of a manual run; system:retraining for the trigger loop'),
  })
  .describe('One retraining run and its webhook delivery log');
export type RetrainingRun = z.infer<typeof RetrainingRun>;

export const RetrainingRunList = z
  .object({
    items: z.array(RetrainingRun).describe('Runs, newest first'),
    nextCursor: z.string().nullable().describe('Pass as ?cursor= for the next page; null on the last page'),
  })
  .describe('A page of retraining runs');
export type RetrainingRunList = z.infer<typeof RetrainingRunList>;

export const RetrainingRunListQuery = z
  .object({
    status: RetrainingRunStatus.optional().describe('Only runs in this status (pending: what pullers take)'),
    model: ModelName.optional().describe('Only runs of this model name'),
    limit: z.coerce.number().int().min(1).max(500).default(100).describe('Page size'),
    cursor: z.string().max(256).optional().describe('Opaque, from the previous page nextCursor'),
  })
  .describe('Filters of GET /api/v1/retraining/runs');
export type RetrainingRunListQuery = z.infer<typeof RetrainingRunListQuery>;

export const TriggerRetrainingRequest = z
  .object({
    modelName: ModelName,
    note: z.string().max(256).optional().describe('Why, in words (kept in the reason)'),
  })
  .strict()
  .describe("POST /api/v1/retraining/runs: a manual run of a model name's policy now (the cooldown does not apply)");
export type TriggerRetrainingRequest = z.infer<typeof TriggerRetrainingRequest>;

export const ClaimRetrainingRunRequest = z
  .object({
    trainer: z.string().min(1).max(128).optional().describe('Who takes it (free text; the token id when absent)'),
  })
  .strict()
  .describe('POST /api/v1/retraining/runs/:runId/claim: a trainer takes a run (once); webhook retries stop');
export type ClaimRetrainingRunRequest = z.infer<typeof ClaimRetrainingRunRequest>;

export const CompleteRetrainingRunRequest = z
  .object({ modelId: z.string().min(3).max(128).describe('The registered model (name@version) trained from it') })
  .strict()
  .describe('POST /api/v1/retraining/runs/:runId/complete: link the model registered from the run');
export type CompleteRetrainingRunRequest = z.infer<typeof CompleteRetrainingRunRequest>;

export const RetrainingWebhookPayload = z
  .object({
    event: z.literal(RETRAINING_EVENT).describe('The event name (also in X-Edgeloop-Event)'),
    runId: z.string().describe('The run id: put it in the release lineage (edgeloop-image sign --run-id)'),
    modelName: ModelName,
    reason: RetrainingReason,
    dataset: z
      .object({
        id: z.string().describe('name@N'),
        name: DatasetName,
        version: z.int().min(1).describe('The version number N'),
      })
      .describe('The frozen dataset version'),
    exportUrls: RetrainingExportUrls,
    parentModel: RetrainingParentModel.nullable().describe('The model being retrained; null when the name had none'),
    /** Where the trainer claims the run and links the result. */
    links: z
      .object({
        run: z.string().describe('GET: the run'),
        claim: z.string().describe('POST: claim it'),
        complete: z.string().describe('POST: link the registered model'),
      })
      .describe('Absolute URLs of the run'),
    createdAt: EpochMs,
  })
  .describe('The JSON body of a retraining webhook (signed: X-Edgeloop-Signature-256)');
export type RetrainingWebhookPayload = z.infer<typeof RetrainingWebhookPayload>;

export const RetrainingPolicyList = z
  .object({ items: z.array(RetrainingPolicyView).describe('Policies, by model name') })
  .describe('Every retraining policy');
export type RetrainingPolicyList = z.infer<typeof RetrainingPolicyList>;
