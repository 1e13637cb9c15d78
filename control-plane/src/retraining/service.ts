import { randomBytes } from 'node:crypto';
import {
  type DriftState,
  fail,
  ok,
  type Result,
  RetrainingPolicy,
  type RetrainingPolicyView,
  type RetrainingReason,
  type RetrainingRun,
  type RetrainingRunStatus,
} from '@edgeloop/protocol';
import type { AuditLog } from '../audit/audit.ts';
import type { DatasetService } from '../datasets/service.ts';
import type {
  ModelRepository,
  RetrainingPolicyRecord,
  RetrainingPolicyRepository,
  RetrainingRunRecord,
  RetrainingRunRepository,
  RolloutRepository,
} from '../db/repositories.ts';
import { cronProblem } from './cron.ts';
import { modelNameOf } from './decide.ts';
import { SYSTEM_RETRAINING } from './webhook.ts';
import type { SecretBox } from './webhook-secret.ts';

/*
 * Retraining policies and runs (the routes, the CLI and the trigger loop go through here). Firing a
 * run freezes the next version of the policy's dataset through the datasets service, names the
 * parent model, stores the run (`delivering` with a webhook, `pending` for pullers), and hands it to
 * the deliverer without waiting for the receiver. A trainer claims a run once; the model registered
 * from it is linked by its runId (the lineage in its signed release, or POST .../complete).
 */

export type RetrainingErrorCode = 'not_found' | 'unprocessable' | 'conflict';

export type RetrainingServiceDeps = {
  readonly policies: RetrainingPolicyRepository;
  readonly runs: RetrainingRunRepository;
  readonly datasets: Pick<DatasetService, 'create'>;
  readonly models: Pick<ModelRepository, 'get' | 'list'>;
  readonly rollouts: Pick<RolloutRepository, 'list'>;
  /** Drift states of sites (the parent model falls back to what the drifting sites run). */
  readonly driftStates: () => readonly DriftState[];
  readonly secrets: SecretBox;
  /** The control plane's public base URL (export and run links in the webhook). */
  readonly baseUrl: () => string;
  readonly clock: { now(): number };
  readonly newId?: () => string;
  /** A run was stored (the deliverer sends its webhook; the bus tells the console). */
  readonly onRunChanged?: (run: RetrainingRunRecord) => void;
  /** The loop's own runs are entered as system:retraining (HTTP requests are entered by the app). */
  readonly audit?: AuditLog;
};

/** Statuses a trainer may claim a run from. */
export const CLAIMABLE: readonly RetrainingRunStatus[] = ['pending', 'delivering', 'delivered', 'failed'];

export function toRunView(record: RetrainingRunRecord): RetrainingRun {
  return {
    runId: record.runId,
    modelName: record.modelName,
    parentModel: record.parentModel,
    reason: record.reason as RetrainingReason,
    datasetId: record.datasetId,
    exportUrls: record.exportUrls,
    webhookUrl: record.webhookUrl,
    status: record.status as RetrainingRunStatus,
    attempts: record.attempts,
    lastStatusCode: record.lastStatusCode,
    lastError: record.lastError,
    nextAttemptAt: record.nextAttemptAt,
    deliveries: [...record.deliveries],
    claimedBy: record.claimedBy,
    claimedAt: record.claimedAt,
    resultModelId: record.resultModelId,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    createdBy: record.createdBy,
  };
}

/** A stored policy as its schema (null when the row no longer parses: it is then skipped). */
export function parseStoredPolicy(record: RetrainingPolicyRecord): RetrainingPolicy | null {
  const parsed = RetrainingPolicy.safeParse(record.policy);
  return parsed.success ? parsed.data : null;
}

export function toPolicyView(record: RetrainingPolicyRecord, policy: RetrainingPolicy): RetrainingPolicyView {
  return {
    modelName: record.modelName,
    triggers: policy.triggers,
    cooldownS: policy.cooldownS,
    dataset: policy.dataset,
    webhook: policy.webhook ? { url: policy.webhook.url, hasSecret: record.webhookSecret !== null } : null,
    enabled: policy.enabled,
    updatedAt: record.updatedAt,
    updatedBy: record.updatedBy,
  };
}

export type RetrainingService = ReturnType<typeof createRetrainingService>;

export function createRetrainingService(deps: RetrainingServiceDeps) {
  const newId = deps.newId ?? (() => `rt-${randomBytes(8).toString('hex')}`);

  /**
   * The model a run retrains: the model of the newest completed rollout of the name (the champion),
   * else the model the name's drifting sites report most, else the newest registered version.
   */
  async function parentModelOf(modelName: string): Promise<RetrainingRunRecord['parentModel']> {
    const completed = await deps.rollouts.list({ status: 'completed', limit: 100 });
    const champion = completed.find((rollout) => modelNameOf(rollout.modelId) === modelName);
    const candidates: string[] = champion ? [champion.modelId] : [];
    const seen = new Map<string, number>();
    for (const state of deps.driftStates()) {
      if (state.scope !== 'site' || state.modelId === null || modelNameOf(state.modelId) !== modelName) continue;
      seen.set(state.modelId, (seen.get(state.modelId) ?? 0) + 1);
    }
    candidates.push(...[...seen].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([id]) => id));
    for (const id of candidates) {
      const model = await deps.models.get(id);
      if (model) return { id: model.id, sha256: model.sha256 };
    }
    const versions = await deps.models.list({ name: modelName, limit: 500 });
    const newest = versions.sort((a, b) => b.createdAt - a.createdAt || b.id.localeCompare(a.id))[0];
    return newest ? { id: newest.id, sha256: newest.sha256 } : null;
  }

  return {
    parentModelOf,

    async setPolicy(
      modelName: string,
      policy: RetrainingPolicy,
      updatedBy: string | null,
    ): Promise<Result<RetrainingPolicyView, RetrainingErrorCode>> {
      const schedule = policy.triggers.schedule;
      if (schedule) {
        const problem = cronProblem(schedule.cron, schedule.timezone);
        if (problem) return fail('unprocessable', `triggers.schedule: ${problem}`);
      }
      const existing = await deps.policies.get(modelName);
      let webhookSecret: string | null = null;
      if (policy.webhook) {
        if (policy.webhook.secret !== undefined) webhookSecret = deps.secrets.seal(policy.webhook.secret, modelName);
        else if (existing?.webhookSecret) webhookSecret = existing.webhookSecret;
        else return fail('unprocessable', 'webhook.secret: a webhook needs a signing secret (16 to 256 characters)');
      }
      // The secret never enters the policy JSON: it lives sealed in its own column.
      const stored: RetrainingPolicy = {
        ...policy,
        webhook: policy.webhook ? { url: policy.webhook.url } : null,
      };
      const record: RetrainingPolicyRecord = {
        modelName,
        policy: stored,
        webhookSecret,
        updatedAt: deps.clock.now(),
        updatedBy,
      };
      await deps.policies.put(record);
      return ok(toPolicyView(record, stored));
    },

    async getPolicy(modelName: string): Promise<RetrainingPolicyView | null> {
      const record = await deps.policies.get(modelName);
      const policy = record ? parseStoredPolicy(record) : null;
      return record && policy ? toPolicyView(record, policy) : null;
    },

    /** The opened webhook secret of a model name's policy, or null. */
    async secretOf(modelName: string): Promise<string | null> {
      const record = await deps.policies.get(modelName);
      return record?.webhookSecret ? deps.secrets.open(record.webhookSecret, modelName) : null;
    },

    /** Fires a run of a model name's policy now: freezes the dataset, stores the run, starts its delivery. */
    async fire(
      modelName: string,
      reason: RetrainingReason,
      createdBy: string | null,
    ): Promise<Result<RetrainingRun, RetrainingErrorCode>> {
      const record = await deps.policies.get(modelName);
      if (!record) return fail('not_found', `no retraining policy for model ${modelName}`);
      const policy = parseStoredPolicy(record);
      if (!policy) return fail('unprocessable', `the stored retraining policy of ${modelName} no longer parses`);
      const dataset = await deps.datasets.create(
        {
          name: policy.dataset.name,
          query: policy.dataset.query,
          ...(policy.dataset.split ? { splits: policy.dataset.split } : {}),
        },
        createdBy ?? SYSTEM_RETRAINING,
      );
      if (!dataset.ok) {
        return fail(
          dataset.error.code === 'conflict' ? 'conflict' : 'unprocessable',
          `dataset ${policy.dataset.name}: ${dataset.error.message}`,
        );
      }
      const now = deps.clock.now();
      const base = deps.baseUrl();
      const exportUrl = (format: string) =>
        `${base}/api/v1/datasets/${encodeURIComponent(dataset.value.id)}/export?format=${format}`;
      const run: RetrainingRunRecord = {
        runId: newId(),
        modelName,
        parentModel: await parentModelOf(modelName),
        reason,
        datasetId: dataset.value.id,
        exportUrls: { coco: exportUrl('coco'), yolo: exportUrl('yolo') },
        webhookUrl: policy.webhook?.url ?? null,
        status: policy.webhook ? 'delivering' : 'pending',
        attempts: 0,
        lastStatusCode: null,
        lastError: null,
        nextAttemptAt: policy.webhook ? now : null,
        deliveries: [],
        claimedBy: null,
        claimedAt: null,
        resultModelId: null,
        createdAt: now,
        updatedAt: now,
        createdBy: createdBy ?? SYSTEM_RETRAINING,
      };
      await deps.runs.create(run);
      if (createdBy === null) {
        await deps.audit?.record({
          at: now,
          actor: SYSTEM_RETRAINING,
          actorRole: 'system',
          action: 'retraining.triggered',
          resource: 'retraining',
          target: run.runId,
          requestId: null,
          source: null,
          status: null,
          summary: { modelName, reason: reason.kind, numbers: reason.numbers, datasetId: run.datasetId },
        });
      }
      deps.onRunChanged?.(run);
      return ok(toRunView(run));
    },

    async getRun(runId: string): Promise<RetrainingRun | null> {
      const record = await deps.runs.get(runId);
      return record ? toRunView(record) : null;
    },

    async listRuns(query: Parameters<RetrainingRunRepository['list']>[0]): Promise<RetrainingRun[]> {
      return (await deps.runs.list(query)).map(toRunView);
    },

    async claim(runId: string, claimedBy: string): Promise<Result<RetrainingRun, RetrainingErrorCode>> {
      const claimed = await deps.runs.claim(runId, claimedBy, deps.clock.now(), CLAIMABLE);
      if (claimed) {
        deps.onRunChanged?.(claimed);
        return ok(toRunView(claimed));
      }
      const current = await deps.runs.get(runId);
      if (!current) return fail('not_found', `no retraining run ${runId}`);
      return fail(
        'conflict',
        `run ${runId} is ${current.status}${current.claimedBy ? ` (claimed by ${current.claimedBy})` : ''}`,
      );
    },

    /** Links the registered model trained from a run (idempotent for the same model). */
    async complete(runId: string, modelId: string): Promise<Result<RetrainingRun, RetrainingErrorCode>> {
      const current = await deps.runs.get(runId);
      if (!current) return fail('not_found', `no retraining run ${runId}`);
      const model = await deps.models.get(modelId);
      if (!model) return fail('not_found', `no registered model ${modelId}`);
      if (model.name !== current.modelName) {
        return fail('unprocessable', `run ${runId} retrains ${current.modelName}, not ${model.name}`);
      }
      const linked = await deps.runs.linkModel(runId, modelId, deps.clock.now());
      if (!linked) return fail('conflict', `run ${runId} is linked to ${current.resultModelId} already`);
      deps.onRunChanged?.(linked);
      return ok(toRunView(linked));
    },
  };
}
