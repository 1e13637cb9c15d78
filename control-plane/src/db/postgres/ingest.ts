import { and, eq, isNull } from 'drizzle-orm';
import type { IngestRepository } from '../repositories.ts';
import type { PostgresDb } from './database.ts';
import { deadLetters, devices, messages } from './schema.ts';

/**
 * The ingest writer's one write path on PostgreSQL: one transaction per batch, messages in one
 * multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING (which rows were new), then dead letters
 * and one UPDATE per changed device.
 */
export function createPostgresIngestRepository(db: PostgresDb): IngestRepository {
  return {
    async commit(batch) {
      return db.transaction(async (tx) => {
        const inserted = new Array<boolean>(batch.messages.length).fill(false);
        if (batch.messages.length > 0) {
          const returned = await tx
            .insert(messages)
            .values([...batch.messages])
            .onConflictDoNothing()
            .returning({ deviceId: messages.deviceId, msgId: messages.msgId });
          const fresh = new Set(returned.map((row) => `${row.deviceId}\u0000${row.msgId}`));
          // The first occurrence of a key in the batch is the stored one; repeats are duplicates.
          batch.messages.forEach((message, index) => {
            const key = `${message.deviceId}\u0000${message.msgId}`;
            if (fresh.delete(key)) inserted[index] = true;
          });
        }
        if (batch.deadLetters.length > 0) await tx.insert(deadLetters).values([...batch.deadLetters]);
        for (const write of batch.devices) {
          const { state } = write;
          await tx
            .update(devices)
            .set({
              status: state.status,
              statusChangedAt: state.statusChangedAt,
              statusBootId: state.statusBootId,
              statusSeq: state.statusSeq,
              statusSession: state.statusSession,
              bootIds: state.bootIds,
              bootId: state.bootIds[state.bootIds.length - 1] ?? null,
              lastSeen: state.lastSeen,
              agentVersion: state.agentVersion,
              keepaliveS: state.keepaliveS,
              telemetryIntervalS: state.telemetryIntervalS,
              health: state.health,
              healthReasons: state.healthReasons,
              telemetryBootId: state.telemetryBootId,
              telemetrySeq: state.telemetrySeq,
              telemetryAt: state.telemetryAt,
              reportedBootId: state.reportedBootId,
              reportedSeq: state.reportedSeq,
              reportedAt: state.reportedAt,
              ...(write.telemetry !== undefined ? { telemetry: write.telemetry } : {}),
              ...(write.reported !== undefined ? { reported: write.reported } : {}),
            })
            .where(and(eq(devices.id, state.id), isNull(devices.revokedAt)));
        }
        return { inserted };
      });
    },
  };
}
