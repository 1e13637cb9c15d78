import { type SQL, sql } from 'drizzle-orm';
import type { SqlDialect } from '../samples.ts';
import type { SqliteDb } from './database.ts';

/** SQLite's side of the shared aggregate queries: JSON as text, json_extract paths, `changes`. */
export function sqliteDialect(db: SqliteDb): SqlDialect {
  return {
    async all(query: SQL) {
      return db.all<Record<string, unknown>>(query);
    },
    async run(query: SQL) {
      return db.run(query).changes;
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
