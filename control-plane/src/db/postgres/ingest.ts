import { and, asc, desc, eq, gt, inArray, isNull } from 'drizzle-orm';
import { liveColumnsOf, liveStateOf } from '../live-rows.ts';
import type { DeviceLiveWrite, IngestBatch, IngestRepository, StoredOfBoot } from '../repositories.ts';
import { toLiveState } from '../rows.ts';
import type { PostgresDb } from './database.ts';
import { deadLetters, devices, messages } from './schema.ts';

type Tx = Parameters<Parameters<PostgresDb['transaction']>[0]>[0];

const liveColumns = liveColumnsOf(devices);

/**
 * Several replicas write device rows on one database. The batch's devices are locked first, in
 * id order (two replicas never wait on each other in a cycle), FOR NO KEY UPDATE (what the UPDATE
 * takes anyway; the messages' foreign-key checks, FOR KEY SHARE, do not wait on it). A row that
 * differs from what this writer folded from was written by another replica: it is read whole and
 * the batch's entries of that device are folded again on it (LiveReconcile), under the lock, so
 * the ordering rules decide against the newest state and the UPDATE cannot overwrite it with an
 * older one. Why not one conditional UPDATE per column group: the rules (boots ordered by first
 * sight in a ring, a will last in its session, births and wills that promote a boot, the fallback
 * for statuses without a session) are not a comparison of stored columns; in SQL they would be a
 * second copy of device-state.ts per dialect. The lock gives the same guarantee with one copy.
 */
async function lockedWrites(tx: Tx, batch: IngestBatch): Promise<readonly DeviceLiveWrite[]> {
  const { reconcile } = batch;
  if (!reconcile || batch.devices.length === 0) return batch.devices;
  const ids = batch.devices.map((write) => write.state.id);
  const locked = await tx
    .select(liveColumns)
    .from(devices)
    .where(and(inArray(devices.id, ids), isNull(devices.revokedAt)))
    .orderBy(asc(devices.id))
    .for('no key update');
  const stale = reconcile.stale(locked.map(liveStateOf));
  if (stale.length === 0) return batch.devices;
  const rows = await tx
    .select()
    .from(devices)
    .where(inArray(devices.id, [...stale]));
  return reconcile.refold(rows.map(toLiveState));
}

/**
 * The writes with the telemetry / reported stored earlier of the boots this batch made current
 * (BootCatchUp), read after the batch's messages were inserted and under the rows' locks: the
 * newest of each channel past the seq the device's state holds, one query per channel and device,
 * and only for devices whose boot the batch promoted (a birth), never per message.
 */
async function catchUpWrites(
  tx: Tx,
  batch: IngestBatch,
  writes: readonly DeviceLiveWrite[],
): Promise<readonly DeviceLiveWrite[]> {
  const { lateBoots } = batch;
  const promoted = lateBoots?.promoted() ?? [];
  if (!lateBoots || promoted.length === 0) return writes;
  const found: StoredOfBoot[] = [];
  for (const boot of promoted) {
    for (const channel of ['telemetry', 'reported'] as const) {
      const after = channel === 'telemetry' ? boot.telemetrySeq : boot.reportedSeq;
      const rows = await tx
        .select({ body: messages.body, receivedAt: messages.receivedAt })
        .from(messages)
        .where(
          and(
            eq(messages.deviceId, boot.deviceId),
            eq(messages.channel, channel),
            eq(messages.bootId, boot.bootId),
            after === null ? undefined : gt(messages.seq, after),
          ),
        )
        .orderBy(desc(messages.seq))
        .limit(1);
      const row = rows[0];
      if (row) found.push({ deviceId: boot.deviceId, channel, body: row.body, receivedAt: row.receivedAt });
    }
  }
  return found.length === 0 ? writes : lateBoots.apply(found);
}

/**
 * The ingest writer's one write path on PostgreSQL: one transaction per batch: the devices' rows
 * locked and reconciled with other writers (lockedWrites), messages in one multi-row INSERT ...
 * ON CONFLICT DO NOTHING RETURNING (which rows were new: dedupe is the unique index), then dead
 * letters and one UPDATE per changed device.
 */
export function createPostgresIngestRepository(db: PostgresDb): IngestRepository {
  return {
    async commit(batch) {
      return db.transaction(async (tx) => {
        let writes = await lockedWrites(tx, batch);
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
        writes = await catchUpWrites(tx, batch, writes);
        if (batch.deadLetters.length > 0) await tx.insert(deadLetters).values([...batch.deadLetters]);
        for (const write of writes) {
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
