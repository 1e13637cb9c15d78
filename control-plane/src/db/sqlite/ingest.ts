import { and, type DriverValueEncoder, inArray, isNull, Param, Placeholder, sql } from 'drizzle-orm';
import { liveColumnsOf, liveStateOf } from '../live-rows.ts';
import type {
  DeviceLiveState,
  DeviceLiveWrite,
  IngestBatch,
  IngestRepository,
  NewDeadLetter,
  NewMessage,
  StoredOfBoot,
} from '../repositories.ts';
import { toLiveState } from '../rows.ts';
import type { SqliteDb } from './database.ts';
import { deadLetters, devices, messages } from './schema.ts';
import { createWalCheckpointer } from './wal-checkpointer.ts';

const p = (name: string) => sql.placeholder(name);

/** Rows committed before WAL checkpoints move to a worker thread (a quiet store never starts one). */
const CHECKPOINTER_AFTER_ROWS = 5_000;

/** A batch as the statements' positional arguments, in the order they run. */
type EncodedBatch = {
  readonly message: unknown[][];
  readonly deadLetter: unknown[][];
  readonly live: unknown[][];
  readonly telemetry: unknown[][];
  readonly reported: unknown[][];
};

/**
 * A statement drizzle builds from the schema: its SQL, and a function that turns a row into the
 * positional arguments in the order of its placeholders, through each column's encoder as
 * drizzle's fillPlaceholders does (booleans to 0/1, JSON to text; null included). Run on the raw
 * connection, not as drizzle's prepared query: its run() fills the placeholders through generic
 * `is()` checks on every call, 0.4 s of the 2 s the ingest commits took in the profile of
 * bench:ingest part b (150,000 rows). `defaults` stand in for a missing field.
 */
function bindStatement<Row extends object>(
  query: { toSQL(): { sql: string; params: unknown[] } },
  defaults: Partial<Record<keyof Row, unknown>> = {},
): { readonly sql: string; encode(row: Row): unknown[] } {
  const { sql: text, params } = query.toSQL();
  const binders = params.map((param) => {
    const value = param instanceof Param ? param.value : param;
    if (!(value instanceof Placeholder)) throw new Error(`ingest statement has a literal parameter: ${text}`);
    const name = value.name as keyof Row;
    const fallback = defaults[name];
    const encoder = param instanceof Param ? (param.encoder as DriverValueEncoder<unknown, unknown>) : null;
    return (row: Row) => {
      const raw = row[name];
      const field = raw === undefined ? fallback : raw;
      return encoder ? encoder.mapToDriverValue(field) : field;
    };
  });
  return {
    sql: text,
    encode(row) {
      const args = new Array<unknown>(binders.length);
      for (let i = 0; i < binders.length; i++) args[i] = (binders[i] as (row: Row) => unknown)(row);
      return args;
    },
  };
}

export type SqliteIngestRepository = IngestRepository & {
  /** Stops the WAL checkpointer, if it started (the store's close). */
  close(): Promise<void>;
};

/**
 * The ingest writer's one write path. Statements are built once; each batch is one
 * transaction, so a batch is stored entirely or not at all. Once it has committed
 * CHECKPOINTER_AFTER_ROWS rows, WAL checkpoints run on a worker thread (wal-checkpointer.ts),
 * so that no batch commit carries one.
 *
 * The commits themselves stay on this thread. Measured on 2026-12-04 (2 shared cores, load 5-10):
 * with them on a worker thread with its own connection (the batch encoded here, posted, committed
 * there), bench:ingest b/a was 0.66, 0.62, 0.61 in three runs against 0.63, 0.63, 0.72 here, while
 * the largest event-loop delay of part b fell (25-93 ms against 53-196 ms). The structured clone
 * of each batch (postMessage, 7 % of the main thread) and the worker's own commits took more CPU
 * in all (3.4 s instead of 2.0 s for 150,000 rows), on two cores shared with the publishers; and a
 * second writer on the file would make every deferred transaction of the main connection liable
 * to SQLITE_BUSY_SNAPSHOT (a read snapshot SQLite cannot upgrade, without retry).
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

  const message = bindStatement<NewMessage>(
    db
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
      .onConflictDoNothing(),
    { clockSkew: false },
  );

  const deadLetter = bindStatement<NewDeadLetter>(
    db.insert(deadLetters).values({
      receivedAt: p('receivedAt'),
      deviceId: p('deviceId'),
      topic: p('topic'),
      reason: p('reason'),
      detail: p('detail'),
      payloadSize: p('payloadSize'),
      payloadExcerpt: p('payloadExcerpt'),
    }),
  );

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
  type LiveParams = Omit<DeviceLiveState, 'bootIds' | 'healthReasons'> & {
    bootId: string | null;
    bootIds: string;
    healthReasons: string;
  };
  const live = bindStatement<LiveParams>(db.update(devices).set(liveColumns).where(activeDevice));
  const telemetry = bindStatement<{ id: string; telemetry: unknown }>(
    db
      .update(devices)
      .set({ telemetry: p('telemetry') as unknown })
      .where(activeDevice),
  );
  const reported = bindStatement<{ id: string; reported: unknown }>(
    db
      .update(devices)
      .set({ reported: p('reported') as unknown })
      .where(activeDevice),
  );
  const encodeDevices = (writes: readonly DeviceLiveWrite[], into: EncodedBatch) => {
    for (const write of writes) {
      const { state } = write;
      into.live.push(
        live.encode({
          ...state,
          bootIds: JSON.stringify(state.bootIds),
          healthReasons: JSON.stringify(state.healthReasons),
          bootId: state.bootIds[state.bootIds.length - 1] ?? null,
        }),
      );
      if (write.telemetry !== undefined)
        into.telemetry.push(telemetry.encode({ id: state.id, telemetry: write.telemetry }));
      if (write.reported !== undefined) into.reported.push(reported.encode({ id: state.id, reported: write.reported }));
    }
  };
  const encode = (batch: IngestBatch): EncodedBatch => {
    const encoded: EncodedBatch = { message: [], deadLetter: [], live: [], telemetry: [], reported: [] };
    for (const row of batch.messages) encoded.message.push(message.encode(row));
    for (const letter of batch.deadLetters) encoded.deadLetter.push(deadLetter.encode(letter));
    encodeDevices(batch.devices, encoded);
    return encoded;
  };

  /*
   * Another writer on the file (a second process): PRAGMA data_version changes when another
   * connection committed, and only then. The transaction is IMMEDIATE (it holds the write lock
   * from its first statement, so what it reads stays true until it commits). Once the version
   * moved, every device this writer knows may be stale, not only those of the batch that noticed:
   * `verified` then holds the devices whose rows were read or written since the last move, and a
   * batch reads the rows of the others and reconciles them as on PostgreSQL (db/postgres/ingest.ts).
   * With one writer, the usual case, the version never moves and that costs one pragma a batch.
   */
  const dataVersion = db.$client.prepare('PRAGMA data_version').pluck();
  let knownVersion = dataVersion.get();
  /** null: no other connection has committed since start, so every row is as this writer left it. */
  let verified: Set<string> | null = null;
  const liveRow = liveColumnsOf(devices);
  const reconciled = (batch: IngestBatch, encoded: EncodedBatch, moved: boolean): EncodedBatch => {
    const { reconcile } = batch;
    if (!reconcile || (!moved && !verified)) return encoded;
    const ids: string[] = [];
    for (const write of batch.devices) if (moved || !verified?.has(write.state.id)) ids.push(write.state.id);
    if (ids.length === 0) return encoded;
    const rows = db
      .select(liveRow)
      .from(devices)
      .where(and(inArray(devices.id, ids), isNull(devices.revokedAt)))
      .all();
    const stale = reconcile.stale(rows.map(liveStateOf));
    if (stale.length === 0) return encoded;
    const whole = db
      .select()
      .from(devices)
      .where(inArray(devices.id, [...stale]))
      .all();
    const again: EncodedBatch = { ...encoded, live: [], telemetry: [], reported: [] };
    encodeDevices(reconcile.refold(whole.map(toLiveState)), again);
    return again;
  };

  // The newest stored message of a channel of a boot past a seq (-1: any), for BootCatchUp. Not a
  // msgId range of the (device, msgId) index: the protocol does not make msgId start with bootId
  // (only the agent's messageId does), so the rows are found by boot_id, on the device's channel.
  const newestOfBoot = db.$client.prepare<[string, string, string, number], { body: string; receivedAt: number }>(
    `SELECT body, received_at AS receivedAt FROM messages
      WHERE device_id = ? AND channel = ? AND boot_id = ? AND seq > ? ORDER BY seq DESC LIMIT 1`,
  );
  /**
   * After the batch's messages are inserted, in the same IMMEDIATE transaction: the telemetry /
   * reported stored earlier of the boots this batch made current, applied by the batch
   * (BootCatchUp), whose device rows are then encoded again. Only promoted devices pay the lookup.
   */
  const caughtUp = (source: IngestBatch, encoded: EncodedBatch): EncodedBatch => {
    const { lateBoots } = source;
    const promoted = lateBoots?.promoted() ?? [];
    if (!lateBoots || promoted.length === 0) return encoded;
    const found: StoredOfBoot[] = [];
    for (const boot of promoted) {
      for (const channel of ['telemetry', 'reported'] as const) {
        const after = (channel === 'telemetry' ? boot.telemetrySeq : boot.reportedSeq) ?? -1;
        const row = newestOfBoot.get(boot.deviceId, channel, boot.bootId, after);
        if (row) found.push({ deviceId: boot.deviceId, channel, body: row.body, receivedAt: row.receivedAt });
      }
    }
    if (found.length === 0) return encoded;
    const again: EncodedBatch = { ...encoded, live: [], telemetry: [], reported: [] };
    encodeDevices(lateBoots.apply(found), again);
    return again;
  };

  const prepared = {
    message: db.$client.prepare(message.sql),
    deadLetter: db.$client.prepare(deadLetter.sql),
    live: db.$client.prepare(live.sql),
    telemetry: db.$client.prepare(telemetry.sql),
    reported: db.$client.prepare(reported.sql),
  };
  const commitHere = db.$client.transaction((source: IngestBatch, encoded: EncodedBatch) => {
    const version = dataVersion.get();
    let batch = reconciled(source, encoded, version !== knownVersion);
    const inserted = new Array<boolean>(batch.message.length);
    for (let i = 0; i < batch.message.length; i++) inserted[i] = prepared.message.run(batch.message[i]).changes > 0;
    batch = caughtUp(source, batch);
    for (const row of batch.deadLetter) prepared.deadLetter.run(row);
    for (const row of batch.live) prepared.live.run(row);
    for (const row of batch.telemetry) prepared.telemetry.run(row);
    for (const row of batch.reported) prepared.reported.run(row);
    return { inserted, version };
  });

  /** Only once committed: a batch rolled back leaves the writer's states (and what is verified) as they were. */
  const noteCommitted = (batch: IngestBatch, version: unknown) => {
    if (version !== knownVersion) verified = new Set();
    knownVersion = version;
    if (verified) for (const write of batch.devices) verified.add(write.state.id);
  };

  return {
    async commit(batch) {
      const { inserted, version } = commitHere.immediate(batch, encode(batch));
      noteCommitted(batch, version);
      if (committedRows < CHECKPOINTER_AFTER_ROWS) {
        committedRows += batch.messages.length + batch.deadLetters.length;
        if (committedRows >= CHECKPOINTER_AFTER_ROWS) checkpointer.start();
      }
      return { inserted };
    },
    close: () => checkpointer.stop(),
  };
}
