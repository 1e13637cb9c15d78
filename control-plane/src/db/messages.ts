import type { Channel } from '@edgeloop/protocol';
import { and, eq, gte, lt, lte, type SQL, sql } from 'drizzle-orm';
import { historyBefore, historyOrder } from './message-history.ts';
import type { MessageRepository, StoredMessage } from './repositories.ts';
import type { SqlDialect, TableOf } from './sql-dialect.ts';
import { rowReader } from './sql-row.ts';
import { parseTelemetrySample } from './telemetry-sample.ts';

/*
 * Stored messages (device history, retention, the telemetry rollout gates read), written once for
 * both dialects over SqlDialect; the ingest writer appends them (sqlite/ingest.ts, postgres/ingest.ts).
 */

/**
 * Deletes up to `limit` rows received before `cutoff`, oldest first; returns how many. Rows are
 * inserted in arrival order, so the oldest ids are the oldest rows: walk from the start of the
 * table instead of keeping an index on received_at that every insert would pay.
 */
export async function pruneOldest(
  dialect: SqlDialect,
  table: TableOf<{ id: number; receivedAt: number }>,
  cutoff: number,
  limit: number,
): Promise<number> {
  return dialect.run(
    sql`DELETE FROM ${table} WHERE ${table.id} IN (
          SELECT ${table.id} FROM ${table} WHERE ${lt(table.receivedAt, cutoff)} ORDER BY ${table.id} ASC LIMIT ${limit})`,
  );
}

export function createMessageRepository(dialect: SqlDialect): MessageRepository {
  const { messages } = dialect.tables;
  const readMessage = rowReader(messages);
  return {
    async list(query) {
      const conditions: (SQL | undefined)[] = [eq(messages.deviceId, query.deviceId)];
      if (query.channel) conditions.push(eq(messages.channel, query.channel));
      if (query.before) conditions.push(historyBefore(messages, query.before));
      const rows = await dialect.all(
        sql`SELECT * FROM ${messages} WHERE ${and(...conditions)}
            ORDER BY ${sql.join(historyOrder(messages), sql`, `)} LIMIT ${query.limit}`,
      );
      return rows.map((row): StoredMessage => {
        const message = readMessage(row);
        return { ...message, channel: message.channel as Channel };
      });
    },

    async count(deviceId, msgId) {
      const where = msgId
        ? and(eq(messages.deviceId, deviceId), eq(messages.msgId, msgId))
        : eq(messages.deviceId, deviceId);
      const [row] = await dialect.all(sql`SELECT count(*) AS n FROM ${messages} WHERE ${where}`);
      return Number(row?.n ?? 0);
    },

    pruneOlderThan: (cutoff, limit) => pruneOldest(dialect, messages, cutoff, limit),

    async telemetrySamples({ from, to }) {
      const rows = await dialect.all(
        sql`SELECT ${messages.deviceId} AS device_id, ${messages.receivedAt} AS received_at,
                   ${dialect.sampleFields(messages.body)} AS fields
            FROM ${messages}
            WHERE ${and(eq(messages.channel, 'telemetry'), gte(messages.receivedAt, from), lte(messages.receivedAt, to))}`,
      );
      return rows.map((row) =>
        parseTelemetrySample(String(row.device_id), Number(row.received_at), dialect.readSampleFields(row.fields)),
      );
    },
  };
}
