import type { Channel } from '@edgeloop/protocol';
import { and, asc, count, eq, gte, inArray, lt, lte, type SQL } from 'drizzle-orm';
import { historyBefore, historyOrder } from '../message-history.ts';
import type { MessageRepository, StoredMessage } from '../repositories.ts';
import { extractSampleFields, parseTelemetrySample } from '../telemetry-sample.ts';
import type { PostgresDb } from './database.ts';
import { messages } from './schema.ts';

export function createPostgresMessageRepository(db: PostgresDb): MessageRepository {
  return {
    async list(query) {
      const conditions: (SQL | undefined)[] = [eq(messages.deviceId, query.deviceId)];
      if (query.channel) conditions.push(eq(messages.channel, query.channel));
      if (query.before) conditions.push(historyBefore(messages, query.before));
      const rows = await db
        .select()
        .from(messages)
        .where(and(...conditions))
        .orderBy(...historyOrder(messages))
        .limit(query.limit);
      return rows.map((row): StoredMessage => ({ ...row, channel: row.channel as Channel }));
    },

    async count(deviceId, msgId) {
      const where = msgId
        ? and(eq(messages.deviceId, deviceId), eq(messages.msgId, msgId))
        : eq(messages.deviceId, deviceId);
      const [row] = await db.select({ n: count() }).from(messages).where(where);
      return row?.n ?? 0;
    },

    async pruneOlderThan(cutoff, limit) {
      const oldest = db
        .select({ id: messages.id })
        .from(messages)
        .where(lt(messages.receivedAt, cutoff))
        .orderBy(asc(messages.id))
        .limit(limit);
      const deleted = await db.delete(messages).where(inArray(messages.id, oldest)).returning({ id: messages.id });
      return deleted.length;
    },

    async telemetrySamples({ from, to }) {
      const rows = await db
        .select({ deviceId: messages.deviceId, receivedAt: messages.receivedAt, body: messages.body })
        .from(messages)
        .where(and(eq(messages.channel, 'telemetry'), gte(messages.receivedAt, from), lte(messages.receivedAt, to)));
      return rows.map((row) => parseTelemetrySample(row.deviceId, row.receivedAt, extractSampleFields(row.body)));
    },
  };
}
