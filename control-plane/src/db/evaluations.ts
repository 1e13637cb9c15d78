import { type SQL, sql } from 'drizzle-orm';
import type { EvaluationRecord, EvaluationRepository } from './repositories.ts';
import type { SqlDialect } from './sql-dialect.ts';
import { num, strOrNull } from './sql-row.ts';

/*
 * The evaluation aggregate over the shared SQL dialect layer (see samples.ts): one row per posted
 * report in `evaluations`, read newest first per model (and dataset version).
 */

const COLUMNS = sql.raw('id, model_id, model_sha256, dataset_id, metrics, baseline, evaluator, created_at, created_by');

export function createEvaluationRepository(dialect: SqlDialect): EvaluationRepository {
  const toRecord = (row: Record<string, unknown>): EvaluationRecord => ({
    id: String(row.id),
    modelId: String(row.model_id),
    modelSha256: String(row.model_sha256),
    datasetId: String(row.dataset_id),
    metrics: dialect.readJson(row.metrics),
    baseline: row.baseline === null || row.baseline === undefined ? null : dialect.readJson(row.baseline),
    evaluator: dialect.readJson(row.evaluator),
    createdAt: num(row.created_at),
    createdBy: strOrNull(row.created_by),
  });

  return {
    async insert(record) {
      await dialect.run(sql`INSERT INTO evaluations (${COLUMNS}) VALUES (${record.id}, ${record.modelId},
        ${record.modelSha256}, ${record.datasetId}, ${dialect.json(record.metrics)},
        ${record.baseline === null ? null : dialect.json(record.baseline)}, ${dialect.json(record.evaluator)},
        ${record.createdAt}, ${record.createdBy})`);
    },

    async list(query) {
      const where: SQL[] = [sql`model_id = ${query.modelId}`];
      if (query.datasetId !== undefined) where.push(sql`dataset_id = ${query.datasetId}`);
      if (query.withBaseline) where.push(sql`baseline IS NOT NULL`);
      const rows = await dialect.all(sql`SELECT ${COLUMNS} FROM evaluations WHERE ${sql.join(where, sql` AND `)}
        ORDER BY created_at DESC, id DESC LIMIT ${query.limit}`);
      return rows.map(toRecord);
    },
  };
}
