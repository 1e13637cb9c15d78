import {
  type DeviceToCloudChannel,
  decode,
  type FleetPipelineSummary,
  MAX_PAYLOAD_BYTES,
  type Reply,
  type Status,
  type Telemetry,
} from '@edgeloop/protocol';
import type { Logger } from 'pino';
import {
  type Announcement,
  applyStoredOfBoots,
  DEFAULT_CLOCK_SKEW_MAX_MS,
  type Decoded,
  type FoldEntry,
  type FoldEvent,
  type FoldResult,
  type FoldThresholds,
  type LiveDevice,
  type LiveView,
  liveDeviceOf,
  promotedBoots,
  refoldOnto,
  staleDevices,
  startFold,
} from './apply-batch.ts';
import type { HealthConfig, IngestConfig } from './config.ts';
import type {
  BootCatchUp,
  DeviceLiveState,
  IngestRepository,
  LiveReconcile,
  LoadedLiveState,
  NewDeadLetter,
} from './db/repositories.ts';
import { initialLiveState, isWill } from './device-state.ts';
import type { EventBus } from './events.ts';
import { type ConnectionHealthReason, summarisePipelines } from './health.ts';
import type { MetricsRegistry } from './metrics.ts';
import type { Clock } from './time.ts';

/*
 * The ingest writer: every device -> cloud message passes through here.
 *
 *   offer()  queues the payload with its `done` callback (a payload over MAX_PAYLOAD_BYTES is
 *            dead-lettered at once). The broker holds the publisher's PUBACK (and stops reading
 *            its socket) until `done` runs, which is after the commit.
 *   flush    takes at most `batchSize` entries, validates them (protocol decode: invalid -> dead
 *            letter with the reason, counted by reason), folds them into the live state of their
 *            devices (apply-batch.ts, pure: the next states are installed only after the commit),
 *            and commits messages + dead letters + changed device rows in ONE transaction; then
 *            calls the callbacks and publishes bus events. Batches are
 *            bounded and separated by setImmediate, so a backlog never blocks the event loop for
 *            long (flush durations are a metric). Each turn has a budget (turnBudgetMs, 20 ms): a
 *            flush stops taking rows once it is spent, the batch size adapts to the measured cost
 *            per row, and the acks (each may let the broker parse a socket's next read) are given
 *            in slices of it, oldest first, the rest in the next turn. A (device, msgId) is stored once: the unique
 *            index skips a resend, and a small in-memory cache skips the database for recent ones.
 *   overload above `highWater` queued entries, callbacks of committed entries are parked until
 *            the queue halves, so every publisher is held back; above `hardCap` QoS 0 telemetry
 *            is dropped and counted (reason overload). QoS 1 is never dropped.
 *
 * The writer is also the only writer of device live state (status, health, latest telemetry,
 * reported) in its process: broker connection events and the sweeper go through its queue, so
 * every change is ordered with the messages. See device-state.ts for the ordering rule. Other
 * writers on the same database (replicas) are reconciled inside each commit (LiveReconcile in
 * db/repositories.ts): a device row another writer changed is folded again as stored.
 */

export type IngestOffer = {
  readonly deviceId: string;
  readonly channel: DeviceToCloudChannel;
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly qos: number;
  /** True when the broker publishes this as the device's last will. */
  readonly will: boolean;
  /** Whether the device had a live (connected, not closing) session when this arrived. */
  readonly liveSession: boolean;
};

export type OfferOutcome = 'queued' | 'rejected' | 'dropped';

export type IngestDone = (error?: Error | null) => void;

export type IngestDeps = {
  readonly store: IngestRepository & {
    loadLiveStates(): Promise<LoadedLiveState[]>;
    loadLiveState(id: string): Promise<LoadedLiveState | null>;
  };
  readonly bus: EventBus;
  readonly metrics: MetricsRegistry;
  readonly clock: Clock;
  readonly config: IngestConfig;
  readonly health: HealthConfig;
  readonly logger: Logger;
  /** Whether a device has a live MQTT session on this control plane's broker. */
  readonly isConnected?: (deviceId: string) => boolean;
  /** Called after commit with each newly stored reply (command waiters resolve from it). */
  readonly onReply?: (deviceId: string, reply: Reply) => void;
  /** Called after commit with each newly stored telemetry message (drift accumulates from it; must not throw). */
  readonly onTelemetry?: (deviceId: string, telemetry: Telemetry, receivedAt: number) => void;
  /** Health reasons the MQTT front knows of (auth-failing, client-id-flapping); read at every assessment. */
  readonly connectionReasons?: (deviceId: string) => readonly ConnectionHealthReason[];
  /**
   * While true (the disk is below its watermark) no batch is committed: entries wait in the queue
   * and their publishers get no PUBACK, so devices keep their data in their outboxes. A batch
   * whose commit fails while it is true goes back to the head of the queue instead of failing.
   */
  readonly holdWrites?: () => boolean;
  /** Told of every batch whose commit failed (readiness, the disk monitor), before the hold is read. */
  readonly onFlushError?: (error: Error) => void;
  /**
   * A device ts more than this many milliseconds after the receive time is stored with clockSkew
   * (as is one before 2020). Default one day (--clock-skew-max-s).
   */
  readonly clockSkewMaxMs?: number;
  /**
   * Milliseconds of ingest work per turn of the event loop (default 20): a flush stops taking rows
   * once it is spent (the rest follow in the next turn), the batch size adapts so that decoding and
   * committing a batch fits in it, and the acks after a commit are given in slices of it.
   */
  readonly turnBudgetMs?: number;
  /** Monotonic milliseconds for the turn budget (default performance.now). */
  readonly monotonic?: () => number;
};

export type IngestStats = {
  readonly queueDepth: number;
  readonly accepted: number;
  readonly duplicates: number;
  readonly rejected: number;
  readonly dropped: number;
  readonly flushes: number;
  readonly maxFlushMs: number;
  readonly maxBatchRows: number;
};

export type IngestWriter = {
  start(): Promise<void>;
  /** Stores everything queued, then refuses new work. */
  stop(): Promise<void>;
  offer(offer: IngestOffer, done: IngestDone): OfferOutcome;
  /** Dead-letters a payload the broker refused before decoding (done after commit). */
  deadLetter(
    letter: Omit<NewDeadLetter, 'receivedAt' | 'payloadExcerpt' | 'payloadSize'> & { payload: Uint8Array },
    done?: IngestDone,
  ): void;
  noteConnection(deviceId: string, connected: boolean): void;
  /** Queues one sweep: silent devices go offline, health is recomputed (telemetry-stale). */
  sweep(): void;
  /** Resolves when everything queued before the call is committed. */
  flush(): Promise<void>;
  /** Whether the device is enrolled and active (it has a live state). */
  knows(deviceId: string): boolean;
  addDevice(id: string, enrolledAt: number): void;
  removeDevice(id: string): void;
  liveState(id: string): Readonly<DeviceLiveState> | undefined;
  /** Fleet-wide pipeline numbers from the latest telemetry of every online device. */
  fleetPipeline(): FleetPipelineSummary;
  stats(): IngestStats;
};

type MessageEntry = {
  readonly kind: 'message';
  readonly deviceId: string;
  readonly channel: DeviceToCloudChannel;
  readonly topic: string;
  /**
   * Decoded at flush time, inside the bounded batch, not in the socket read that brought it; or
   * ahead, while the batch before it commits (then `decoded` holds the result).
   */
  readonly payload: Uint8Array;
  readonly receivedAt: number;
  readonly will: boolean;
  readonly liveSession: boolean;
  readonly done: IngestDone | undefined;
  decoded?: Decoded;
};

type Entry =
  | MessageEntry
  | { readonly kind: 'dead'; readonly letter: NewDeadLetter; readonly done: IngestDone | undefined }
  | {
      readonly kind: 'connection';
      readonly deviceId: string;
      readonly connected: boolean;
      readonly at: number;
      readonly done: undefined;
    }
  | { readonly kind: 'sweep'; readonly done: undefined }
  | { readonly kind: 'barrier'; readonly done: IngestDone };

const EXCERPT_BYTES = 1024;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function excerpt(payload: Uint8Array): string {
  return Buffer.from(payload.buffer, payload.byteOffset, Math.min(payload.byteLength, EXCERPT_BYTES)).toString(
    'base64',
  );
}

/** How often a held queue (holdWrites) looks whether it may commit again. */
const HOLD_RETRY_MS = 200;
const DEFAULT_TURN_BUDGET_MS = 20;
/** The adaptive batch never shrinks below this many rows (a commit has a fixed cost). */
const MIN_BATCH_ROWS = 16;

/**
 * The next batch size: the rows that fit the budget at the cost per row just measured, within
 * [MIN_BATCH_ROWS, max]. It grows back at most by half per batch so that one cheap batch does not
 * undo the measurement of an expensive one.
 */
export function adaptBatchLimit(current: number, rows: number, spentMs: number, budgetMs: number, max: number) {
  const floor = Math.min(MIN_BATCH_ROWS, max);
  if (rows <= 0) return current;
  const fits = spentMs > 0 ? Math.floor((budgetMs * rows) / spentMs) : max;
  const next = Math.min(fits, Math.ceil(current * 1.5) + 1, max);
  return Math.max(floor, next);
}

function dedupeKey(deviceId: string, msgId: string): string {
  return `${deviceId}\u0000${msgId}`;
}

export function createIngestWriter(deps: IngestDeps): IngestWriter {
  const { config, clock, bus, logger } = deps;
  const thresholds: FoldThresholds = {
    health: deps.health,
    clockSkewMaxMs: deps.clockSkewMaxMs ?? DEFAULT_CLOCK_SKEW_MAX_MS,
    sweepLimit: config.batchSize,
  };
  const budgetMs = deps.turnBudgetMs ?? DEFAULT_TURN_BUDGET_MS;
  const monotonic = deps.monotonic ?? (() => performance.now());

  const metrics = {
    accepted: deps.metrics.counter('edgeloop_ingest_accepted_total', 'Device messages stored, by channel'),
    duplicates: deps.metrics.counter('edgeloop_ingest_duplicates_total', 'Resent messages skipped (same msgId)'),
    rejected: deps.metrics.counter('edgeloop_ingest_rejected_total', 'Messages dead-lettered, by reason'),
    dropped: deps.metrics.counter('edgeloop_ingest_dropped_total', 'Messages not stored on purpose, by reason'),
    flushErrors: deps.metrics.counter('edgeloop_ingest_flush_errors_total', 'Batches whose commit failed'),
    flushSeconds: deps.metrics.summary('edgeloop_ingest_flush_seconds', 'Duration of one batch commit (seconds)'),
    batchRows: deps.metrics.summary('edgeloop_ingest_batch_rows', 'Entries per batch'),
    reconciled: deps.metrics.counter(
      'edgeloop_ingest_reconciled_total',
      'Device rows another writer (replica) had changed since this one read them, folded again at commit',
    ),
    clockSkew: deps.metrics.counter(
      'edgeloop_ingest_clock_skew_total',
      'Messages stored with clockSkew (device ts beyond the allowed skew, or before 2020), by channel',
    ),
  };
  deps.metrics.gauge('edgeloop_ingest_queue_depth', 'Entries waiting to be stored', () => queue.length);
  deps.metrics.gauge('edgeloop_ingest_parked_callbacks', 'Stored entries whose ack is held back', () => parked.length);
  deps.metrics.gauge(
    'edgeloop_ingest_flush_max_seconds',
    'Longest batch commit since start (seconds)',
    () => maxFlushMs / 1000,
  );
  deps.metrics.gauge(
    'edgeloop_ingest_batch_limit_rows',
    'Rows the next batch takes at most (adapts to the per-turn budget)',
    () => batchLimit,
  );

  const cache = new Map<string, LiveDevice>();
  // The fold reads the cache as the fleet before each batch; it never writes it.
  const view: LiveView = {
    devices: cache,
    isConnected: deps.isConnected ?? (() => false),
    connectionReasons: (deviceId) => deps.connectionReasons?.(deviceId) ?? [],
  };
  // Recently sent keys, oldest first in a ring. Not a Map evicted through keys().next(): V8 leaves
  // a deleted entry as a hole until the table is rebuilt, and that iterator walks every hole, so
  // each eviction cost a scan of up to dedupeCacheSize slots (12 s of 79 in the 2x flood profile).
  const recent = new Set<string>();
  const recentRing: (string | undefined)[] = [];
  let recentHead = 0;
  let queue: Entry[] = [];
  let parked: IngestDone[] = [];
  /** Acks of committed entries not given yet: each can make the broker parse a socket's next read. */
  let acks: IngestDone[] = [];
  let ackImmediate: ReturnType<typeof setImmediate> | null = null;
  /** Rows the next flush takes at most (adapts to the turn budget, <= config.batchSize). */
  let batchLimit = config.batchSize;
  let flushing = false;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let immediate: ReturnType<typeof setImmediate> | null = null;
  /** A commit is under way (awaited): the next batch may be decoded meanwhile (decodeAhead). */
  let committing = false;
  let decodeAheadImmediate: ReturnType<typeof setImmediate> | null = null;
  /** Turns of the event loop that passed while commits were awaited (counted by decodeAhead). */
  let awaitedTurns = 0;
  let stopped = false;
  /** Set by stop(): what is queued is written (or failed) now, held or not. */
  let stopping = false;
  let started = false;
  let maxFlushMs = 0;
  let maxBatchRows = 0;
  let flushes = 0;
  let accepted = 0;
  let duplicates = 0;
  let rejected = 0;
  let dropped = 0;
  const idleWaiters: (() => void)[] = [];

  const rememberSent = (key: string) => {
    if (config.dedupeCacheSize === 0) return;
    if (recent.has(key)) return;
    recent.add(key);
    if (recentRing.length < config.dedupeCacheSize) {
      recentRing.push(key);
      return;
    }
    const oldest = recentRing[recentHead];
    if (oldest !== undefined) recent.delete(oldest);
    recentRing[recentHead] = key;
    recentHead = (recentHead + 1) % config.dedupeCacheSize;
  };

  const schedule = () => {
    if (flushing || queue.length === 0) return;
    // flushIntervalMs 0: flush on the next turn of the event loop, after every socket read in
    // this one was handled (group commit that adapts to load, with no timer latency).
    if (queue.length >= config.batchSize || config.flushIntervalMs === 0) {
      if (timer) {
        clearTimeout(timer);
        timer = null;
      }
      immediate ??= setImmediate(runFlush);
    } else if (!timer && !immediate) {
      timer = setTimeout(runFlush, config.flushIntervalMs);
    }
  };

  const enqueue = (entry: Entry) => {
    queue.push(entry);
    // Arrivals during a commit are decoded in the next turn, not at the flush after it.
    if (committing && entry.kind === 'message') decodeAheadImmediate ??= setImmediate(decodeAhead);
    schedule();
  };

  /** Gives queued acks, oldest first, until the turn that began at `since` spent its budget. */
  const giveAcks = (since: number) => {
    let given = 0;
    while (given < acks.length) {
      if (!stopping && given > 0 && monotonic() - since >= budgetMs) break;
      (acks[given++] as IngestDone)(null);
    }
    acks = given >= acks.length ? [] : acks.slice(given);
    if (acks.length > 0 && !ackImmediate) {
      ackImmediate = setImmediate(() => {
        ackImmediate = null;
        giveAcks(monotonic());
      });
    }
  };

  const ack = (callbacks: readonly IngestDone[], since: number) => {
    for (const done of callbacks) acks.push(done);
    if (!ackImmediate) giveAcks(since);
  };

  const releaseParked = () => {
    if (parked.length === 0 || queue.length > config.highWater / 2) return;
    const release = parked;
    parked = [];
    ack(release, monotonic());
  };

  const toLetter = (
    deviceId: string | null,
    topic: string,
    payload: Uint8Array,
    reason: string,
    detail: string,
  ): NewDeadLetter => ({
    receivedAt: clock.now(),
    deviceId,
    topic,
    reason,
    detail: detail.slice(0, 2048),
    payloadSize: payload.byteLength,
    payloadExcerpt: excerpt(payload),
  });

  const queueDeadLetter = (letter: NewDeadLetter, done: IngestDone | undefined) => {
    rejected++;
    metrics.rejected.inc({ reason: letter.reason });
    enqueue({ kind: 'dead', letter, done });
  };

  /** Validates one payload: the message, or the dead letter saying why not. */
  const decodeEntry = (entry: MessageEntry): Decoded => {
    const reject = (reason: string, detail: string) => ({
      ok: false as const,
      letter: toLetter(entry.deviceId, entry.topic, entry.payload, reason, detail),
    });
    let body: string;
    try {
      body = utf8.decode(entry.payload);
    } catch {
      return reject('invalid_utf8', 'payload is not valid UTF-8');
    }
    const decoded = decode(entry.channel, body);
    if (!decoded.ok) return reject(decoded.error.code, decoded.error.message);
    if (entry.channel === 'status' && entry.will && !isWill(decoded.value as Status)) {
      // A will must say offline / connection-lost: anything else would claim the device is alive.
      return reject('invalid_will', 'a last will must be status offline with reason connection-lost');
    }
    return { ok: true, message: decoded.value, body };
  };

  /**
   * Decodes the payloads the next batch will take, in slices of the turn budget, for as long as a
   * commit is under way. Decoding is pure (no live state is read or changed): what the device's
   * state makes of the message is decided at flush time, in queue order, as before. A store that
   * commits synchronously (SQLite on the main thread) is done before this runs: nothing happens.
   */
  const decodeAhead = () => {
    decodeAheadImmediate = null;
    if (!committing) return;
    awaitedTurns++;
    const since = monotonic();
    const end = Math.min(queue.length, batchLimit);
    for (let i = 0; i < end; i++) {
      const entry = queue[i] as Entry;
      if (entry.kind !== 'message' || entry.decoded) continue;
      if (monotonic() - since >= budgetMs) {
        decodeAheadImmediate = setImmediate(decodeAhead);
        return;
      }
      entry.decoded = decodeEntry(entry);
    }
  };

  const takeBatch = (): Entry[] => {
    const size = Math.min(queue.length, batchLimit);
    const batch = queue.slice(0, size);
    queue = queue.slice(size);
    return batch;
  };

  const runFlush = () => {
    timer = null;
    immediate = null;
    if (flushing) return;
    if (!stopping && queue.length > 0 && deps.holdWrites?.()) {
      timer = setTimeout(runFlush, HOLD_RETRY_MS);
      return;
    }
    flushing = true;
    flushOnce()
      .catch((error: unknown) => logger.error({ err: error }, 'ingest flush failed'))
      .finally(() => {
        flushing = false;
        releaseParked();
        if (queue.length > 0) {
          // setImmediate between batches: sockets, timers and HTTP get their turn.
          if (queue.length >= batchLimit) immediate ??= setImmediate(runFlush);
          else schedule();
        } else {
          for (const resolve of idleWaiters.splice(0)) resolve();
        }
      });
  };

  /** The fold's view of a queued entry (a message is decoded here unless it was ahead). */
  const foldEntry = (entry: Exclude<Entry, MessageEntry>): FoldEntry => {
    switch (entry.kind) {
      case 'dead':
        return { kind: 'dead', letter: entry.letter };
      case 'connection':
        return { kind: 'connection', deviceId: entry.deviceId, connected: entry.connected, at: entry.at };
      case 'sweep':
        return { kind: 'sweep' };
      case 'barrier':
        return { kind: 'barrier' };
    }
  };

  const foldMessage = (entry: MessageEntry): FoldEntry => {
    const decoded = entry.decoded ?? decodeEntry(entry);
    entry.decoded = undefined;
    return {
      kind: 'message',
      deviceId: entry.deviceId,
      channel: entry.channel,
      receivedAt: entry.receivedAt,
      liveSession: entry.liveSession,
      decoded,
      resent: decoded.ok && recent.has(dedupeKey(entry.deviceId, decoded.message.msgId)),
    };
  };

  const announce = (announcement: Announcement) => {
    switch (announcement.kind) {
      case 'event':
        bus.publish('device.event', { deviceId: announcement.deviceId, event: announcement.event });
        break;
      case 'reply':
        deps.onReply?.(announcement.deviceId, announcement.reply);
        break;
      case 'telemetry':
        deps.onTelemetry?.(announcement.deviceId, announcement.telemetry, announcement.receivedAt);
        break;
    }
  };

  const publish = <E extends FoldEvent>(event: E) => bus.publish(event.type, event.data);

  const flushOnce = async () => {
    const taken = takeBatch();
    if (taken.length === 0) return;
    const turnStarted = monotonic();
    const now = clock.now();
    const fold = startFold(view, now, thresholds);
    const folded: FoldEntry[] = [];
    const callbacks: IngestDone[] = [];
    let used = 0;
    for (const entry of taken) {
      // The budget is spent: the rows not taken yet go back to the head of the queue (next turn).
      if (used > 0 && monotonic() - turnStarted >= budgetMs) break;
      used++;
      if (entry.done) callbacks.push(entry.done);
      if (entry.kind === 'message' && !cache.has(entry.deviceId)) {
        // Not enrolled, or revoked since it was queued: not even decoded.
        entry.decoded = undefined;
        dropped++;
        metrics.dropped.inc({ reason: 'revoked' });
        continue;
      }
      const input = entry.kind === 'message' ? foldMessage(entry) : foldEntry(entry);
      folded.push(input);
      fold.apply(input);
    }
    const first = fold.result();
    for (const reason of first.rejected) {
      rejected++;
      metrics.rejected.inc({ reason });
    }
    if (first.unknownDevice > 0) {
      dropped += first.unknownDevice;
      metrics.dropped.inc({ reason: 'revoked' }, first.unknownDevice);
    }

    const batch = used === taken.length ? taken : taken.slice(0, used);
    if (used < taken.length) queue = taken.slice(used).concat(queue);

    // Another writer on the database may have changed a device since this writer read it: the
    // commit folds those devices again on their stored rows, and that result is what is kept.
    let result: FoldResult = first;
    let refolded = 0;
    const reconcile: LiveReconcile = {
      stale: (stored) => staleDevices(view, stored),
      refold: (stored) => {
        refolded = stored.length;
        result = refoldOnto(first, view, stored, folded, now, thresholds);
        return result.writes;
      },
    };
    // A boot made current here may have telemetry / reported stored before its birth (by another
    // replica, while this one held the birth): the commit finds them and they are applied on top.
    const lateBoots: BootCatchUp = {
      promoted: () => promotedBoots(result),
      apply: (found) => {
        result = applyStoredOfBoots(result, view, found, now, thresholds);
        return result.writes;
      },
    };

    const started = performance.now();
    let inserted: readonly boolean[];
    let spentMs = 0;
    let turnsBefore = 0;
    try {
      const commit = deps.store.commit({
        messages: first.messages,
        deadLetters: first.deadLetters,
        devices: first.writes,
        reconcile,
        lateBoots,
      });
      // This turn's own work: a synchronous store has committed by now, a worker or a server has
      // the batch; the wait for it is not the event loop's (the batch size adapts to this).
      spentMs = monotonic() - turnStarted;
      // While it commits (a worker thread, PostgreSQL), the next batch is decoded and validated.
      committing = true;
      turnsBefore = awaitedTurns;
      decodeAheadImmediate ??= setImmediate(decodeAhead);
      try {
        ({ inserted } = await commit);
      } finally {
        committing = false;
      }
    } catch (error) {
      metrics.flushErrors.inc();
      logger.error({ err: error, rows: batch.length }, 'ingest batch could not be stored');
      // Nothing to undo: the fold's states are installed only after a commit (the database is the truth).
      const failure = error instanceof Error ? error : new Error(String(error));
      deps.onFlushError?.(failure);
      if (!stopping && deps.holdWrites?.()) {
        queue = [...batch, ...queue]; // nothing of it was stored: it waits for space with the rest
        return;
      }
      for (const done of callbacks) done(failure);
      return;
    }
    // A device removed while the batch committed stays removed.
    for (const [id, device] of result.next) if (cache.has(id)) cache.set(id, device);
    if (refolded > 0) metrics.reconciled.inc({}, refolded);
    const elapsed = performance.now() - started;
    flushes++;
    metrics.flushSeconds.observe(elapsed / 1000);
    metrics.batchRows.observe(batch.length);
    if (elapsed > maxFlushMs) maxFlushMs = elapsed;
    if (batch.length > maxBatchRows) maxBatchRows = batch.length;
    batchLimit = adaptBatchLimit(batchLimit, batch.length, spentMs, budgetMs, config.batchSize);

    for (const channel of result.resent) {
      duplicates++;
      metrics.duplicates.inc({ channel });
    }
    result.stored.forEach((stored, index) => {
      const row = result.messages[index];
      if (!row) return;
      const key = dedupeKey(row.deviceId, row.msgId);
      if (!inserted[index]) {
        duplicates++;
        metrics.duplicates.inc({ channel: stored.channel });
        rememberSent(key);
        return;
      }
      accepted++;
      metrics.accepted.inc({ channel: stored.channel });
      if (row.clockSkew) metrics.clockSkew.inc({ channel: stored.channel });
      rememberSent(key);
      if (stored.announce) announce(stored.announce);
    });
    for (const letter of result.deadLetters) {
      bus.publish('ingest.rejected', {
        deviceId: letter.deviceId,
        topic: letter.topic,
        reason: letter.reason,
        detail: letter.detail,
      });
    }
    for (const event of result.events) publish(event);

    // Acks: held back while the queue is above the high-water mark (push back on every publisher).
    if (queue.length > config.highWater) {
      for (const done of callbacks) parked.push(done);
    } else {
      // After a commit that took turns of the event loop, the acks have a turn of their own.
      ack(callbacks, awaitedTurns === turnsBefore ? turnStarted : monotonic());
    }
  };

  /* ------------------------------------------ API ------------------------------------------- */

  const flush = (): Promise<void> => {
    if (queue.length === 0 && !flushing && acks.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      if (stopped) {
        idleWaiters.push(resolve);
        return;
      }
      enqueue({ kind: 'barrier', done: () => resolve() });
      // A barrier must not wait for a partly filled batch's timer.
      if (timer) {
        clearTimeout(timer);
        timer = null;
      }
      if (!flushing) immediate ??= setImmediate(runFlush);
    });
  };

  return {
    async start() {
      if (started) return;
      started = true;
      for (const state of await deps.store.loadLiveStates()) cache.set(state.id, liveDeviceOf(state, deps.health));
    },

    async stop() {
      if (stopped) return;
      stopping = true;
      await flush();
      stopped = true;
      if (timer) clearTimeout(timer);
      if (immediate) clearImmediate(immediate);
      if (decodeAheadImmediate) clearImmediate(decodeAheadImmediate);
      timer = null;
      immediate = null;
      decodeAheadImmediate = null;
      if (ackImmediate) clearImmediate(ackImmediate);
      ackImmediate = null;
      const release = [...acks, ...parked];
      acks = [];
      parked = [];
      for (const done of release) done(null);
    },

    offer(offer, done) {
      if (stopped) {
        done(new Error('the control plane is shutting down'));
        return 'rejected';
      }
      const { deviceId, channel, topic, payload } = offer;
      if (payload.byteLength > MAX_PAYLOAD_BYTES) {
        const detail = `payload of ${payload.byteLength} bytes exceeds the limit of ${MAX_PAYLOAD_BYTES} bytes`;
        queueDeadLetter(toLetter(deviceId, topic, payload, 'payload_too_large', detail), done);
        return 'rejected';
      }
      if (queue.length >= config.hardCap && offer.qos === 0 && channel === 'telemetry') {
        dropped++;
        metrics.dropped.inc({ reason: 'overload' });
        done(null);
        return 'dropped';
      }
      enqueue({
        kind: 'message',
        deviceId,
        channel,
        topic,
        payload,
        receivedAt: clock.now(),
        will: offer.will,
        liveSession: offer.liveSession,
        done,
      });
      return 'queued';
    },

    deadLetter(letter, done) {
      if (stopped) {
        done?.(new Error('the control plane is shutting down'));
        return;
      }
      queueDeadLetter(toLetter(letter.deviceId, letter.topic, letter.payload, letter.reason, letter.detail), done);
    },

    noteConnection(deviceId, connected) {
      if (stopped || !cache.has(deviceId)) return;
      enqueue({ kind: 'connection', deviceId, connected, at: clock.now(), done: undefined });
    },

    sweep() {
      if (stopped || queue.some((entry) => entry.kind === 'sweep')) return;
      enqueue({ kind: 'sweep', done: undefined });
    },

    flush,

    knows(deviceId) {
      return cache.has(deviceId);
    },

    addDevice(id, enrolledAt) {
      cache.set(id, { state: initialLiveState(id, enrolledAt), digest: null });
    },

    removeDevice(id) {
      cache.delete(id);
    },

    liveState(id) {
      return cache.get(id)?.state;
    },

    fleetPipeline() {
      return summarisePipelines(
        (function* () {
          for (const { state, digest } of cache.values()) {
            if (state.status === 'online' && digest?.pipeline) yield { ...digest.pipeline, camera: digest.camera };
          }
        })(),
      );
    },

    stats() {
      return {
        queueDepth: queue.length,
        accepted,
        duplicates,
        rejected,
        dropped,
        flushes,
        maxFlushMs,
        maxBatchRows,
      };
    },
  };
}
