import { type SQL, sql } from 'drizzle-orm';
import type {
  RetrainingPolicyRecord,
  RetrainingPolicyRepository,
  RetrainingRunRecord,
  RetrainingRunRepository,
} from './repositories.ts';
import type { SqlDialect } from './sql-dialect.ts';
import { num, strOrNull } from './sql-row.ts';

/*
 * The retraining aggregate over the shared SQL dialect layer (see samples.ts): one policy per model
 * name in `retraining_policies`, the runs they fired in `retraining_runs`. State changes of a run are
 * conditional updates (on its status, and on its attempt count for deliveries), so two writers
 * cannot both claim a run or both record the same attempt.
 */

const POLICY_COLUMNS = sql.raw('model_name, policy, webhook_secret, updated_at, updated_by');

const RUN_COLUMNS = sql.raw(
  [
    'id',
    'model_name',
    'parent_model',
    'reason',
    'dataset_id',
    'export_urls',
    'webhook_url',
    'status',
    'attempts',
    'last_status_code',
    'last_error',
    'next_attempt_at',
    'deliveries',
    'claimed_by',
    'claimed_at',
    'result_model_id',
    'created_at',
    'updated_at',
    'created_by',
  ].join(', '),
);

/** Statuses in which a webhook attempt that was in flight is still logged. */
const LOGGABLE: readonly string[] = ['delivering', 'claimed', 'model-registered'];

const numOrNull = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));

export function createRetrainingPolicyRepository(dialect: SqlDialect): RetrainingPolicyRepository {
  const toRecord = (row: Record<string, unknown>): RetrainingPolicyRecord => ({
    modelName: String(row.model_name),
    policy: dialect.readJson(row.policy),
    webhookSecret: strOrNull(row.webhook_secret),
    updatedAt: num(row.updated_at),
    updatedBy: strOrNull(row.updated_by),
  });
  return {
    async put(record) {
      await dialect.run(sql`INSERT INTO retraining_policies (${POLICY_COLUMNS})
        VALUES (${record.modelName}, ${dialect.json(record.policy)}, ${record.webhookSecret}, ${record.updatedAt},
          ${record.updatedBy})
        ON CONFLICT (model_name) DO UPDATE SET policy = excluded.policy, webhook_secret = excluded.webhook_secret,
          updated_at = excluded.updated_at, updated_by = excluded.updated_by`);
    },
    async get(modelName) {
      const [row] = await dialect.all(
        sql`SELECT ${POLICY_COLUMNS} FROM retraining_policies WHERE model_name = ${modelName}`,
      );
      return row ? toRecord(row) : null;
    },
    async list() {
      const rows = await dialect.all(sql`SELECT ${POLICY_COLUMNS} FROM retraining_policies ORDER BY model_name`);
      return rows.map(toRecord);
    },
    async remove(modelName) {
      return (await dialect.run(sql`DELETE FROM retraining_policies WHERE model_name = ${modelName}`)) > 0;
    },
  };
}

export function createRetrainingRunRepository(dialect: SqlDialect): RetrainingRunRepository {
  const toRecord = (row: Record<string, unknown>): RetrainingRunRecord => ({
    runId: String(row.id),
    modelName: String(row.model_name),
    parentModel: (row.parent_model === null || row.parent_model === undefined
      ? null
      : dialect.readJson(row.parent_model)) as RetrainingRunRecord['parentModel'],
    reason: dialect.readJson(row.reason),
    datasetId: String(row.dataset_id),
    exportUrls: dialect.readJson(row.export_urls) as RetrainingRunRecord['exportUrls'],
    webhookUrl: strOrNull(row.webhook_url),
    status: String(row.status),
    attempts: num(row.attempts),
    lastStatusCode: numOrNull(row.last_status_code),
    lastError: strOrNull(row.last_error),
    nextAttemptAt: numOrNull(row.next_attempt_at),
    deliveries: (dialect.readJson(row.deliveries) ?? []) as RetrainingRunRecord['deliveries'],
    claimedBy: strOrNull(row.claimed_by),
    claimedAt: numOrNull(row.claimed_at),
    resultModelId: strOrNull(row.result_model_id),
    createdAt: num(row.created_at),
    updatedAt: num(row.updated_at),
    createdBy: strOrNull(row.created_by),
  });

  const get = async (runId: string) => {
    const [row] = await dialect.all(sql`SELECT ${RUN_COLUMNS} FROM retraining_runs WHERE id = ${runId}`);
    return row ? toRecord(row) : null;
  };

  const statusIn = (statuses: readonly string[]) =>
    sql`status IN (${sql.join(
      statuses.map((status) => sql`${status}`),
      sql`, `,
    )})`;

  return {
    async create(run) {
      await dialect.run(sql`INSERT INTO retraining_runs (${RUN_COLUMNS}) VALUES (${run.runId}, ${run.modelName},
        ${run.parentModel === null ? null : dialect.json(run.parentModel)}, ${dialect.json(run.reason)},
        ${run.datasetId}, ${dialect.json(run.exportUrls)}, ${run.webhookUrl}, ${run.status}, ${run.attempts},
        ${run.lastStatusCode}, ${run.lastError}, ${run.nextAttemptAt}, ${dialect.json(run.deliveries)},
        ${run.claimedBy}, ${run.claimedAt}, ${run.resultModelId}, ${run.createdAt}, ${run.updatedAt},
        ${run.createdBy})`);
    },

    get,

    async list(query) {
      const where: SQL[] = [sql`1 = 1`];
      if (query.status !== undefined) where.push(sql`status = ${query.status}`);
      if (query.modelName !== undefined) where.push(sql`model_name = ${query.modelName}`);
      if (query.before) {
        const { createdAt, runId } = query.before;
        where.push(sql`(created_at < ${createdAt} OR (created_at = ${createdAt} AND id < ${runId}))`);
      }
      const rows = await dialect.all(sql`SELECT ${RUN_COLUMNS} FROM retraining_runs
        WHERE ${sql.join(where, sql` AND `)} ORDER BY created_at DESC, id DESC LIMIT ${query.limit}`);
      return rows.map(toRecord);
    },

    async latest(modelName) {
      const [row] = await dialect.all(sql`SELECT ${RUN_COLUMNS} FROM retraining_runs WHERE model_name = ${modelName}
        ORDER BY created_at DESC, id DESC LIMIT 1`);
      return row ? toRecord(row) : null;
    },

    async due(now, limit) {
      const rows = await dialect.all(sql`SELECT ${RUN_COLUMNS} FROM retraining_runs
        WHERE status = 'delivering' AND next_attempt_at IS NOT NULL AND next_attempt_at <= ${now}
        ORDER BY next_attempt_at ASC, id ASC LIMIT ${limit}`);
      return rows.map(toRecord);
    },

    async recordDelivery(runId, expectedAttempts, outcome) {
      const current = await get(runId);
      if (!current || !LOGGABLE.includes(current.status) || current.attempts !== expectedAttempts) return null;
      const deliveries = [...current.deliveries, outcome.delivery].slice(-outcome.keep);
      // A run a trainer claimed (or linked) while the attempt was in flight keeps its status and
      // takes no further attempt; the attempt is logged all the same.
      const changed = await dialect.run(sql`UPDATE retraining_runs SET
          status = CASE WHEN status = 'delivering' THEN ${outcome.status} ELSE status END,
          next_attempt_at = CASE WHEN status = 'delivering' THEN CAST(${outcome.nextAttemptAt} AS BIGINT) ELSE NULL END,
          attempts = ${expectedAttempts + 1}, last_status_code = ${outcome.delivery.statusCode},
          last_error = ${outcome.delivery.error}, deliveries = ${dialect.json(deliveries)},
          updated_at = ${outcome.delivery.at}
        WHERE id = ${runId} AND ${statusIn(LOGGABLE)} AND attempts = ${expectedAttempts}`);
      return changed === 1 ? get(runId) : null;
    },

    async claim(runId, claimedBy, now, from) {
      const changed = await dialect.run(sql`UPDATE retraining_runs SET status = 'claimed', claimed_by = ${claimedBy},
          claimed_at = ${now}, next_attempt_at = NULL, updated_at = ${now}
        WHERE id = ${runId} AND ${statusIn(from)}`);
      return changed === 1 ? get(runId) : null;
    },

    async linkModel(runId, modelId, now) {
      const changed = await dialect.run(sql`UPDATE retraining_runs SET status = 'model-registered',
          result_model_id = ${modelId}, next_attempt_at = NULL, updated_at = ${now}
        WHERE id = ${runId} AND (result_model_id IS NULL OR result_model_id = ${modelId})`);
      return changed === 1 ? get(runId) : null;
    },

    async byResultModel(modelId) {
      const [row] = await dialect.all(sql`SELECT ${RUN_COLUMNS} FROM retraining_runs WHERE result_model_id = ${modelId}
        ORDER BY created_at DESC LIMIT 1`);
      return row ? toRecord(row) : null;
    },
  };
}
