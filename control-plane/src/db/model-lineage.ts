import { sql } from 'drizzle-orm';
import type { SqlDialect } from './sql-dialect.ts';
import { num, strOrNull } from './sql-row.ts';

/*
 * The model lineage aggregate over the shared SQL dialect layer (see samples.ts): one row per
 * registered model whose signed release names a lineage, in `model_lineage`, with the flags the
 * registry raised at upload. The signed release stays the truth; these rows index it so the lineage
 * walk finds children (by parent sha256) and the models of a run or a dataset version without
 * parsing every release. It also reads what the walk needs from `models` (which ids hold a sha256)
 * and from a dataset version's members (its samples by strategy and site).
 */

export type ModelLineageRecord = {
  readonly modelId: string;
  readonly modelSha256: string;
  readonly datasetId: string | null;
  readonly parentSha256: string | null;
  readonly runId: string | null;
  readonly trainer: string | null;
  /** LineageFlag values raised at registration (protocol LINEAGE_FLAGS). */
  readonly flags: readonly string[];
  readonly createdAt: number;
};

/** A registered model, as the walk names it. */
export type LineageModelRow = {
  readonly id: string;
  readonly sha256: string;
  readonly createdAt: number;
};

/** What a dataset version holds, counted over its members' sample rows. */
export type DatasetSampleSummary = {
  /** Members whose sample is still stored. */
  readonly count: number;
  readonly byStrategy: Readonly<Record<string, number>>;
  /** By the site the sample was captured at; `(none)` for samples without one. */
  readonly bySite: Readonly<Record<string, number>>;
  /** The first few sample ids (by id). */
  readonly sampleIds: readonly string[];
};

export type ModelLineageRepository = {
  /** Stores a model's lineage row; when the model has one already, keeps it (idempotent). */
  put(record: ModelLineageRecord): Promise<void>;
  get(modelId: string): Promise<ModelLineageRecord | null>;
  /** Lineage rows naming this parent sha256, oldest first. */
  children(parentSha256: string, limit: number): Promise<ModelLineageRecord[]>;
  /** Lineage rows naming this retraining run, oldest first. */
  byRun(runId: string, limit: number): Promise<ModelLineageRecord[]>;
  /** Registered models holding these bytes, oldest first (one sha256 may be several versions). */
  modelsWithSha(sha256: string, limit: number): Promise<LineageModelRow[]>;
  /** A dataset version's stored samples by strategy and site, and a few of their ids. */
  datasetSamples(datasetId: string, sampleIds: number): Promise<DatasetSampleSummary>;
};

const COLUMNS = sql.raw('model_id, model_sha256, dataset_id, parent_sha256, run_id, trainer, flags, created_at');

/** The site key of samples captured without one. */
export const NO_SITE = '(none)';

export function createModelLineageRepository(dialect: SqlDialect): ModelLineageRepository {
  const toRecord = (row: Record<string, unknown>): ModelLineageRecord => {
    const flags = dialect.readJson(row.flags);
    return {
      modelId: String(row.model_id),
      modelSha256: String(row.model_sha256),
      datasetId: strOrNull(row.dataset_id),
      parentSha256: strOrNull(row.parent_sha256),
      runId: strOrNull(row.run_id),
      trainer: strOrNull(row.trainer),
      flags: Array.isArray(flags) ? flags.map(String) : [],
      createdAt: num(row.created_at),
    };
  };

  const countBy = (rows: readonly Record<string, unknown>[]) =>
    Object.fromEntries(
      rows.map((row) => [row.k === null || row.k === undefined ? NO_SITE : String(row.k), num(row.n)]),
    );

  return {
    async put(record) {
      await dialect.run(sql`INSERT INTO model_lineage (${COLUMNS}) VALUES (${record.modelId}, ${record.modelSha256},
        ${record.datasetId}, ${record.parentSha256}, ${record.runId}, ${record.trainer}, ${dialect.json(record.flags)},
        ${record.createdAt}) ON CONFLICT (model_id) DO NOTHING`);
    },

    async get(modelId) {
      const [row] = await dialect.all(sql`SELECT ${COLUMNS} FROM model_lineage WHERE model_id = ${modelId}`);
      return row ? toRecord(row) : null;
    },

    async children(parentSha256, limit) {
      const rows = await dialect.all(sql`SELECT ${COLUMNS} FROM model_lineage WHERE parent_sha256 = ${parentSha256}
        ORDER BY created_at, model_id LIMIT ${limit}`);
      return rows.map(toRecord);
    },

    async byRun(runId, limit) {
      const rows = await dialect.all(sql`SELECT ${COLUMNS} FROM model_lineage WHERE run_id = ${runId}
        ORDER BY created_at, model_id LIMIT ${limit}`);
      return rows.map(toRecord);
    },

    async modelsWithSha(sha256, limit) {
      const rows = await dialect.all(sql`SELECT id, sha256, created_at FROM models WHERE sha256 = ${sha256}
        ORDER BY created_at, id LIMIT ${limit}`);
      return rows.map((row) => ({ id: String(row.id), sha256: String(row.sha256), createdAt: num(row.created_at) }));
    },

    async datasetSamples(datasetId, sampleIds) {
      const members = sql`FROM dataset_samples ds JOIN samples s ON s.id = ds.sample_id WHERE ds.dataset_id = ${datasetId}`;
      const byStrategy = await dialect.all(sql`SELECT s.strategy AS k, count(*) AS n ${members} GROUP BY s.strategy`);
      const bySite = await dialect.all(sql`SELECT s.site AS k, count(*) AS n ${members} GROUP BY s.site`);
      const ids = await dialect.all(sql`SELECT ds.sample_id AS id ${members} ORDER BY ds.sample_id LIMIT ${sampleIds}`);
      const strategies = countBy(byStrategy);
      return {
        count: Object.values(strategies).reduce((sum, n) => sum + n, 0),
        byStrategy: strategies,
        bySite: countBy(bySite),
        sampleIds: ids.map((row) => String(row.id)),
      };
    },
  };
}
