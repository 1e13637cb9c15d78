import {
  type DeviceEvent,
  type DeviceToCloudChannel,
  type MessageOf,
  type Reply,
  Reported as ReportedSchema,
  type Telemetry,
  Telemetry as TelemetrySchema,
} from '@edgeloop/protocol';
import type { HealthConfig } from './config.ts';
import { LIVE_KEYS } from './db/live-rows.ts';
import type {
  DeviceLiveState,
  DeviceLiveWrite,
  LoadedLiveState,
  NewDeadLetter,
  NewMessage,
  PromotedBoot,
  StoredOfBoot,
} from './db/repositories.ts';
import {
  applyConnection,
  applyReported,
  applySignOfLife,
  applySilence,
  applyStatus,
  applyTelemetry,
  type StatusChange,
} from './device-state.ts';
import { type BusEvents, type StatusCause, statusEventType } from './events.ts';
import {
  assessHealth,
  type ConnectionHealthReason,
  digestTelemetry,
  sameAssessment,
  silenceLimitMs,
  type TelemetryDigest,
} from './health.ts';

/*
 * What one ingest batch does to the fleet's live state, as a pure fold:
 *
 *   applyBatch(live, entries, now, thresholds) -> { next states, device writes, message rows,
 *                                                   dead letters, events, post-commit announcements }
 *
 * No I/O, no clock, no metrics: the queue (ingest.ts) decodes, counts, commits and calls back;
 * this decides. The input states are never changed: a device the batch touches is copied once
 * (its arrays are replaced, never mutated, by device-state.ts) and the copy is the next state,
 * which the queue installs only once the commit succeeded, so a failed commit needs no undo.
 *
 * Each device -> cloud channel has its handler in HANDLERS, typed `satisfies { [C in channel]:
 * Handler<C> }`: a channel added to @edgeloop/protocol does not compile until it is handled here.
 *
 * The same fold runs a second time inside a commit when another writer (a replica on the same
 * PostgreSQL database) changed a device's row since this writer read it: refoldOnto() applies the
 * batch's entries of those devices to the rows as stored (locked), so the ordering rules of
 * device-state.ts decide on the newest state whoever wrote it. And where the batch made a boot
 * current (`promoted`), the commit finds that boot's newest telemetry / reported stored before
 * (promotedBoots) and applyStoredOfBoots() applies them through the same handlers.
 */

/** A device as the fold sees it: its live state and a digest of its latest telemetry (health). */
export type LiveDevice = { readonly state: DeviceLiveState; readonly digest: TelemetryDigest | null };

/** The fleet before the batch, and what the broker knows of each device's connection. */
export type LiveView = {
  readonly devices: ReadonlyMap<string, LiveDevice>;
  /** Whether a device has a live MQTT session on this control plane's broker. */
  isConnected(deviceId: string): boolean;
  /** Health reasons the MQTT front knows of (auth-failing, client-id-flapping). */
  connectionReasons(deviceId: string): readonly ConnectionHealthReason[];
};

export type FoldThresholds = {
  readonly health: HealthConfig;
  /** A device ts more than this after the receive time is stored with clockSkew. */
  readonly clockSkewMaxMs: number;
  /** Devices one sweep changes at most; the rest wait for the next sweep. */
  readonly sweepLimit: number;
};

/** A payload validated by the queue: the message and its text, or the dead letter saying why not. */
export type Decoded =
  | { readonly ok: true; readonly message: MessageOf<DeviceToCloudChannel>; readonly body: string }
  | { readonly ok: false; readonly letter: NewDeadLetter };

export type FoldEntry =
  | {
      readonly kind: 'message';
      readonly deviceId: string;
      readonly channel: DeviceToCloudChannel;
      readonly receivedAt: number;
      readonly liveSession: boolean;
      readonly decoded: Decoded;
      /** Sent recently (the queue's dedupe cache): not stored again, a sign of life only. */
      readonly resent: boolean;
    }
  | { readonly kind: 'dead'; readonly letter: NewDeadLetter }
  | { readonly kind: 'connection'; readonly deviceId: string; readonly connected: boolean; readonly at: number }
  | { readonly kind: 'sweep' }
  | { readonly kind: 'barrier' };

type FoldEventType = 'device.online' | 'device.offline' | 'device.health' | 'device.reported';
/** A bus event the batch causes, published after its commit. */
export type FoldEvent = { [T in FoldEventType]: { readonly type: T; readonly data: BusEvents[T] } }[FoldEventType];

/** What a stored message makes known after the commit (not a duplicate). */
export type Announcement =
  | { readonly kind: 'event'; readonly deviceId: string; readonly event: DeviceEvent }
  | { readonly kind: 'reply'; readonly deviceId: string; readonly reply: Reply }
  | {
      readonly kind: 'telemetry';
      readonly deviceId: string;
      readonly telemetry: Telemetry;
      readonly receivedAt: number;
    };

/** One message row to insert, with what its channel announces once it is stored. */
export type StoredMessage = {
  readonly channel: DeviceToCloudChannel;
  readonly announce: Announcement | null;
};

export type FoldResult = {
  /** The next live state of every device the batch touched (inputs left as they were). */
  readonly next: ReadonlyMap<string, LiveDevice>;
  /** One write per touched device, in the order first touched. */
  readonly writes: readonly DeviceLiveWrite[];
  readonly messages: readonly NewMessage[];
  /** Parallel to `messages`. */
  readonly stored: readonly StoredMessage[];
  /** Channels of resends the dedupe cache skipped (duplicates once the batch commits). */
  readonly resent: readonly DeviceToCloudChannel[];
  readonly deadLetters: readonly NewDeadLetter[];
  /** Reasons of the payloads that failed validation in this batch (each is also a dead letter). */
  readonly rejected: readonly string[];
  /** Messages of devices not (or no longer) enrolled: not stored. */
  readonly unknownDevice: number;
  readonly events: readonly FoldEvent[];
  /** Devices whose current boot the batch changed (a birth or will of an unseen boot): id -> boot. */
  readonly promoted: ReadonlyMap<string, string>;
};

/** A device's changes within one fold (a copy of its state, the documents to store). */
type Touched = {
  /** The current boot before the batch. */
  readonly bootBefore: string | null;
  state: DeviceLiveState;
  digest: TelemetryDigest | null;
  telemetry?: unknown;
  reported?: unknown;
};

/** What a handler may do besides changing its device: status changes and events, counted in the fold. */
type FoldOut = {
  readonly thresholds: FoldThresholds;
  noteStatus(device: LiveDevice, change: StatusChange | null, cause: StatusCause): void;
  emit(event: FoldEvent): void;
};

type Arrival = { readonly receivedAt: number; readonly liveSession: boolean };

/** What a channel's messages do to their device, and what a stored one announces after the commit. */
type Handler<C extends DeviceToCloudChannel> = {
  apply(device: Touched, message: MessageOf<C>, arrival: Arrival, out: FoldOut): void;
  announce(deviceId: string, message: MessageOf<C>, receivedAt: number): Announcement | null;
};

const HANDLERS = {
  status: {
    apply(device, status, arrival, out) {
      out.noteStatus(device, applyStatus(device.state, status, arrival), status.reason);
    },
    announce: () => null,
  },
  telemetry: {
    apply(device, telemetry, { receivedAt }, out) {
      if (applyTelemetry(device.state, telemetry, receivedAt)) {
        device.digest = digestTelemetry(telemetry, out.thresholds.health);
        device.telemetry = telemetry;
      }
    },
    announce: (deviceId, telemetry, receivedAt) => ({ kind: 'telemetry', deviceId, telemetry, receivedAt }),
  },
  reported: {
    apply(device, reported, { receivedAt }, out) {
      if (applyReported(device.state, reported, receivedAt)) {
        device.reported = reported;
        out.emit({ type: 'device.reported', data: { deviceId: device.state.id, reported } });
      }
    },
    announce: () => null,
  },
  events: {
    apply: (device, _event, { receivedAt }) => applySignOfLife(device.state, receivedAt),
    announce: (deviceId, event) => ({ kind: 'event', deviceId, event }),
  },
  reply: {
    apply: (device, _reply, { receivedAt }) => applySignOfLife(device.state, receivedAt),
    announce: (deviceId, reply) => ({ kind: 'reply', deviceId, reply }),
  },
} satisfies { [C in DeviceToCloudChannel]: Handler<C> };

/**
 * The handler of a channel, for a message decoded by that channel's schema. TypeScript cannot
 * relate a runtime channel to its message type; decode(channel, ...) guarantees the pair.
 */
function handlerOf(channel: DeviceToCloudChannel): Handler<DeviceToCloudChannel> {
  return HANDLERS[channel] as Handler<DeviceToCloudChannel>;
}

function currentBoot(state: DeviceLiveState): string | null {
  return state.bootIds[state.bootIds.length - 1] ?? null;
}

/** A device clock before this (2020-01-01T00:00:00Z) has not been set: no agent ran before it. */
export const CLOCK_FLOOR_MS = Date.UTC(2020, 0, 1);

/** The default of --clock-skew-max-s: one day. */
export const DEFAULT_CLOCK_SKEW_MAX_MS = 86_400_000;

/**
 * Whether a device's ts cannot be trusted as a time: beyond the receive time plus the allowed skew,
 * or before 2020 (a clock that was never set). Such a row is stored with clockSkew; its ts stays data.
 */
export function isClockSkewed(deviceTs: number, receivedAt: number, maxSkewMs: number): boolean {
  return deviceTs > receivedAt + maxSkewMs || deviceTs < CLOCK_FLOOR_MS;
}

/** The fold of one batch, an entry at a time (the queue stops taking entries when its turn is spent). */
export type Fold = {
  apply(entry: FoldEntry): void;
  result(): FoldResult;
};

export function startFold(live: LiveView, now: number, thresholds: FoldThresholds): Fold {
  const touched = new Map<string, Touched>();
  const messages: NewMessage[] = [];
  const stored: StoredMessage[] = [];
  const resent: DeviceToCloudChannel[] = [];
  const deadLetters: NewDeadLetter[] = [];
  const rejected: string[] = [];
  const events: FoldEvent[] = [];
  let unknownDevice = 0;

  /** The device as the batch has left it so far (not copied). */
  const current = (id: string): LiveDevice | undefined => touched.get(id) ?? live.devices.get(id);

  /** The batch's own copy of a device, made on its first change. */
  const touch = (id: string, device: LiveDevice): Touched => {
    let copy = touched.get(id);
    if (!copy) {
      copy = { bootBefore: currentBoot(device.state), state: { ...device.state }, digest: device.digest };
      touched.set(id, copy);
    }
    return copy;
  };

  const noteStatus = (device: LiveDevice, change: StatusChange | null, cause: StatusCause) => {
    if (!change) return;
    const type = statusEventType(change.to);
    if (!type) return;
    const { state } = device;
    const bootId = currentBoot(state);
    events.push({ type, data: { deviceId: state.id, bootId, cause } });
  };

  /** Reassesses a device's health; a change touches it and is announced. */
  const refreshHealth = (id: string, at: number): boolean => {
    const device = current(id);
    if (!device) return false;
    const { state } = device;
    const next = assessHealth(
      {
        status: state.status,
        telemetry: device.digest,
        telemetryAt: state.telemetryAt,
        telemetryIntervalS: state.telemetryIntervalS,
        connection: live.connectionReasons(id),
      },
      thresholds.health,
      at,
    );
    const previous = { health: state.health, reasons: state.healthReasons };
    if (sameAssessment(previous, next)) return false;
    const copy = touch(id, device).state;
    copy.health = next.health;
    copy.healthReasons = [...next.reasons];
    events.push({
      type: 'device.health',
      data: { deviceId: id, health: next.health, reasons: next.reasons, previous: previous.health },
    });
    return true;
  };

  const out: FoldOut = { thresholds, noteStatus, emit: (event) => events.push(event) };

  const applyMessage = (entry: Extract<FoldEntry, { kind: 'message' }>) => {
    const { deviceId, decoded } = entry;
    const device = current(deviceId);
    if (!device) {
      unknownDevice++;
      return;
    }
    if (!decoded.ok) {
      rejected.push(decoded.letter.reason);
      deadLetters.push(decoded.letter);
      return;
    }
    const copy = touch(deviceId, device);
    if (entry.resent) {
      resent.push(entry.channel);
      applySignOfLife(copy.state, entry.receivedAt);
      return;
    }
    const { message, body } = decoded;
    messages.push({
      deviceId,
      channel: entry.channel,
      msgId: message.msgId,
      bootId: message.bootId,
      seq: message.seq,
      deviceTs: message.ts,
      receivedAt: entry.receivedAt,
      body,
      clockSkew: isClockSkewed(message.ts, entry.receivedAt, thresholds.clockSkewMaxMs),
    });
    const handler = handlerOf(entry.channel);
    stored.push({ channel: entry.channel, announce: handler.announce(deviceId, message, entry.receivedAt) });
    handler.apply(copy, message, entry, out);
    refreshHealth(deviceId, entry.receivedAt);
  };

  const applySweep = () => {
    let changed = 0;
    for (const [id, base] of live.devices) {
      if (changed >= thresholds.sweepLimit) break; // the rest waits for the next sweep
      const { state } = touched.get(id) ?? base;
      let silenced = false;
      if (state.status === 'online' && !live.isConnected(id)) {
        const silentFor = now - (state.lastSeen ?? state.statusChangedAt ?? state.enrolledAt);
        if (silentFor > silenceLimitMs(state.keepaliveS, state.telemetryIntervalS, thresholds.health)) {
          const copy = touch(id, base);
          noteStatus(copy, applySilence(copy.state, now), 'silence');
          silenced = true;
        }
      }
      if (refreshHealth(id, now) || silenced) changed++;
    }
  };

  return {
    apply(entry) {
      switch (entry.kind) {
        case 'message':
          applyMessage(entry);
          break;
        case 'dead':
          deadLetters.push(entry.letter);
          break;
        case 'connection': {
          const device = current(entry.deviceId);
          if (!device) break;
          const copy = touch(entry.deviceId, device);
          noteStatus(
            copy,
            applyConnection(copy.state, entry.connected, entry.at),
            entry.connected ? 'connect' : 'disconnect',
          );
          refreshHealth(entry.deviceId, entry.at);
          break;
        }
        case 'sweep':
          applySweep();
          break;
        case 'barrier':
          break;
      }
    },

    result() {
      const writes: DeviceLiveWrite[] = [];
      const next = new Map<string, LiveDevice>();
      const promoted = new Map<string, string>();
      for (const [id, { bootBefore, state, digest, telemetry, reported }] of touched) {
        next.set(id, { state, digest });
        const boot = currentBoot(state);
        if (boot !== null && boot !== bootBefore) promoted.set(id, boot);
        writes.push({
          state,
          ...(telemetry !== undefined ? { telemetry } : {}),
          ...(reported !== undefined ? { reported } : {}),
        });
      }
      return { next, writes, messages, stored, resent, deadLetters, rejected, unknownDevice, events, promoted };
    },
  };
}

/** The whole batch at once: the pure fold. */
export function applyBatch(
  live: LiveView,
  entries: Iterable<FoldEntry>,
  now: number,
  thresholds: FoldThresholds,
): FoldResult {
  const fold = startFold(live, now, thresholds);
  for (const entry of entries) fold.apply(entry);
  return fold.result();
}

/** A loaded row as the fold's device: its state and the digest of its stored telemetry. */
export function liveDeviceOf(loaded: LoadedLiveState, health: HealthConfig): LiveDevice {
  const { telemetry, ...state } = loaded;
  const parsed = telemetry ? TelemetrySchema.safeParse(telemetry) : null;
  return { state, digest: parsed?.success ? digestTelemetry(parsed.data, health) : null };
}

/** The scalar live-state fields a live write stores (the two lists are compared apart; id and enrolledAt never change). */
const NOT_SCALAR = new Set<string>(['id', 'enrolledAt', 'bootIds', 'healthReasons']);
const SAME_SCALARS = LIVE_KEYS.filter((key) => !NOT_SCALAR.has(key));

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}

/**
 * Whether a stored row still holds what this writer last knew of the device (every field a live
 * write stores; enrolledAt is not one). A difference means another writer changed it since.
 */
export function sameLiveState(stored: DeviceLiveState, known: DeviceLiveState): boolean {
  for (const key of SAME_SCALARS) if (stored[key] !== known[key]) return false;
  return sameList(stored.bootIds, known.bootIds) && sameList(stored.healthReasons, known.healthReasons);
}

/** The devices of a batch whose stored rows differ from the states it was folded from. */
export function staleDevices(live: LiveView, stored: readonly DeviceLiveState[]): string[] {
  const stale: string[] = [];
  for (const row of stored) {
    const known = live.devices.get(row.id);
    if (known && !sameLiveState(row, known.state)) stale.push(row.id);
  }
  return stale;
}

/**
 * The batch folded again for the devices another writer changed, on their rows as stored: the
 * result of `first` with those devices' next states, writes and events replaced. Message rows,
 * dead letters and counts do not depend on the states and stay as they were.
 */
export function refoldOnto(
  first: FoldResult,
  live: LiveView,
  stored: readonly LoadedLiveState[],
  entries: Iterable<FoldEntry>,
  now: number,
  thresholds: FoldThresholds,
): FoldResult {
  const fresh = new Map<string, LiveDevice>();
  for (const row of stored) fresh.set(row.id, liveDeviceOf(row, thresholds.health));
  if (fresh.size === 0) return first;
  const again = applyBatch({ ...live, devices: fresh }, entries, now, thresholds);
  const next = new Map<string, LiveDevice>();
  const writes: DeviceLiveWrite[] = [];
  for (const write of first.writes) {
    const id = write.state.id;
    const refolded = fresh.has(id) ? again.next.get(id) : undefined;
    if (fresh.has(id) && !refolded) {
      // Touched against the stale state, unchanged against the stored one: nothing to write, and
      // the stored row is what the writer should know.
      next.set(id, fresh.get(id) as LiveDevice);
      continue;
    }
    next.set(id, refolded ?? (first.next.get(id) as LiveDevice));
    if (!refolded) writes.push(write);
  }
  for (const write of again.writes) writes.push(write);
  const events = first.events.filter((event) => !fresh.has(event.data.deviceId));
  for (const event of again.events) events.push(event);
  const promoted = new Map([...first.promoted].filter(([id]) => !fresh.has(id)));
  for (const [id, boot] of again.promoted) promoted.set(id, boot);
  return { ...first, next, writes, events, promoted };
}

/**
 * The boots the batch made current, with the seqs of that boot the devices' latest telemetry and
 * reported state already hold: what the commit looks up stored messages past (BootCatchUp).
 */
export function promotedBoots(result: FoldResult): PromotedBoot[] {
  const promoted: PromotedBoot[] = [];
  for (const [deviceId, bootId] of result.promoted) {
    const state = result.next.get(deviceId)?.state;
    // A later entry of the batch (another birth) made yet another boot current: that one counts.
    if (!state || currentBoot(state) !== bootId) continue;
    promoted.push({
      deviceId,
      bootId,
      telemetrySeq: state.telemetryBootId === bootId ? state.telemetrySeq : null,
      reportedSeq: state.reportedBootId === bootId ? state.reportedSeq : null,
    });
  }
  return promoted;
}

/** A stored body as the message of its channel; null when it no longer parses (it was validated once). */
function parseStored(found: StoredOfBoot): MessageOf<'telemetry' | 'reported'> | null {
  let json: unknown;
  try {
    json = JSON.parse(found.body);
  } catch {
    return null;
  }
  const parsed = (found.channel === 'telemetry' ? TelemetrySchema : ReportedSchema).safeParse(json);
  return parsed.success ? parsed.data : null;
}

/**
 * The stored telemetry and reported messages of boots the batch made current, applied on the
 * batch's next states by the same handlers (device-state.ts decides; the store only found them):
 * the result of `first` with those devices' next states, writes and events extended. The messages
 * are not stored or announced again (they were when they arrived).
 */
export function applyStoredOfBoots(
  first: FoldResult,
  live: LiveView,
  found: readonly StoredOfBoot[],
  now: number,
  thresholds: FoldThresholds,
): FoldResult {
  const devices = new Map<string, LiveDevice>();
  const entries: FoldEntry[] = [];
  for (const row of found) {
    const device = first.next.get(row.deviceId);
    const message = parseStored(row);
    if (!device || !message) continue;
    devices.set(row.deviceId, device);
    entries.push({
      kind: 'message',
      deviceId: row.deviceId,
      channel: row.channel,
      receivedAt: row.receivedAt,
      liveSession: live.isConnected(row.deviceId),
      decoded: { ok: true, message, body: row.body },
      resent: false,
    });
  }
  if (entries.length === 0) return first;
  const again = applyBatch({ ...live, devices }, entries, now, thresholds);
  const next = new Map(first.next);
  const writes = first.writes.map((write) => {
    const id = write.state.id;
    const late = again.writes.find((candidate) => candidate.state.id === id);
    const device = again.next.get(id);
    if (device) next.set(id, device);
    return late ? { ...write, ...late } : write;
  });
  return { ...first, next, writes, events: [...first.events, ...again.events] };
}
