import { and, eq, lt, type SQL, sql } from 'drizzle-orm';
import { pruneOldest } from './messages.ts';
import type { DeadLetter, DeadLetterRepository } from './repositories.ts';
import type { SqlDialect } from './sql-dialect.ts';
import { rowReader } from './sql-row.ts';

/* Dead letters (messages that could not be accepted), read and pruned here; the ingest writer appends them. */

export function createDeadLetterRepository(dialect: SqlDialect): DeadLetterRepository {
  const { deadLetters } = dialect.tables;
  const readDeadLetter = rowReader(deadLetters);
  return {
    async list(query) {
      const conditions: SQL[] = [sql`1 = 1`];
      if (query.deviceId !== undefined) conditions.push(eq(deadLetters.deviceId, query.deviceId));
      if (query.reason !== undefined) conditions.push(eq(deadLetters.reason, query.reason));
      if (query.beforeId !== undefined) conditions.push(lt(deadLetters.id, query.beforeId));
      const rows = await dialect.all(
        sql`SELECT * FROM ${deadLetters} WHERE ${and(...conditions)} ORDER BY ${deadLetters.id} DESC LIMIT ${query.limit}`,
      );
      return rows.map((row): DeadLetter => readDeadLetter(row));
    },

    pruneOlderThan: (cutoff, limit) => pruneOldest(dialect, deadLetters, cutoff, limit),
  };
}
