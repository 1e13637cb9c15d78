import {
  LINEAGE_FLAGS,
  type LineageAncestor,
  type LineageDataset,
  type LineageDatasetVersion,
  type LineageFlag,
  type LineageModel,
  type LineageRollout,
  type LineageRun,
  type LineageStageOutcome,
  type ModelLineage,
  type ModelRelease,
  type ReleaseLineage,
  type RolloutStatus,
  type SignedModelRelease,
} from '@edgeloop/protocol';
import { type AuditLog, noAudit } from '../audit/audit.ts';
import type { ModelLineageRecord, ModelLineageRepository } from '../db/model-lineage.ts';
import type {
  DatasetRepository,
  ModelRecord,
  ModelRepository,
  RetrainingRunRecord,
  RetrainingRunRepository,
  RolloutEventRecord,
  RolloutRepository,
} from '../db/repositories.ts';
import type { Counter } from '../metrics.ts';

/*
 * Model lineage (issue 9 §4). A signed release may name where it came from (dataset version,
 * parent model sha256, retraining run, trainer). At registration the control plane checks each
 * name against what it holds: a name it does not know is accepted but flagged (the release is
 * signed by a trusted key; the lineage is its author's claim), the flags are kept with the model,
 * counted, and written to the audit log, and a confirmed run is linked to the model. The walk
 * answers GET /api/v1/models/:name/:version/lineage: upstream to samples, dataset, run and parents,
 * downstream to rollouts, their verdicts and final states, and child models.
 */

/** Dataset versions walked up from the one a lineage names (labelled versions point at their parent). */
const DATASET_PARENT_LIMIT = 16;
/** Sample ids named per dataset version. */
const SAMPLE_IDS = 5;
/** Rollouts of a model read, newest first. */
const ROLLOUT_LIMIT = 50;
/** Verdict events read per rollout. */
const VERDICT_LIMIT = 1000;
/** Child models named. */
const CHILD_LIMIT = 100;

const TERMINAL: ReadonlySet<string> = new Set(['completed', 'rolled_back', 'aborted']);

/** The run fields the checks and the walk read. */
export type LineageRunFacts = Pick<RetrainingRunRecord, 'runId' | 'modelName' | 'datasetId' | 'resultModelId'>;

/**
 * The flags of a lineage, from what the lookups found (pure). `run` is null when the lineage names
 * a run no record has; the run checks apply only to a run that exists.
 */
export function lineageFlags(input: {
  readonly release: Pick<ModelRelease, 'name' | 'lineage'>;
  readonly modelId: string;
  readonly datasetFound: boolean;
  readonly parentFound: boolean;
  readonly run: LineageRunFacts | null;
}): LineageFlag[] {
  const lineage = input.release.lineage;
  if (!lineage) return [];
  const flags = new Set<LineageFlag>();
  if (lineage.datasetVersion !== undefined && !input.datasetFound) flags.add('unknown_dataset');
  if (lineage.parentModel !== undefined && !input.parentFound) flags.add('unknown_parent');
  if (lineage.runId !== undefined) {
    const run = input.run;
    if (run === null) flags.add('unknown_run');
    else {
      if (lineage.datasetVersion !== undefined && run.datasetId !== lineage.datasetVersion) {
        flags.add('run_dataset_mismatch');
      }
      if (run.modelName !== input.release.name) flags.add('run_model_mismatch');
      if (run.resultModelId !== null && run.resultModelId !== input.modelId) flags.add('run_already_linked');
    }
  }
  return LINEAGE_FLAGS.filter((flag) => flags.has(flag));
}

/** The lineage a registered model's signed release names, or null. */
export function lineageOf(model: Pick<ModelRecord, 'signed'>): ReleaseLineage | null {
  return (JSON.parse(model.signed) as SignedModelRelease).release.lineage ?? null;
}

export type LineageServiceDeps = {
  readonly lineage: ModelLineageRepository;
  readonly models: Pick<ModelRepository, 'get'>;
  readonly datasets: Pick<DatasetRepository, 'get'>;
  readonly runs: Pick<RetrainingRunRepository, 'get' | 'linkModel'>;
  readonly rollouts: Pick<RolloutRepository, 'list' | 'listEvents'>;
  readonly clock: { now(): number };
  /** Where flagged registrations and run links are recorded (who uploaded, what was flagged). */
  readonly audit?: AuditLog;
  /** edgeloop_model_lineage_flags_total{flag}. */
  readonly flagged?: Counter;
};

export type LineageService = {
  /**
   * Checks and stores the lineage of a model just registered (or registered again: the stored row
   * wins, so a re-upload changes nothing) and links a confirmed run to it. Returns its flags.
   */
  record(
    model: ModelRecord,
    release: ModelRelease,
    uploader: { readonly actor: string | null; readonly role: string | null },
  ): Promise<LineageFlag[]>;
  /** The flags stored for a model ([] for one whose release names no lineage). */
  flagsOf(modelId: string): Promise<LineageFlag[]>;
  /** The model's lineage both ways, walking at most `depth` parents up. */
  walk(model: ModelRecord, depth: number): Promise<ModelLineage>;
};

const asFlags = (flags: readonly string[]): LineageFlag[] => LINEAGE_FLAGS.filter((flag) => flags.includes(flag));

export function createLineageService(deps: LineageServiceDeps): LineageService {
  const audit = deps.audit ?? noAudit;

  const modelNode = (model: ModelRecord, row: ModelLineageRecord | null): LineageModel => ({
    id: model.id,
    name: model.name,
    version: model.version,
    sha256: model.sha256,
    createdAt: model.createdAt,
    uploadedBy: model.uploadedBy,
    lineage: lineageOf(model),
    lineageFlags: asFlags(row?.flags ?? []),
  });

  const versionNode = async (id: string): Promise<LineageDatasetVersion & { found: boolean }> => {
    const dataset = await deps.datasets.get(id);
    return {
      id,
      found: dataset !== null,
      sampleCount: dataset?.sampleCount ?? null,
      createdAt: dataset?.createdAt ?? null,
      createdBy: dataset?.createdBy ?? null,
      parentId: dataset?.parentId ?? null,
    };
  };

  const datasetNode = async (id: string): Promise<LineageDataset> => {
    const version = await versionNode(id);
    const parents: LineageDatasetVersion[] = [];
    const seen = new Set([id]);
    let next = version.parentId;
    while (next !== null && parents.length < DATASET_PARENT_LIMIT && !seen.has(next)) {
      seen.add(next);
      const parent = await versionNode(next);
      parents.push(parent);
      next = parent.parentId;
    }
    const samples = version.found ? await deps.lineage.datasetSamples(id, SAMPLE_IDS) : null;
    return {
      ...version,
      samples: samples && {
        count: samples.count,
        byStrategy: { ...samples.byStrategy },
        bySite: { ...samples.bySite },
        sampleIds: [...samples.sampleIds],
      },
      parents,
    };
  };

  const runNode = async (runId: string): Promise<LineageRun> => {
    const run = await deps.runs.get(runId);
    return {
      runId,
      found: run !== null,
      modelName: run?.modelName ?? null,
      status: run?.status ?? null,
      reason: (run?.reason ?? null) as LineageRun['reason'],
      datasetId: run?.datasetId ?? null,
      parentModel: run?.parentModel ? { id: run.parentModel.id, sha256: run.parentModel.sha256 } : null,
      createdAt: run?.createdAt ?? null,
      resultModelId: run?.resultModelId ?? null,
    };
  };

  const parentChain = async (
    start: ModelRecord,
    depth: number,
  ): Promise<{ parents: LineageAncestor[]; truncated: boolean }> => {
    const parents: LineageAncestor[] = [];
    const seen = new Set([start.sha256]);
    let sha = lineageOf(start)?.parentModel;
    while (sha !== undefined) {
      if (parents.length >= depth || seen.has(sha)) return { parents, truncated: true };
      seen.add(sha);
      const [holder] = await deps.lineage.modelsWithSha(sha, 1);
      const model = holder ? await deps.models.get(holder.id) : null;
      if (!model) {
        parents.push({
          depth: parents.length + 1,
          sha256: sha,
          found: false,
          model: null,
          datasetId: null,
          runId: null,
        });
        break;
      }
      const lineage = lineageOf(model);
      parents.push({
        depth: parents.length + 1,
        sha256: sha,
        found: true,
        model: modelNode(model, await deps.lineage.get(model.id)),
        datasetId: lineage?.datasetVersion ?? null,
        runId: lineage?.runId ?? null,
      });
      sha = lineage?.parentModel;
    }
    return { parents, truncated: false };
  };

  const rolloutNodes = async (modelId: string): Promise<LineageRollout[]> => {
    const rollouts = await deps.rollouts.list({ modelId, limit: ROLLOUT_LIMIT });
    return Promise.all(
      rollouts.map(async (rollout) => {
        const events = await deps.rollouts.listEvents({
          rolloutId: rollout.id,
          type: 'verdict',
          limit: VERDICT_LIMIT + 1,
        });
        return {
          id: rollout.id,
          status: rollout.status as RolloutStatus,
          terminal: TERMINAL.has(rollout.status),
          reason: rollout.reason,
          createdAt: rollout.createdAt,
          updatedAt: rollout.updatedAt,
          stages: stageOutcomes(events.slice(0, VERDICT_LIMIT)),
          verdictsTruncated: events.length > VERDICT_LIMIT,
        };
      }),
    );
  };

  return {
    async record(model, release, uploader) {
      const lineage = release.lineage;
      if (!lineage) return [];
      const stored = await deps.lineage.get(model.id);
      if (stored) return asFlags(stored.flags);

      const [dataset, parents, run] = await Promise.all([
        lineage.datasetVersion === undefined ? null : deps.datasets.get(lineage.datasetVersion),
        lineage.parentModel === undefined ? [] : deps.lineage.modelsWithSha(lineage.parentModel, 1),
        lineage.runId === undefined ? null : deps.runs.get(lineage.runId),
      ]);
      const flags = lineageFlags({
        release,
        modelId: model.id,
        datasetFound: dataset !== null,
        // A release naming its own bytes as parent is not confirmed by finding itself.
        parentFound: parents.length > 0 && lineage.parentModel !== model.sha256,
        run,
      });
      const now = deps.clock.now();
      await deps.lineage.put({
        modelId: model.id,
        modelSha256: model.sha256,
        datasetId: lineage.datasetVersion ?? null,
        parentSha256: lineage.parentModel ?? null,
        runId: lineage.runId ?? null,
        trainer: lineage.trainer ?? null,
        flags,
        createdAt: now,
      });
      // Only a run that is this model name's and free (or already this model's) is linked.
      const runFlags: readonly LineageFlag[] = ['run_model_mismatch', 'run_already_linked'];
      const linked =
        run !== null && !flags.some((flag) => runFlags.includes(flag))
          ? (await deps.runs.linkModel(run.runId, model.id, now)) !== null
          : false;
      for (const flag of flags) deps.flagged?.inc({ flag });
      await audit.record({
        at: now,
        actor: uploader.actor ?? 'anonymous',
        actorRole: uploader.role ?? 'none',
        action: flags.length > 0 ? 'model.lineage-flagged' : 'model.lineage-recorded',
        resource: 'models',
        target: model.id,
        requestId: null,
        source: null,
        status: null,
        summary: { lineage: { ...lineage }, flags, ...(run !== null ? { runLinked: linked } : {}) },
      });
      return flags;
    },

    async flagsOf(modelId) {
      return asFlags((await deps.lineage.get(modelId))?.flags ?? []);
    },

    async walk(model, depth) {
      const row = await deps.lineage.get(model.id);
      const own = modelNode(model, row);
      const lineage = own.lineage;
      const [dataset, run, chain, rollouts, childRows] = await Promise.all([
        lineage?.datasetVersion === undefined ? null : datasetNode(lineage.datasetVersion),
        lineage?.runId === undefined ? null : runNode(lineage.runId),
        parentChain(model, depth),
        rolloutNodes(model.id),
        deps.lineage.children(model.sha256, CHILD_LIMIT),
      ]);
      const children: LineageModel[] = [];
      for (const child of childRows) {
        if (child.modelSha256 === model.sha256) continue; // its own bytes as parent: not a child
        const record = await deps.models.get(child.modelId);
        if (record) children.push(modelNode(record, child));
      }
      return {
        model: own,
        upstream: { dataset, run, parents: chain.parents, parentsTruncated: chain.truncated },
        downstream: { rollouts, children },
      };
    },
  };
}

/** Verdict events grouped by stage, in the order the stages were first judged (pure). */
export function stageOutcomes(
  events: readonly Pick<RolloutEventRecord, 'at' | 'stage' | 'data'>[],
): LineageStageOutcome[] {
  const stages = new Map<string, LineageStageOutcome>();
  for (const event of events) {
    const data = event.data as {
      stageIndex?: unknown;
      verdict?: unknown;
      reason?: unknown;
      gates?: unknown;
    };
    const verdict = data.verdict === 'pass' || data.verdict === 'fail' ? data.verdict : 'inconclusive';
    const name = event.stage ?? '';
    const gates = Array.isArray(data.gates)
      ? data.gates.flatMap((gate: { gate?: unknown; verdict?: unknown }) =>
          typeof gate?.gate === 'string' && isGateVerdict(gate.verdict)
            ? [{ gate: gate.gate, verdict: gate.verdict }]
            : [],
        )
      : [];
    const stage = stages.get(name) ?? {
      stage: name,
      stageIndex: typeof data.stageIndex === 'number' ? data.stageIndex : 0,
      verdicts: { pass: 0, fail: 0, inconclusive: 0 },
      last: { at: event.at, verdict, reason: '', gates: [] },
    };
    stage.verdicts[verdict] += 1;
    stage.last = { at: event.at, verdict, reason: typeof data.reason === 'string' ? data.reason : '', gates };
    stages.set(name, stage);
  }
  return [...stages.values()];
}

function isGateVerdict(value: unknown): value is LineageStageOutcome['last']['gates'][number]['verdict'] {
  return value === 'pass' || value === 'fail' || value === 'inconclusive' || value === 'not-applicable';
}
