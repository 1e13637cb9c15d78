import { z } from 'zod';
import { GATE_VERDICTS, RolloutStatus } from './api.ts';
import { JsonValue } from './json-value.ts';
import { EpochMs } from './messages.ts';
import { LineageFlag, ReleaseLineage } from './models.ts';

/*
 * GET /api/v1/models/:name/:version/lineage: the chain a model sits in, both ways.
 *
 *   upstream    samples -> dataset version (and the versions it was labelled from) -> retraining run
 *               -> parent model -> its parent ... (bounded depth)
 *   downstream  this model's rollouts -> their gate verdicts per stage and final state; the models
 *               whose signed lineage names this one's sha256 as their parent
 *
 * The lineage itself comes from the signed release; `found: false` marks a name the control plane
 * does not hold (the registry flagged it at upload).
 */

/** The deepest parent chain a lineage request may ask for. */
export const LINEAGE_MAX_DEPTH = 32;
export const LINEAGE_DEFAULT_DEPTH = 8;

export const LineageQuery = z
  .object({
    depth: z.coerce
      .number()
      .int()
      .min(0)
      .max(LINEAGE_MAX_DEPTH)
      .default(LINEAGE_DEFAULT_DEPTH)
      .describe(`How many parent models to walk up (0 to ${LINEAGE_MAX_DEPTH}, default ${LINEAGE_DEFAULT_DEPTH})`),
  })
  .describe('Options of GET /api/v1/models/:name/:version/lineage');
export type LineageQuery = z.infer<typeof LineageQuery>;

/** A registered model as the lineage names it. */
export const LineageModel = z
  .object({
    id: z.string().describe('`name@version`'),
    name: z.string().describe('Model name'),
    version: z.string().describe('Semantic version'),
    sha256: z.string().describe('SHA-256 of the model file'),
    createdAt: EpochMs.describe('When it was registered'),
    uploadedBy: z.string().nullable().describe('The API token that uploaded it'),
    lineage: ReleaseLineage.nullable().describe('The lineage its signed release names; null when none'),
    lineageFlags: z.array(LineageFlag).describe('What the registry could not confirm at upload'),
  })
  .describe('A registered model with its signed lineage and upload flags');
export type LineageModel = z.infer<typeof LineageModel>;

export const LineageSamples = z
  .object({
    count: z.int().describe('Stored samples in the dataset version'),
    byStrategy: z.record(z.string(), z.int()).describe('Samples by the strategy that captured them'),
    bySite: z.record(z.string(), z.int()).describe('Samples by capture site; `(none)` for samples without one'),
    sampleIds: z.array(z.string()).describe('The first few sample ids (by id)'),
  })
  .describe('The hard samples behind a dataset version');
export type LineageSamples = z.infer<typeof LineageSamples>;

export const LineageDatasetVersion = z
  .object({
    id: z.string().describe('name@version'),
    found: z.boolean().describe('False when no dataset version has this id (flagged unknown_dataset)'),
    sampleCount: z.int().nullable().describe('Members when it was frozen; null when not found'),
    createdAt: EpochMs.nullable().describe('When it was frozen; null when not found'),
    createdBy: z.string().nullable().describe('Who froze it (a token id or system:retraining)'),
    parentId: z.string().nullable().describe('The version it labels; null for a version made from samples'),
  })
  .describe('One dataset version of the chain');
export type LineageDatasetVersion = z.infer<typeof LineageDatasetVersion>;

export const LineageDataset = LineageDatasetVersion.extend({
  samples: LineageSamples.nullable().describe('Its samples; null when not found'),
  parents: z
    .array(LineageDatasetVersion)
    .describe('The versions it was labelled from, nearest first (a labelled version points at its parent)'),
}).describe('The dataset version the model was trained on, with its samples and parent versions');
export type LineageDataset = z.infer<typeof LineageDataset>;

export const LineageRun = z
  .object({
    runId: z.string().describe('The retraining run id the lineage names'),
    found: z.boolean().describe('False when no run has this id (flagged unknown_run)'),
    modelName: z.string().nullable().describe('The model name the run was fired for'),
    status: z.string().nullable().describe('pending, delivering, delivered, failed, claimed, model-registered'),
    reason: JsonValue.nullable().describe('Why it fired: { kind, numbers }'),
    datasetId: z.string().nullable().describe('The dataset version it froze'),
    parentModel: z
      .object({
        id: z.string().describe('name@version'),
        sha256: z.string().describe('sha256 of its bytes'),
      })
      .nullable()
      .describe('The model committed for the name when it fired'),
    createdAt: EpochMs.nullable().describe('When it fired'),
    resultModelId: z.string().nullable().describe('The model registered as its result'),
  })
  .describe('The retraining run that asked for the model');
export type LineageRun = z.infer<typeof LineageRun>;

export const LineageAncestor = z
  .object({
    depth: z.int().min(1).describe('1 for the parent, 2 for its parent, ...'),
    sha256: z.string().describe('The sha256 the child names as its parent'),
    found: z.boolean().describe('False when no registered model holds these bytes (flagged unknown_parent)'),
    model: LineageModel.nullable().describe('The registered model holding them (the oldest, when several do)'),
    datasetId: z.string().nullable().describe('The dataset version its own lineage names'),
    runId: z.string().nullable().describe('The retraining run its own lineage names'),
  })
  .describe('One model up the parent chain');
export type LineageAncestor = z.infer<typeof LineageAncestor>;

export const LineageStageOutcome = z
  .object({
    stage: z.string().describe('Stage name (validation: the validation gate before the first stage)'),
    stageIndex: z.int().describe('Stage index in the spec (the validation gate is recorded before stage 0)'),
    verdicts: z
      .object({
        pass: z.int().describe('Passing verdicts'),
        fail: z.int().describe('Failing verdicts'),
        inconclusive: z.int().describe('Inconclusive verdicts'),
      })
      .describe('Verdicts taken in this stage, by kind'),
    last: z
      .object({
        at: EpochMs,
        verdict: z.enum(['pass', 'fail', 'inconclusive']).describe('The verdict'),
        reason: z.string().describe('Why'),
        gates: z
          .array(
            z.object({
              gate: z.string().describe('Gate name'),
              verdict: z.enum(GATE_VERDICTS).describe("The gate's verdict"),
            }),
          )
          .describe('Each gate of the last verdict'),
      })
      .describe('The last verdict of the stage'),
  })
  .describe("One stage's gate verdicts");
export type LineageStageOutcome = z.infer<typeof LineageStageOutcome>;

export const LineageRollout = z
  .object({
    id: z.string().describe('Rollout id'),
    status: RolloutStatus,
    terminal: z.boolean().describe('True once it will not move again (completed, rolled_back, aborted)'),
    reason: z.string().nullable().describe('Why it is where it is'),
    createdAt: EpochMs,
    updatedAt: EpochMs,
    stages: z.array(LineageStageOutcome).describe('Gate verdicts per stage, in the order the stages were judged'),
    verdictsTruncated: z.boolean().describe('True when the rollout has more verdicts than were read'),
  })
  .describe('One rollout of the model and its outcome');
export type LineageRollout = z.infer<typeof LineageRollout>;

export const ModelLineage = z
  .object({
    model: LineageModel,
    upstream: z
      .object({
        dataset: LineageDataset.nullable().describe('The dataset version the lineage names; null when none'),
        run: LineageRun.nullable().describe('The retraining run the lineage names; null when none'),
        parents: z.array(LineageAncestor).describe('The parent chain, nearest first'),
        parentsTruncated: z
          .boolean()
          .describe('True when the chain goes on past the depth asked for (or loops back on itself)'),
      })
      .describe('Where the model came from'),
    downstream: z
      .object({
        rollouts: z.array(LineageRollout).describe('Rollouts of this model, newest first'),
        children: z.array(LineageModel).describe("Models whose lineage names this model's sha256 as parent"),
      })
      .describe('What became of the model'),
  })
  .describe('A model in its lineage: samples -> dataset -> run -> model -> rollouts -> outcome, and its children');
export type ModelLineage = z.infer<typeof ModelLineage>;
