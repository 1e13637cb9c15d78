import { sql } from 'drizzle-orm';
import type { SqliteDb } from './database.ts';
import { messages } from './schema.ts';

/** Counts every stored message; used by tests and benchmarks. */
export function countAllMessages(db: SqliteDb): number {
  return db.get<{ n: number }>(sql`SELECT count(*) AS n FROM ${messages}`).n;
}
