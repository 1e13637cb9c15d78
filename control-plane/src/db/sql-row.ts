import { getTableColumns, param, type SQL, sql } from 'drizzle-orm';
import type { SampleRecord } from './repositories.ts';
import type { Row, TableOf } from './sql-dialect.ts';

/*
 * Rows of the aggregates written once for both dialects. The plain-SQL ones (samples.ts,
 * datasets.ts, ...) read column values as both dialects return them; the ones over drizzle tables
 * (devices.ts, rollouts.ts, ...) read and write whole rows through the dialect's own columns, which
 * map each value to and from its driver (rowReader, insertRows, setColumns).
 */

/**
 * A reader of rows as the driver returns them (`SELECT *`), each read as drizzle would have read it
 * from `table` (the columns are looked up once, here). A column the query did not select is absent
 * from the record too: the caller reads only those it chose.
 */
export function rowReader<R>(table: TableOf<R>): (row: Row) => R {
  const columns = Object.entries(getTableColumns(table)).map(([key, column]) => ({ key, column, name: column.name }));
  return (row) => {
    const record: Record<string, unknown> = {};
    for (const { key, column, name } of columns) {
      const value = row[name];
      // Drivers return NULL as null: undefined is a column the query did not select.
      if (value === undefined) continue;
      record[key] = value === null ? null : column.mapFromDriverValue(value);
    }
    return record as R;
  };
}

/**
 * `INSERT INTO table (...) VALUES (...), ...` of these rows: the columns some row sets (a column no
 * row sets takes its default), NULL where a row leaves one of them out.
 */
export function insertRows<R>(table: TableOf<R>, rows: readonly Partial<R>[]): SQL {
  if (rows.length === 0) throw new Error('insertRows needs a row');
  const columns = Object.entries(getTableColumns(table)).filter(([key]) =>
    rows.some((row) => row[key as keyof R] !== undefined),
  );
  const names = sql.join(
    columns.map(([, column]) => sql.identifier(column.name)),
    sql`, `,
  );
  const values = rows.map(
    (row) =>
      sql`(${sql.join(
        columns.map(([key, column]) => param(row[key as keyof R] ?? null, column)),
        sql`, `,
      )})`,
  );
  return sql`INSERT INTO ${table} (${names}) VALUES ${sql.join(values, sql`, `)}`;
}

/** The `SET` list of an UPDATE: each column the patch names, to its value. */
export function setColumns<R>(table: TableOf<R>, patch: Partial<R>): SQL {
  const sets = Object.entries(getTableColumns(table))
    .filter(([key]) => patch[key as keyof R] !== undefined)
    .map(([key, column]) => sql`${sql.identifier(column.name)} = ${param(patch[key as keyof R] ?? null, column)}`);
  if (sets.length === 0) throw new Error('setColumns needs a column to set');
  return sql.join(sets, sql`, `);
}

/** The `SET` list of an upsert: these columns from the row that was refused (`excluded`). */
export function setExcluded<R>(table: TableOf<R>, keys: readonly (keyof R & string)[]): SQL {
  return sql.join(
    keys.map((key) => {
      const name = sql.identifier(table[key].name);
      return sql`${name} = excluded.${name}`;
    }),
    sql`, `,
  );
}

/** A numeric column (PostgreSQL returns bigint as text). */
export const num = (value: unknown): number => Number(value);
/** A nullable text column. */
export const strOrNull = (value: unknown): string | null =>
  value === null || value === undefined ? null : String(value);

/** A `samples` row as a record; `readJson` is the dialect's (SqlDialect.readJson). */
export function toSampleRecord(row: Record<string, unknown>, readJson: (value: unknown) => unknown): SampleRecord {
  return {
    id: String(row.id),
    deviceId: String(row.device_id),
    site: strOrNull(row.site),
    labels: (readJson(row.labels) ?? {}) as Record<string, string>,
    modelId: strOrNull(row.model_id),
    modelSha256: strOrNull(row.model_sha256),
    strategy: String(row.strategy),
    reason: String(row.reason),
    tags: (readJson(row.tags) ?? []) as string[],
    predictions: readJson(row.predictions) ?? [],
    frameTs: num(row.frame_ts),
    bootId: String(row.boot_id),
    seq: num(row.seq),
    imageSha256: String(row.image_sha256),
    bytes: num(row.bytes),
    width: num(row.width),
    height: num(row.height),
    thumbnailSha256: strOrNull(row.thumbnail_sha256),
    receivedAt: num(row.received_at),
  };
}
