import { randomBytes } from 'node:crypto';
import {
  type CreateEvaluationRequest,
  EvaluationBaseline,
  EvaluationMetrics,
  type EvaluationView,
  Evaluator,
  fail,
  ok,
  type Result,
} from '@edgeloop/protocol';
import type { DatasetRepository, EvaluationRecord, EvaluationRepository, ModelRepository } from '../db/repositories.ts';

/*
 * Evaluation reports of registered models (POST/GET /api/v1/models/:name/:version/evaluations).
 * A report is accepted only when it describes what it names: the file evaluated is the registered
 * model's (sha256), the dataset version exists and carries human labels (an unlabelled version's
 * boxes are a model's predictions, not ground truth), and the champion beside it is a registered
 * model evaluated from its own bytes on the same task. Reports are kept as posted.
 */

export type EvaluationErrorCode = 'not_found' | 'conflict' | 'unprocessable';

export type EvaluationServiceDeps = {
  readonly evaluations: EvaluationRepository;
  readonly models: Pick<ModelRepository, 'get'>;
  readonly datasets: Pick<DatasetRepository, 'get'>;
  readonly clock: { now(): number };
  readonly newId?: () => string;
};

/** Most reports one listing answers. */
export const EVALUATION_LIST_LIMIT = 1000;

export function toEvaluationView(record: EvaluationRecord): EvaluationView {
  return {
    id: record.id,
    modelId: record.modelId,
    datasetId: record.datasetId,
    modelSha256: record.modelSha256,
    metrics: EvaluationMetrics.parse(record.metrics),
    baseline: record.baseline === null ? null : EvaluationBaseline.parse(record.baseline),
    evaluator: Evaluator.parse(record.evaluator),
    createdAt: record.createdAt,
    createdBy: record.createdBy,
  };
}

export type EvaluationService = ReturnType<typeof createEvaluationService>;

export function createEvaluationService(deps: EvaluationServiceDeps) {
  const newId = deps.newId ?? (() => `ev-${randomBytes(8).toString('hex')}`);

  return {
    async record(
      modelId: string,
      request: CreateEvaluationRequest,
      createdBy: string | null,
    ): Promise<Result<EvaluationView, EvaluationErrorCode>> {
      const model = await deps.models.get(modelId);
      if (!model) return fail('not_found', `no model ${modelId}`);
      if (request.modelSha256 !== model.sha256) {
        return fail(
          'conflict',
          `the file evaluated (sha256 ${request.modelSha256}) is not ${modelId} (sha256 ${model.sha256})`,
        );
      }
      const dataset = await deps.datasets.get(request.datasetId);
      if (!dataset) return fail('not_found', `no dataset version ${request.datasetId}`);
      if (dataset.recipe.source !== 'labels') {
        return fail(
          'unprocessable',
          `dataset version ${request.datasetId} has no imported labels: its boxes are predictions, not ground truth`,
        );
      }
      const baseline = request.baseline;
      if (baseline) {
        if (baseline.modelId === modelId) return fail('unprocessable', 'the baseline is the model itself');
        const champion = await deps.models.get(baseline.modelId);
        if (!champion) return fail('not_found', `no baseline model ${baseline.modelId}`);
        if (baseline.sha256 !== champion.sha256) {
          return fail(
            'conflict',
            `the baseline file evaluated (sha256 ${baseline.sha256}) is not ${baseline.modelId} (sha256 ${champion.sha256})`,
          );
        }
        if (baseline.metrics.task !== request.metrics.task) {
          return fail(
            'unprocessable',
            `the baseline was measured as ${baseline.metrics.task}, the model as ${request.metrics.task}`,
          );
        }
      }
      const record: EvaluationRecord = {
        id: newId(),
        modelId,
        modelSha256: request.modelSha256,
        datasetId: request.datasetId,
        metrics: request.metrics,
        baseline,
        evaluator: request.evaluator,
        createdAt: deps.clock.now(),
        createdBy,
      };
      await deps.evaluations.insert(record);
      return ok(toEvaluationView(record));
    },

    async list(
      modelId: string,
      query: { readonly datasetId?: string | undefined },
    ): Promise<Result<EvaluationView[], EvaluationErrorCode>> {
      if (!(await deps.models.get(modelId))) return fail('not_found', `no model ${modelId}`);
      const rows = await deps.evaluations.list({
        modelId,
        ...(query.datasetId !== undefined ? { datasetId: query.datasetId } : {}),
        limit: EVALUATION_LIST_LIMIT,
      });
      return ok(rows.map(toEvaluationView));
    },

    /** The newest report of `modelId` on `datasetId` that measured a champion beside it, or null. */
    async latestWithBaseline(modelId: string, datasetId: string): Promise<EvaluationView | null> {
      const [row] = await deps.evaluations.list({ modelId, datasetId, withBaseline: true, limit: 1 });
      return row ? toEvaluationView(row) : null;
    },
  };
}
