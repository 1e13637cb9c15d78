import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import { BUS_EVENT_TYPES, type BusEventType, type BusMessage, type EventBus } from './events.ts';
import type { MetricsRegistry } from './metrics.ts';
import type { Timers } from './time.ts';

/*
 * Every replica's events on every replica's SSE stream, through PostgreSQL's LISTEN/NOTIFY: no
 * extra service. Each replica sends the events its own bus publishes on one channel, and hands the
 * other replicas' events to its SSE clients only (bus.relay): the components inside a replica
 * react to its own events, so no event is acted on twice.
 *
 * A NOTIFY payload holds less than 8,000 bytes, so an event goes out as one or more parts
 * `{o: replica, s: seq, p: part, n: parts, d: text}`, all in one statement (one transaction, so
 * delivered together or not at all), and is reassembled by (replica, seq); NOTIFYs of one session
 * arrive in order. What NOTIFY gives is what this gives: every replica listening when the
 * notification commits gets it, in the sender's order; a replica that was away gets nothing it
 * missed (its SSE clients reconnect and read the state from the API, as after any restart).
 *
 * Bad input never stops the relay: a payload that does not parse, names an unknown event type or
 * leaves a part missing is counted and dropped. When the connection fails the relay reconnects
 * every `retryMs`; events published meanwhile wait in a bounded queue (the oldest dropped, counted).
 */

export const EVENT_RELAY_CHANNEL = 'edgeloop_events';
/** Characters of event text per part: three bytes each at the most in UTF-8, under the 8,000-byte limit with the envelope. */
const PART_CHARS = 2_400;
/** Events waiting to be sent while the connection is down. */
const MAX_QUEUED = 10_000;
/** Parts of one event are expected within this long of its first part. */
const REASSEMBLY_MS = 10_000;

type Part = { readonly o: string; readonly s: number; readonly p: number; readonly n: number; readonly d: string };

export type EventRelayDeps = {
  readonly url: string;
  readonly bus: EventBus;
  readonly logger: Logger;
  readonly metrics: MetricsRegistry;
  readonly timers: Timers;
  readonly clock: { now(): number };
  /** This replica's name in the parts it sends; random by default. */
  readonly replicaId?: string;
  readonly channel?: string;
  readonly retryMs?: number;
};

export type EventRelay = {
  /** Connects and listens; resolves once this replica receives the others' events. */
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly replicaId: string;
};

/** An event's text cut into parts of at most PART_CHARS characters, never inside a surrogate pair. */
export function splitParts(text: string, size = PART_CHARS): string[] {
  const parts: string[] = [];
  let from = 0;
  while (from < text.length) {
    let to = Math.min(from + size, text.length);
    const last = text.charCodeAt(to - 1);
    if (to < text.length && last >= 0xd800 && last <= 0xdbff) to--;
    parts.push(text.slice(from, to));
    from = to;
  }
  return parts.length > 0 ? parts : [''];
}

function parsePart(payload: string): Part | null {
  try {
    const value = JSON.parse(payload) as Partial<Part>;
    if (
      typeof value.o === 'string' &&
      Number.isSafeInteger(value.s) &&
      Number.isSafeInteger(value.p) &&
      Number.isSafeInteger(value.n) &&
      typeof value.d === 'string' &&
      value.n! >= 1 &&
      value.p! >= 0 &&
      value.p! < value.n!
    )
      return value as Part;
  } catch {}
  return null;
}

const KNOWN_TYPES = new Set<string>(BUS_EVENT_TYPES);

export function createEventRelay(deps: EventRelayDeps): EventRelay {
  const replicaId = deps.replicaId ?? randomBytes(6).toString('hex');
  const channel = deps.channel ?? EVENT_RELAY_CHANNEL;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) throw new TypeError(`not a channel name: ${channel}`);
  const retryMs = deps.retryMs ?? 1_000;
  const sent = deps.metrics.counter('edgeloop_event_relay_sent_total', 'Events this replica sent to the others');
  const received = deps.metrics.counter(
    'edgeloop_event_relay_received_total',
    "Other replicas' events handed to this replica's SSE clients",
  );
  const dropped = deps.metrics.counter(
    'edgeloop_event_relay_dropped_total',
    'Relayed events dropped, by cause (malformed, unknown-type, incomplete, queue-full, send-failed)',
  );

  let client: pg.Client | null = null;
  let connecting: Promise<void> | null = null;
  let stopped = false;
  let retry: unknown = null;
  let seq = 0;
  const queue: string[][] = [];
  let sending = false;
  const partial = new Map<string, { parts: (string | undefined)[]; have: number; since: number }>();

  const onNotification = (message: pg.Notification) => {
    if (message.channel !== channel || message.payload === undefined) return;
    const part = parsePart(message.payload);
    if (!part) {
      dropped.inc({ cause: 'malformed' });
      return;
    }
    if (part.o === replicaId) return;
    let text: string;
    if (part.n === 1) text = part.d;
    else {
      const key = `${part.o}:${part.s}`;
      let entry = partial.get(key);
      if (!entry) {
        entry = { parts: new Array(part.n), have: 0, since: deps.clock.now() };
        partial.set(key, entry);
      }
      if (entry.parts.length !== part.n) {
        partial.delete(key);
        dropped.inc({ cause: 'malformed' });
        return;
      }
      if (entry.parts[part.p] !== undefined) return;
      entry.parts[part.p] = part.d;
      entry.have++;
      if (entry.have < part.n) return;
      partial.delete(key);
      text = entry.parts.join('');
    }
    let event: { type?: unknown; at?: unknown; data?: unknown };
    try {
      event = JSON.parse(text) as typeof event;
    } catch {
      dropped.inc({ cause: 'malformed' });
      return;
    }
    if (typeof event.type !== 'string' || !KNOWN_TYPES.has(event.type)) {
      dropped.inc({ cause: 'unknown-type' });
      return;
    }
    if (typeof event.at !== 'number' || typeof event.data !== 'object' || event.data === null) {
      dropped.inc({ cause: 'malformed' });
      return;
    }
    received.inc();
    deps.bus.relay({ type: event.type as BusEventType, at: event.at, data: event.data });
  };

  /** Parts whose event never completed (a sender that died between two parts). */
  const sweepPartial = () => {
    const now = deps.clock.now();
    for (const [key, entry] of partial) {
      if (now - entry.since < REASSEMBLY_MS) continue;
      partial.delete(key);
      dropped.inc({ cause: 'incomplete' });
    }
  };

  const connect = async () => {
    const next = new pg.Client({
      connectionString: deps.url,
      application_name: `edgeloop-events:${replicaId}`.slice(0, 63),
    });
    next.on('error', (error) => {
      deps.logger.warn({ err: error }, 'event relay connection failed; reconnecting');
      lose(next);
    });
    next.on('end', () => lose(next));
    next.on('notification', onNotification);
    await next.connect();
    await next.query(`LISTEN ${channel}`);
    if (stopped) {
      await next.end().catch(() => {});
      return;
    }
    client = next;
    void flush();
  };

  const lose = (which: pg.Client) => {
    if (client !== which) return;
    client = null;
    which.end().catch(() => {});
    scheduleReconnect();
  };

  const scheduleReconnect = () => {
    if (stopped || retry !== null) return;
    retry = deps.timers.setInterval(() => {
      sweepPartial();
      if (client || connecting || stopped) return;
      connecting = connect()
        .catch((error: unknown) => deps.logger.warn({ err: error }, 'event relay cannot reach PostgreSQL; retrying'))
        .finally(() => {
          connecting = null;
        });
    }, retryMs);
  };

  /** Sends queued events in order, one part after another, while connected. */
  const flush = async () => {
    if (sending) return;
    sending = true;
    try {
      while (client && queue.length > 0) {
        const parts = queue[0]!;
        try {
          // One statement, so one transaction: the parts of an event are delivered together or not at all.
          const calls = parts.map((_, i) => `pg_notify($1, $${i + 2})`).join(', ');
          await client.query(`SELECT ${calls}`, [channel, ...parts]);
          queue.shift();
          sent.inc();
        } catch (error) {
          // Sent again, whole, once connected again.
          deps.logger.warn({ err: error }, 'event relay could not send; will retry');
          if (client) lose(client);
          break;
        }
      }
    } finally {
      sending = false;
    }
  };

  const unsubscribe = deps.bus.subscribe((message: BusMessage) => {
    if (stopped) return;
    const s = ++seq;
    const texts = splitParts(JSON.stringify({ type: message.type, at: message.at, data: message.data }));
    const parts = texts.map((d, p) => JSON.stringify({ o: replicaId, s, p, n: texts.length, d }));
    if (queue.length >= MAX_QUEUED) {
      queue.shift();
      dropped.inc({ cause: 'queue-full' });
    }
    queue.push(parts);
    void flush();
  });

  return {
    replicaId,
    async start() {
      await connect();
      scheduleReconnect();
    },
    async stop() {
      stopped = true;
      unsubscribe();
      if (retry !== null) deps.timers.clearInterval(retry);
      retry = null;
      await connecting;
      const last = client;
      client = null;
      await last?.end().catch(() => {});
    },
  };
}
