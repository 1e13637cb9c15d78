import { and, asc, desc, eq, inArray, lt, type SQL } from 'drizzle-orm';
import type { DeadLetterRepository } from '../repositories.ts';
import { deadLetters } from '../schema.ts';
import type { SqliteDb } from './database.ts';

export function createSqliteDeadLetterRepository(db: SqliteDb): DeadLetterRepository {
  return {
    async list(query) {
      const conditions: SQL[] = [];
      if (query.deviceId !== undefined) conditions.push(eq(deadLetters.deviceId, query.deviceId));
      if (query.reason !== undefined) conditions.push(eq(deadLetters.reason, query.reason));
      if (query.beforeId !== undefined) conditions.push(lt(deadLetters.id, query.beforeId));
      return db
        .select()
        .from(deadLetters)
        .where(and(...conditions))
        .orderBy(desc(deadLetters.id))
        .limit(query.limit)
        .all();
    },

    async pruneOlderThan(cutoff, limit) {
      const oldest = db
        .select({ id: deadLetters.id })
        .from(deadLetters)
        .where(lt(deadLetters.receivedAt, cutoff))
        .orderBy(asc(deadLetters.id))
        .limit(limit);
      return db.delete(deadLetters).where(inArray(deadLetters.id, oldest)).run().changes;
    },
  };
}
