import { sql } from 'drizzle-orm';
import type { DeviceLiveState, IngestRepository } from '../repositories.ts';
import { deadLetters, devices, messages } from '../schema.ts';
import type { SqliteDb } from './database.ts';
import { createWalCheckpointer } from './wal-checkpointer.ts';

const p = (name: string) => sql.placeholder(name);

/** Rows committed before WAL checkpoints move to a worker thread (a quiet store never starts one). */
const CHECKPOINTER_AFTER_ROWS = 5_000;

export type SqliteIngestRepository = IngestRepository & {
  /** Stops the WAL checkpointer, if it started (the store's close). */
  close(): Promise<void>;
};

/**
 * The ingest writer's one write path. Statements are prepared once; each batch is one
 * transaction, so a batch is stored entirely or not at all. Once it has committed
 * CHECKPOINTER_AFTER_ROWS rows, WAL checkpoints run on a worker thread (wal-checkpointer.ts),
 * so that no batch commit carries one.
 */
export function createSqliteIngestRepository(
  db: SqliteDb,
  options: { readonly file?: string; readonly onCheckpointError?: (message: string) => void } = {},
): SqliteIngestRepository {
  const checkpointer = createWalCheckpointer({
    client: db.$client,
    file: options.file ?? db.$client.name,
    ...(options.onCheckpointError ? { onError: options.onCheckpointError } : {}),
  });
  let committedRows = 0;
  const insertMessage = db
    .insert(messages)
    .values({
      deviceId: p('deviceId'),
      channel: p('channel'),
      msgId: p('msgId'),
      bootId: p('bootId'),
      seq: p('seq'),
      deviceTs: p('deviceTs'),
      receivedAt: p('receivedAt'),
      body: p('body'),
      clockSkew: p('clockSkew'),
    })
    .onConflictDoNothing()
    .prepare();

  const insertDeadLetter = db
    .insert(deadLetters)
    .values({
      receivedAt: p('receivedAt'),
      deviceId: p('deviceId'),
      topic: p('topic'),
      reason: p('reason'),
      detail: p('detail'),
      payloadSize: p('payloadSize'),
      payloadExcerpt: p('payloadExcerpt'),
    })
    .prepare();

  // Wrapped as SQL (drizzle's set() does not type bare placeholders): JSON columns get text.
  const q = (name: string) => sql`${p(name)}`;
  const liveColumns = {
    status: q('status'),
    statusChangedAt: q('statusChangedAt'),
    statusBootId: q('statusBootId'),
    statusSeq: q('statusSeq'),
    statusSession: q('statusSession'),
    bootIds: q('bootIds'),
    bootId: q('bootId'),
    lastSeen: q('lastSeen'),
    agentVersion: q('agentVersion'),
    keepaliveS: q('keepaliveS'),
    telemetryIntervalS: q('telemetryIntervalS'),
    health: q('health'),
    healthReasons: q('healthReasons'),
    telemetryBootId: q('telemetryBootId'),
    telemetrySeq: q('telemetrySeq'),
    telemetryAt: q('telemetryAt'),
    reportedBootId: q('reportedBootId'),
    reportedSeq: q('reportedSeq'),
    reportedAt: q('reportedAt'),
  };
  // Revoked devices are never written: a late batch cannot bring back state after a revocation.
  const activeDevice = sql`${devices.id} = ${p('id')} AND ${devices.revokedAt} IS NULL`;
  const updateLive = db.update(devices).set(liveColumns).where(activeDevice).prepare();
  const updateTelemetry = db
    .update(devices)
    .set({ telemetry: p('telemetry') as unknown })
    .where(activeDevice)
    .prepare();
  const updateReported = db
    .update(devices)
    .set({ reported: p('reported') as unknown })
    .where(activeDevice)
    .prepare();

  const liveParams = (state: DeviceLiveState) => ({
    ...state,
    bootIds: JSON.stringify(state.bootIds),
    healthReasons: JSON.stringify(state.healthReasons),
    bootId: state.bootIds[state.bootIds.length - 1] ?? null,
  });

  const commitSync = db.$client.transaction(
    (batch: Parameters<IngestRepository['commit']>[0]): { inserted: boolean[] } => {
      const inserted = batch.messages.map(
        (message) =>
          insertMessage.run(message.clockSkew === undefined ? { ...message, clockSkew: false } : message).changes > 0,
      );
      for (const letter of batch.deadLetters) insertDeadLetter.run(letter);
      for (const write of batch.devices) {
        updateLive.run(liveParams(write.state));
        if (write.telemetry !== undefined) updateTelemetry.run({ id: write.state.id, telemetry: write.telemetry });
        if (write.reported !== undefined) updateReported.run({ id: write.state.id, reported: write.reported });
      }
      return { inserted };
    },
  );

  return {
    async commit(batch) {
      const result = commitSync(batch);
      if (committedRows < CHECKPOINTER_AFTER_ROWS) {
        committedRows += batch.messages.length + batch.deadLetters.length;
        if (committedRows >= CHECKPOINTER_AFTER_ROWS) checkpointer.start();
      }
      return result;
    },
    close: () => checkpointer.stop(),
  };
}
