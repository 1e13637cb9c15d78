import type { Statement } from 'better-sqlite3';
import { type SQL, sql } from 'drizzle-orm';
import { SQLiteSyncDialect } from 'drizzle-orm/sqlite-core';
import { driveTx, type Row, type SqlDialect } from '../sql-dialect.ts';
import { SQLITE_SAMPLE_PATHS } from '../telemetry-sample.ts';
import type { SqliteDb } from './database.ts';
import * as schema from './schema.ts';

/** Prepared statements kept per dialect, by SQL text (the oldest goes first when full). */
const STATEMENT_CACHE = 512;

/**
 * SQLite's side of the shared aggregate queries: JSON as text, json_extract paths, `changes`,
 * BINARY (byte-order) collation already, transactions run synchronously.
 * Statements are prepared once per SQL text and kept (drizzle's db.all prepares one per call,
 * which costs more than running it: it showed as the top frame of the sample ingest profile).
 * One dialect serves the whole store, so every aggregate shares the cache.
 */
export function sqliteDialect(db: SqliteDb): SqlDialect {
  const compiler = new SQLiteSyncDialect();
  const statements = new Map<string, Statement>();
  const prepared = (query: SQL): { statement: Statement; params: unknown[] } => {
    const { sql: text, params } = compiler.sqlToQuery(query);
    let statement = statements.get(text);
    if (!statement) {
      statement = db.$client.prepare(text);
      if (statements.size >= STATEMENT_CACHE) statements.delete(statements.keys().next().value!);
      statements.set(text, statement);
    }
    return { statement, params };
  };
  const all = (query: SQL): Row[] => {
    const { statement, params } = prepared(query);
    return statement.all(...params) as Row[];
  };
  const run = (query: SQL): number => {
    const { statement, params } = prepared(query);
    return statement.run(...params).changes;
  };
  // Label keys match LABEL_KEY_PATTERN; quotes are dropped anyway, the path is a bound parameter.
  const jsonPath = (path: readonly string[]) => `$${path.map((key) => `."${key.replace(/"/g, '')}"`).join('')}`;
  return {
    tables: schema,
    async all(query) {
      return all(query);
    },
    async run(query) {
      return run(query);
    },
    json: (value) => sql`${JSON.stringify(value)}`,
    jsonText: (column, ...path) => sql`json_extract(${column}, ${jsonPath(path)})`,
    jsonElements: (column, alias) => sql`json_each(${column}) AS ${sql.identifier(alias)}`,
    readJson: (value) => (typeof value === 'string' ? JSON.parse(value) : value),
    byteOrder: (column) => sql`${column}`,
    forUpdate: sql``,
    // json_extract with several paths parses the body once and returns a JSON array.
    sampleFields: (body) =>
      sql`json_extract(${body}, ${sql.join(
        SQLITE_SAMPLE_PATHS.map((path) => sql`${path}`),
        sql`, `,
      )})`,
    readSampleFields: (value) => value,
    async transaction(body) {
      // Synchronous inside: nothing else runs on this connection between BEGIN and COMMIT.
      return db.$client.transaction(() =>
        driveTx(body(), (statement) => (statement.result === 'rows' ? all(statement.query) : run(statement.query))),
      )();
    },
    async batch(queries) {
      db.$client.transaction(() => {
        for (const query of queries) run(query);
      })();
    },
  };
}
