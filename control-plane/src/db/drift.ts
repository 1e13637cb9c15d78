import { type SQL, sql } from 'drizzle-orm';
import type { DriftBoostRecord, DriftReferenceRecord, DriftRepository } from './repositories.ts';
import type { SqlDialect } from './sql-dialect.ts';
import { num, strOrNull } from './sql-row.ts';

/*
 * Drift references (and their last judged state) and drift-raised site sampling, over the shared
 * SQL dialect layer (see samples.ts). References are keyed by (scope, key, model sha256); a put is
 * an upsert, many at once in one transaction (the window close writes the ones that changed).
 * `complete` is written as the TRUE / FALSE keywords, which both dialects read as their boolean.
 */

const COLUMNS = sql.raw(
  'scope, key, model_sha256, model_id, source, dataset_id, from_at, to_at, complete, sums, state, updated_at, updated_by',
);

/** Rows per INSERT (13 parameters each: well inside SQLite's and PostgreSQL's parameter limits). */
const UPSERT_CHUNK = 500;

export function createDriftRepository(dialect: SqlDialect): DriftRepository {
  const numOrNull = (value: unknown) => (value === null || value === undefined ? null : num(value));
  const toReference = (row: Record<string, unknown>): DriftReferenceRecord => ({
    scope: row.scope === 'device' ? 'device' : 'site',
    key: String(row.key),
    modelSha256: String(row.model_sha256),
    modelId: strOrNull(row.model_id),
    source: row.source === 'dataset' || row.source === 'pinned' ? row.source : 'auto',
    datasetId: strOrNull(row.dataset_id),
    from: numOrNull(row.from_at),
    to: numOrNull(row.to_at),
    complete: row.complete === true || row.complete === 1 || row.complete === '1',
    sums: dialect.readJson(row.sums),
    state: row.state === null || row.state === undefined ? null : dialect.readJson(row.state),
    updatedAt: num(row.updated_at),
    updatedBy: strOrNull(row.updated_by),
  });
  const values = (r: DriftReferenceRecord) =>
    sql`(${r.scope}, ${r.key}, ${r.modelSha256}, ${r.modelId}, ${r.source}, ${r.datasetId}, ${r.from}, ${r.to},
      ${r.complete ? sql`TRUE` : sql`FALSE`}, ${dialect.json(r.sums)}, ${r.state === null ? null : dialect.json(r.state)},
      ${r.updatedAt}, ${r.updatedBy})`;
  /** One statement per chunk of rows (a window close may write thousands): 13 parameters a row. */
  const upsert = (rows: readonly DriftReferenceRecord[]) =>
    sql`INSERT INTO drift_references (${COLUMNS}) VALUES ${sql.join(rows.map(values), sql`, `)}
      ON CONFLICT (scope, key, model_sha256) DO UPDATE SET model_id = excluded.model_id, source = excluded.source,
        dataset_id = excluded.dataset_id, from_at = excluded.from_at, to_at = excluded.to_at,
        complete = excluded.complete, sums = excluded.sums, state = excluded.state,
        updated_at = excluded.updated_at, updated_by = excluded.updated_by`;

  return {
    async listReferences() {
      const rows = await dialect.all(sql`SELECT ${COLUMNS} FROM drift_references ORDER BY scope, key, model_sha256`);
      return rows.map(toReference);
    },
    async putReferences(records) {
      if (records.length === 0) return;
      const chunks: SQL[] = [];
      for (let start = 0; start < records.length; start += UPSERT_CHUNK) {
        chunks.push(upsert(records.slice(start, start + UPSERT_CHUNK)));
      }
      await dialect.batch(chunks);
    },
    async removeReference(scope, key, modelSha256) {
      const removed = await dialect.run(
        sql`DELETE FROM drift_references WHERE scope = ${scope} AND key = ${key} AND model_sha256 = ${modelSha256}`,
      );
      return removed > 0;
    },
    async listBoosts() {
      const rows = await dialect.all(
        sql`SELECT site, previous, raised, raised_at, reason FROM drift_sampling_boosts ORDER BY site`,
      );
      return rows.map((row) => ({
        site: String(row.site),
        previous: row.previous === null || row.previous === undefined ? null : dialect.readJson(row.previous),
        raised: dialect.readJson(row.raised),
        raisedAt: num(row.raised_at),
        reason: dialect.readJson(row.reason),
      }));
    },
    async putBoost(record: DriftBoostRecord) {
      await dialect.run(sql`INSERT INTO drift_sampling_boosts (site, previous, raised, raised_at, reason)
        VALUES (${record.site}, ${record.previous === null ? null : dialect.json(record.previous)},
          ${dialect.json(record.raised)}, ${record.raisedAt}, ${dialect.json(record.reason)})
        ON CONFLICT (site) DO UPDATE SET previous = excluded.previous, raised = excluded.raised,
          raised_at = excluded.raised_at, reason = excluded.reason`);
    },
    async removeBoost(site) {
      return (await dialect.run(sql`DELETE FROM drift_sampling_boosts WHERE site = ${site}`)) > 0;
    },
  };
}
