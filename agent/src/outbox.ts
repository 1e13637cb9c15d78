import type { DeviceToCloudChannel } from '@edgeloop/protocol';
import { MAX_PAYLOAD_BYTES } from '@edgeloop/protocol';

/*
 * The durable outbox: every device -> cloud message is appended here BEFORE it is sent and leaves
 * only when the broker acknowledged it (PUBACK). This module is the in-memory core; storage is a
 * pluggable journal (`outbox-file.ts` for the agent, none for the simulator's lean memory mode).
 *
 * Lanes and sending order: `control` (status, reported, reply), then `events`, then `telemetry`;
 * FIFO within a lane. The control plane orders a device's messages by (bootId, seq), not by
 * arrival, so priority sending loses no ordering information.
 *
 * Byte bound and drop policy (never blocks the caller). The bound counts every message not yet
 * acknowledged (payload bytes + msgId + ENTRY_OVERHEAD_BYTES). When an append does not fit:
 *   1. the oldest telemetry is dropped first;
 *   2. only when no telemetry is left, the oldest events are dropped;
 *   3. control messages are dropped last.
 * An incoming message never evicts a message of a more important lane than its own: incoming
 * telemetry may evict only telemetry (when none is left to evict, the incoming telemetry itself
 * is the one dropped), incoming events evict telemetry then events, incoming control evicts
 * anything. Messages in flight (sent, awaiting PUBACK) are never evicted. A message larger than
 * the protocol's MAX_PAYLOAD_BYTES or than maxBytes is refused. Every drop is counted per lane
 * (`stats().dropped`), so the agent can report it in an `outbox.dropped` event.
 */

export const LANES = ['control', 'events', 'telemetry'] as const;
export type Lane = (typeof LANES)[number];

/** Fixed per-message overhead counted against maxBytes (record header and bookkeeping). */
export const ENTRY_OVERHEAD_BYTES = 16;

export function laneOf(channel: DeviceToCloudChannel): Lane {
  switch (channel) {
    case 'telemetry':
      return 'telemetry';
    case 'events':
      return 'events';
    default:
      return 'control';
  }
}

/** One message waiting in the outbox, as the link sends it. */
export interface OutboxEntry {
  readonly msgId: string;
  readonly lane: Lane;
  readonly channel: DeviceToCloudChannel;
  /** The encoded message (JSON text). */
  readonly payload: string;
  readonly retain: boolean;
  /** Bytes counted against maxBytes. */
  readonly bytes: number;
}

export type AppendInput = {
  readonly channel: DeviceToCloudChannel;
  readonly msgId: string;
  readonly payload: string;
  /** Defaults to the channel's lane. */
  readonly lane?: Lane;
  readonly retain?: boolean;
};

export type AppendResult = {
  /** False when the message itself was dropped (too large, no room, outbox closed). */
  readonly accepted: boolean;
  /** Older messages dropped to make room. */
  readonly evicted: number;
};

export type LaneCounts = { control: number; events: number; telemetry: number };

export type JournalStats = {
  readonly diskBytes: number;
  readonly segments: number;
  readonly compactions: number;
  readonly writeErrors: number;
  readonly fsyncs: number;
};

export type OutboxStats = {
  /** Messages not yet acknowledged (waiting or in flight). */
  readonly pending: number;
  readonly pendingBytes: number;
  readonly inflight: number;
  readonly maxBytes: number;
  readonly lanes: Readonly<Record<Lane, { readonly entries: number; readonly bytes: number }>>;
  readonly appended: number;
  readonly acked: number;
  /** Messages dropped by the bound, per lane, since the outbox was opened. */
  readonly dropped: Readonly<LaneCounts>;
  readonly journal?: JournalStats;
};

/** Storage under the outbox core: told about every change, in order. */
export interface OutboxJournal {
  append(entry: OutboxEntry): void;
  ack(msgId: string): void;
  drop(msgId: string): void;
  /** Called after changes; may rewrite storage from the live entries (compaction). */
  maintain(live: () => Iterable<OutboxEntry>, pendingBytes: number): void;
  stats(): JournalStats;
  close(): void;
}

export interface Outbox {
  append(input: AppendInput): AppendResult;
  /**
   * Up to `limit` waiting messages in sending order (control, events, telemetry; FIFO within a
   * lane). They are marked in flight until `ack`, `release` or `requeueInflight`.
   */
  nextBatch(limit: number): OutboxEntry[];
  /** The broker acknowledged this in-flight message: it leaves the outbox. */
  ack(msgId: string): boolean;
  /** Puts one in-flight message back to waiting (its publish failed). */
  release(msgId: string): boolean;
  /** Puts every in-flight message back to waiting (the connection was lost). */
  requeueInflight(): number;
  /** Every message not yet acknowledged, lane by lane in sending order. */
  entries(): IterableIterator<OutboxEntry>;
  /** Messages not yet acknowledged (waiting or in flight); cheaper than stats(). */
  readonly pending: number;
  stats(): OutboxStats;
  close(): void;
}

export type OutboxDeps = {
  readonly maxBytes: number;
  readonly journal?: OutboxJournal;
  /** Messages recovered from storage (already stored: not journalled again). */
  readonly restored?: Iterable<Omit<OutboxEntry, 'bytes'>>;
};

const WAITING = 0;
const INFLIGHT = 1;
const DONE = 2;

type Slot = {
  readonly msgId: string;
  readonly lane: Lane;
  readonly channel: DeviceToCloudChannel;
  readonly payload: string;
  readonly retain: boolean;
  readonly bytes: number;
  state: number;
};

type LaneQueue = {
  items: Slot[];
  /** Index of the first slot that is not done. */
  head: number;
  /** Every waiting slot lies at or after this index. */
  cursor: number;
  entries: number;
  bytes: number;
  inflightBytes: number;
};

function newLane(): LaneQueue {
  return { items: [], head: 0, cursor: 0, entries: 0, bytes: 0, inflightBytes: 0 };
}

export function entryBytes(msgId: string, payload: string): number {
  return Buffer.byteLength(payload) + msgId.length + ENTRY_OVERHEAD_BYTES;
}

/** Lanes an incoming message of `lane` may evict from, in eviction order. */
const EVICTABLE: Readonly<Record<Lane, readonly Lane[]>> = {
  telemetry: ['telemetry'],
  events: ['telemetry', 'events'],
  control: ['telemetry', 'events', 'control'],
};

/**
 * The outbox core. With no journal it is the lean memory-backed outbox of the simulator.
 * A class rather than closures: thousands of simulated devices share its methods.
 */
export function createOutbox(deps: OutboxDeps): Outbox {
  return new OutboxCore(deps);
}

class OutboxCore implements Outbox {
  readonly #maxBytes: number;
  readonly #journal: OutboxJournal | undefined;
  readonly #lanes: Record<Lane, LaneQueue> = { control: newLane(), events: newLane(), telemetry: newLane() };
  readonly #inflight = new Map<string, Slot>();
  readonly #dropped: LaneCounts = { control: 0, events: 0, telemetry: 0 };
  #totalBytes = 0;
  #totalEntries = 0;
  #appended = 0;
  #acked = 0;
  #closed = false;

  constructor(deps: OutboxDeps) {
    this.#maxBytes = deps.maxBytes;
    this.#journal = deps.journal;
    if (deps.restored) {
      for (const entry of deps.restored) {
        this.#push({ ...entry, bytes: entryBytes(entry.msgId, entry.payload), state: WAITING });
      }
      // A smaller maxBytes than the stored messages need: apply the drop policy now.
      while (
        this.#totalBytes > this.#maxBytes &&
        (this.#evictOldest('telemetry') || this.#evictOldest('events') || this.#evictOldest('control'))
      ) {
        // evicting
      }
      this.#maintain();
    }
  }

  #push(slot: Slot): void {
    const queue = this.#lanes[slot.lane];
    queue.items.push(slot);
    queue.entries += 1;
    queue.bytes += slot.bytes;
    this.#totalBytes += slot.bytes;
    this.#totalEntries += 1;
  }

  #finish(slot: Slot): void {
    const queue = this.#lanes[slot.lane];
    if (slot.state === INFLIGHT) {
      this.#inflight.delete(slot.msgId);
      queue.inflightBytes -= slot.bytes;
    }
    slot.state = DONE;
    queue.entries -= 1;
    queue.bytes -= slot.bytes;
    this.#totalBytes -= slot.bytes;
    this.#totalEntries -= 1;
    while (queue.head < queue.items.length && queue.items[queue.head]!.state === DONE) queue.head += 1;
    if (queue.head === queue.items.length) {
      queue.items = [];
      queue.head = 0;
      queue.cursor = 0;
    } else if (queue.head >= 64 && queue.head * 2 >= queue.items.length) {
      queue.items = queue.items.slice(queue.head);
      queue.cursor = Math.max(0, queue.cursor - queue.head);
      queue.head = 0;
    }
  }

  #evictOldest(lane: Lane): boolean {
    const queue = this.#lanes[lane];
    for (let i = queue.head; i < queue.items.length; i += 1) {
      const slot = queue.items[i]!;
      if (slot.state !== WAITING) continue;
      this.#finish(slot);
      this.#dropped[lane] += 1;
      this.#journal?.drop(slot.msgId);
      return true;
    }
    return false;
  }

  /** Makes room for `bytes` on behalf of `lane`; false when even eviction cannot. */
  #makeRoom(lane: Lane, bytes: number): { fits: boolean; evicted: number } {
    if (this.#totalBytes + bytes <= this.#maxBytes) return { fits: true, evicted: 0 };
    const allowed = EVICTABLE[lane];
    let evictable = 0;
    for (const candidate of allowed) {
      evictable += this.#lanes[candidate].bytes - this.#lanes[candidate].inflightBytes;
    }
    if (this.#totalBytes - evictable + bytes > this.#maxBytes) return { fits: false, evicted: 0 };
    let evicted = 0;
    for (const candidate of allowed) {
      while (this.#totalBytes + bytes > this.#maxBytes && this.#evictOldest(candidate)) evicted += 1;
      if (this.#totalBytes + bytes <= this.#maxBytes) break;
    }
    return { fits: this.#totalBytes + bytes <= this.#maxBytes, evicted };
  }

  #maintain(): void {
    this.#journal?.maintain(() => this.entries(), this.#totalBytes);
  }

  append(input: AppendInput): AppendResult {
    const lane = input.lane ?? laneOf(input.channel);
    if (this.#closed) {
      this.#dropped[lane] += 1;
      return { accepted: false, evicted: 0 };
    }
    const bytes = entryBytes(input.msgId, input.payload);
    if (bytes - input.msgId.length - ENTRY_OVERHEAD_BYTES > MAX_PAYLOAD_BYTES || bytes > this.#maxBytes) {
      this.#dropped[lane] += 1;
      return { accepted: false, evicted: 0 };
    }
    const room = this.#makeRoom(lane, bytes);
    if (!room.fits) {
      this.#dropped[lane] += 1;
      return { accepted: false, evicted: room.evicted };
    }
    const slot: Slot = {
      msgId: input.msgId,
      lane,
      channel: input.channel,
      payload: input.payload,
      retain: input.retain ?? false,
      bytes,
      state: WAITING,
    };
    this.#push(slot);
    this.#appended += 1;
    this.#journal?.append(slot);
    this.#maintain();
    return { accepted: true, evicted: room.evicted };
  }

  nextBatch(limit: number): OutboxEntry[] {
    const batch: OutboxEntry[] = [];
    if (this.#closed) return batch;
    for (const lane of LANES) {
      const queue = this.#lanes[lane];
      while (batch.length < limit && queue.cursor < queue.items.length) {
        const slot = queue.items[queue.cursor]!;
        queue.cursor += 1;
        if (slot.state !== WAITING) continue;
        slot.state = INFLIGHT;
        queue.inflightBytes += slot.bytes;
        this.#inflight.set(slot.msgId, slot);
        batch.push(slot);
      }
      if (batch.length >= limit) break;
    }
    return batch;
  }

  ack(msgId: string): boolean {
    const slot = this.#inflight.get(msgId);
    if (!slot) return false;
    this.#finish(slot);
    this.#acked += 1;
    this.#journal?.ack(msgId);
    this.#maintain();
    return true;
  }

  release(msgId: string): boolean {
    const slot = this.#inflight.get(msgId);
    if (!slot) return false;
    this.#inflight.delete(msgId);
    slot.state = WAITING;
    const queue = this.#lanes[slot.lane];
    queue.inflightBytes -= slot.bytes;
    queue.cursor = queue.head;
    return true;
  }

  requeueInflight(): number {
    const count = this.#inflight.size;
    for (const slot of this.#inflight.values()) slot.state = WAITING;
    this.#inflight.clear();
    for (const lane of LANES) {
      const queue = this.#lanes[lane];
      queue.inflightBytes = 0;
      queue.cursor = queue.head;
    }
    return count;
  }

  *entries(): IterableIterator<OutboxEntry> {
    for (const lane of LANES) {
      const queue = this.#lanes[lane];
      for (let i = queue.head; i < queue.items.length; i += 1) {
        const slot = queue.items[i]!;
        if (slot.state !== DONE) yield slot;
      }
    }
  }

  stats(): OutboxStats {
    const lanes = {} as Record<Lane, { entries: number; bytes: number }>;
    for (const lane of LANES) lanes[lane] = { entries: this.#lanes[lane].entries, bytes: this.#lanes[lane].bytes };
    const base = {
      pending: this.#totalEntries,
      pendingBytes: this.#totalBytes,
      inflight: this.#inflight.size,
      maxBytes: this.#maxBytes,
      lanes,
      appended: this.#appended,
      acked: this.#acked,
      dropped: { ...this.#dropped },
    };
    return this.#journal ? { ...base, journal: this.#journal.stats() } : base;
  }

  /** Messages not yet acknowledged (cheaper than stats() for polling). */
  get pending(): number {
    return this.#totalEntries;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#journal?.close();
  }
}

/** The simulator's outbox: the same core and policy, no storage. */
export function createMemoryOutbox(deps: { readonly maxBytes: number }): Outbox {
  return createOutbox({ maxBytes: deps.maxBytes });
}
