import type { Channel } from '@edgeloop/protocol';
import { and, asc, count, eq, gte, inArray, lt, lte, type SQL, sql } from 'drizzle-orm';
import { historyBefore, historyOrder } from '../message-history.ts';
import type { MessageRepository, StoredMessage } from '../repositories.ts';
import { messages } from '../schema.ts';
import { parseTelemetrySample, SQLITE_SAMPLE_PATHS } from '../telemetry-sample.ts';
import type { SqliteDb } from './database.ts';

export function createSqliteMessageRepository(db: SqliteDb): MessageRepository {
  return {
    async list(query) {
      const conditions: (SQL | undefined)[] = [eq(messages.deviceId, query.deviceId)];
      if (query.channel) conditions.push(eq(messages.channel, query.channel));
      if (query.before) conditions.push(historyBefore(messages, query.before));
      const rows = db
        .select()
        .from(messages)
        .where(and(...conditions))
        .orderBy(...historyOrder(messages))
        .limit(query.limit)
        .all();
      return rows.map((row): StoredMessage => ({ ...row, channel: row.channel as Channel }));
    },

    async count(deviceId, msgId) {
      const where = msgId
        ? and(eq(messages.deviceId, deviceId), eq(messages.msgId, msgId))
        : eq(messages.deviceId, deviceId);
      return db.select({ n: count() }).from(messages).where(where).get()?.n ?? 0;
    },

    async pruneOlderThan(cutoff, limit) {
      // Rows are inserted in arrival order, so the oldest ids are the oldest rows: walk from the
      // start of the table instead of keeping an index on received_at that every insert would pay.
      const oldest = db
        .select({ id: messages.id })
        .from(messages)
        .where(lt(messages.receivedAt, cutoff))
        .orderBy(asc(messages.id))
        .limit(limit);
      return db.delete(messages).where(inArray(messages.id, oldest)).run().changes;
    },

    async telemetrySamples({ from, to }) {
      // json_extract with several paths parses the body once and returns a JSON array.
      const paths = sql.join(
        SQLITE_SAMPLE_PATHS.map((path) => sql`${path}`),
        sql`, `,
      );
      const rows = db
        .select({
          deviceId: messages.deviceId,
          receivedAt: messages.receivedAt,
          fields: sql<string>`json_extract(${messages.body}, ${paths})`,
        })
        .from(messages)
        .where(and(eq(messages.channel, 'telemetry'), gte(messages.receivedAt, from), lte(messages.receivedAt, to)))
        .all();
      return rows.map((row) => parseTelemetrySample(row.deviceId, row.receivedAt, row.fields));
    },
  };
}

/** Counts every stored message; used by tests and benchmarks. */
export function countAllMessages(db: SqliteDb): number {
  return db.get<{ n: number }>(sql`SELECT count(*) AS n FROM ${messages}`).n;
}
