import type { Statement } from 'better-sqlite3';
import { type SQL, sql } from 'drizzle-orm';
import { SQLiteSyncDialect } from 'drizzle-orm/sqlite-core';
import type { SqlDialect } from '../samples.ts';
import type { SqliteDb } from './database.ts';

/** Prepared statements kept per dialect, by SQL text (the oldest goes first when full). */
const STATEMENT_CACHE = 256;

/**
 * SQLite's side of the shared aggregate queries: JSON as text, json_extract paths, `changes`.
 * Statements are prepared once per SQL text and kept (drizzle's db.all prepares one per call,
 * which costs more than running it: it showed as the top frame of the sample ingest profile).
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
  return {
    async all(query: SQL) {
      const { statement, params } = prepared(query);
      return statement.all(...params) as Record<string, unknown>[];
    },
    async run(query: SQL) {
      const { statement, params } = prepared(query);
      return statement.run(...params).changes;
    },
    json: (value) => sql`${JSON.stringify(value)}`,
    jsonText: (column, key) => sql`json_extract(${column}, ${`$."${key.replace(/"/g, '')}"`})`,
    readJson: (value) => (typeof value === 'string' ? JSON.parse(value) : value),
    async batch(queries) {
      // Synchronous inside: nothing else runs on this connection between BEGIN and COMMIT.
      db.transaction((tx) => {
        for (const query of queries) tx.run(query);
      });
    },
  };
}
