import { type SQL, sql } from 'drizzle-orm';
import type { DatasetRecipe, DatasetRecord, DatasetRepository } from './repositories.ts';
import type { SqlDialect } from './sql-dialect.ts';
import { num, strOrNull, toSampleRecord } from './sql-row.ts';

/*
 * The dataset aggregate over the shared SQL dialect layer (see samples.ts): versions in
 * `datasets`, their frozen membership in `dataset_samples`, joined with `samples` for exports.
 * A version and all its membership rows are written in one transaction (SqlDialect.batch).
 */

/** Rows per INSERT statement (SQLite allows 32766 parameters; four per row). */
const INSERT_CHUNK = 500;
const ID_CHUNK = 500;

/** A unique or primary key violation (SQLite SQLITE_CONSTRAINT_*, PostgreSQL 23505), wrapped by drizzle or not. */
function isUniqueViolation(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 4; depth++) {
    const code = String((current as { code?: unknown }).code ?? '');
    if (code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return true;
    current = current.cause;
  }
  return false;
}

export function createDatasetRepository(dialect: SqlDialect): DatasetRepository {
  const toDataset = (row: Record<string, unknown>): DatasetRecord => ({
    id: String(row.id),
    name: String(row.name),
    version: num(row.version),
    parentId: strOrNull(row.parent_id),
    recipe: dialect.readJson(row.query) as DatasetRecipe,
    sampleCount: num(row.sample_count),
    createdAt: num(row.created_at),
    createdBy: strOrNull(row.created_by),
  });
  const COLUMNS = sql.raw('id, name, version, parent_id, query, sample_count, created_at, created_by');

  return {
    async latestVersion(name) {
      const [row] = await dialect.all(sql`SELECT max(version) AS v FROM datasets WHERE name = ${name}`);
      return row?.v === null || row?.v === undefined ? 0 : num(row.v);
    },

    async create(dataset, members) {
      const statements: SQL[] = [
        sql`INSERT INTO datasets (${COLUMNS}) VALUES (${dataset.id}, ${dataset.name}, ${dataset.version},
          ${dataset.parentId}, ${dialect.json(dataset.recipe)}, ${dataset.sampleCount}, ${dataset.createdAt},
          ${dataset.createdBy})`,
      ];
      for (let i = 0; i < members.length; i += INSERT_CHUNK) {
        const rows = members
          .slice(i, i + INSERT_CHUNK)
          .map(
            (m) =>
              sql`(${dataset.id}, ${m.sampleId}, ${m.split}, ${m.annotations === null ? null : dialect.json(m.annotations)})`,
          );
        statements.push(
          sql`INSERT INTO dataset_samples (dataset_id, sample_id, split, annotations) VALUES ${sql.join(rows, sql`, `)}`,
        );
      }
      try {
        await dialect.batch(statements);
        return 'created';
      } catch (error) {
        if (isUniqueViolation(error)) return 'conflict';
        throw error;
      }
    },

    async get(id) {
      const [row] = await dialect.all(sql`SELECT ${COLUMNS} FROM datasets WHERE id = ${id}`);
      return row ? toDataset(row) : null;
    },

    async list(query) {
      const where: SQL[] = [sql`1 = 1`];
      if (query.name !== undefined) where.push(sql`name = ${query.name}`);
      if (query.before) {
        const { createdAt, id } = query.before;
        where.push(sql`(created_at < ${createdAt} OR (created_at = ${createdAt} AND id < ${id}))`);
      }
      const rows = await dialect.all(sql`SELECT ${COLUMNS} FROM datasets WHERE ${sql.join(where, sql` AND `)}
        ORDER BY created_at DESC, id DESC LIMIT ${query.limit}`);
      return rows.map(toDataset);
    },

    async splitCounts(id) {
      const rows = await dialect.all(
        sql`SELECT split, count(*) AS n FROM dataset_samples WHERE dataset_id = ${id} GROUP BY split`,
      );
      return Object.fromEntries(rows.map((row) => [String(row.split), num(row.n)]));
    },

    async members(id, page) {
      const after = page.afterSampleId === undefined ? sql`` : sql` AND ds.sample_id > ${page.afterSampleId}`;
      const rows = await dialect.all(sql`
        SELECT ds.sample_id AS ds_sample_id, ds.split AS ds_split, ds.annotations AS ds_annotations, s.*
        FROM dataset_samples ds JOIN samples s ON s.id = ds.sample_id
        WHERE ds.dataset_id = ${id}${after}
        ORDER BY ds.sample_id LIMIT ${page.limit}`);
      return rows.map((row) => {
        const annotations = row.ds_annotations;
        return {
          sampleId: String(row.ds_sample_id),
          split: String(row.ds_split),
          annotations: annotations === null || annotations === undefined ? null : dialect.readJson(annotations),
          sample: toSampleRecord(row, dialect.readJson),
        };
      });
    },

    async existingSampleIds(ids) {
      const found = new Set<string>();
      for (let i = 0; i < ids.length; i += ID_CHUNK) {
        const chunk = ids.slice(i, i + ID_CHUNK);
        const rows = await dialect.all(
          sql`SELECT id FROM samples WHERE id IN (${sql.join(
            chunk.map((value) => sql`${value}`),
            sql`, `,
          )})`,
        );
        for (const row of rows) found.add(String(row.id));
      }
      return found;
    },
  };
}
