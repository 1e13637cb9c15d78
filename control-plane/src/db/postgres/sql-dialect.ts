import { type SQL, sql } from 'drizzle-orm';
import type { SqlDialect } from '../samples.ts';
import type { PostgresDb } from './database.ts';

/** PostgreSQL's side of the shared aggregate queries: jsonb parameters, ->> paths, rowCount. */
export function postgresDialect(db: PostgresDb): SqlDialect {
  return {
    async all(query: SQL) {
      return (await db.execute(query)).rows as Record<string, unknown>[];
    },
    async run(query: SQL) {
      return (await db.execute(query)).rowCount ?? 0;
    },
    json: (value) => sql`${JSON.stringify(value)}::jsonb`,
    jsonText: (column, key) => sql`(${column} ->> ${key})`,
    readJson: (value) => value,
    async batch(queries) {
      await db.transaction(async (tx) => {
        for (const query of queries) await tx.execute(query);
      });
    },
  };
}
