import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { DEVICE_TO_CLOUD, type DeviceToCloudChannel } from '@edgeloop/protocol';
import type { OutboxFsync } from './config.ts';
import {
  createOutbox,
  type JournalStats,
  LANES,
  type Lane,
  type Outbox,
  type OutboxEntry,
  type OutboxJournal,
} from './outbox.ts';

/*
 * File storage of the outbox: an append-only log in segment files `segment-<n>.log` under the
 * outbox directory. Pure JavaScript (node:fs, node:zlib), no native module.
 *
 * File layout:   MAGIC (8 bytes "EDGOBX01") then records.
 * Record:        u32le bodyLength | u32le crc32(body) | body
 * Body kinds:    1 APPEND  u8 lane | u8 channel | u8 flags (bit 0: retain) | u8 idLength | msgId | payload
 *                2 ACK     msgId
 *                3 DROP    msgId            (evicted by the byte bound)
 *
 * Replay reads the segments in order: APPEND adds a message unless its msgId is already pending
 * (a compaction copy), ACK and DROP remove it. A record whose length or CRC does not check out is
 * skipped by scanning forward for the next valid record; if none follows, it was a torn tail (a
 * write cut by kill -9 or power loss) and is discarded. Both are counted in `RecoveryStats`.
 *
 * Durability: APPEND records are written with writeSync before `append` returns (so before the
 * link can send them) and fsynced per policy: `always` fsyncs every append, `interval` every
 * fsyncIntervalMs, `never` leaves it to the OS. ACK and DROP records are written at once but only
 * fsynced with the next fsync: losing one in a crash makes a message resend, which the control
 * plane dedupes by msgId.
 *
 * Bounded disk: on open, and whenever the active segment is both larger than compactMinBytes and
 * more than twice the live bytes, the live messages are copied into a new segment, which is
 * fsynced before the older segments are deleted. A crash in between leaves both; replay dedupes.
 * Disk use therefore stays below about max(compactMinBytes, 2 * maxBytes) plus one record.
 */

export const SEGMENT_MAGIC = Buffer.from('EDGOBX01', 'latin1');
const HEADER_BYTES = 8;
const KIND_APPEND = 1;
const KIND_ACK = 2;
const KIND_DROP = 3;
/** No valid record body is larger (protocol payload limit is 256 KiB). */
const MAX_BODY_BYTES = 4 * 1024 * 1024;
const SEGMENT_PATTERN = /^segment-(\d{16})\.log$/;

export type StoredEntry = Omit<OutboxEntry, 'bytes'>;

export type RecoveryStats = {
  readonly segments: number;
  /** Valid records read. */
  readonly records: number;
  /** Records that failed their length/CRC check with valid records after them: skipped. */
  readonly corruptRecords: number;
  /** Bytes skipped around corrupt records. */
  readonly skippedBytes: number;
  /** Bytes of incomplete records at the end of segments (cut writes): discarded. */
  readonly tornTailBytes: number;
  /** Segment files whose header was not recognised: ignored. */
  readonly badSegments: number;
  /** Messages pending after replay. */
  readonly pending: number;
};

type DecodedRecord =
  | { readonly kind: 1; readonly entry: StoredEntry }
  | { readonly kind: 2 | 3; readonly msgId: string };

export type SegmentScan = {
  readonly records: DecodedRecord[];
  readonly corruptRecords: number;
  readonly skippedBytes: number;
  readonly tornTailBytes: number;
  readonly badMagic: boolean;
};

/* ------------------------------------------ encoding ------------------------------------------ */

function encodeRecord(body: Buffer): Buffer {
  const record = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  record.writeUInt32LE(body.length, 0);
  record.writeUInt32LE(crc32(body), 4);
  body.copy(record, HEADER_BYTES);
  return record;
}

export function encodeAppendRecord(entry: StoredEntry): Buffer {
  const idLength = Buffer.byteLength(entry.msgId, 'latin1');
  const payloadLength = Buffer.byteLength(entry.payload);
  const bodyLength = 5 + idLength + payloadLength;
  const record = Buffer.allocUnsafe(HEADER_BYTES + bodyLength);
  record.writeUInt32LE(bodyLength, 0);
  const body = HEADER_BYTES;
  record[body] = KIND_APPEND;
  record[body + 1] = LANES.indexOf(entry.lane);
  record[body + 2] = DEVICE_TO_CLOUD.indexOf(entry.channel);
  record[body + 3] = entry.retain ? 1 : 0;
  record[body + 4] = idLength;
  record.write(entry.msgId, body + 5, 'latin1');
  record.write(entry.payload, body + 5 + idLength, 'utf8');
  record.writeUInt32LE(crc32(record.subarray(body)), 4);
  return record;
}

function encodeIdRecord(kind: number, msgId: string): Buffer {
  const body = Buffer.allocUnsafe(1 + Buffer.byteLength(msgId, 'latin1'));
  body[0] = kind;
  body.write(msgId, 1, 'latin1');
  return encodeRecord(body);
}

function decodeBody(body: Buffer): DecodedRecord | null {
  const kind = body[0];
  if (kind === KIND_APPEND) {
    if (body.length < 5) return null;
    const lane = LANES[body[1]!];
    const channel = DEVICE_TO_CLOUD[body[2]!] as DeviceToCloudChannel | undefined;
    const idLength = body[4]!;
    if (lane === undefined || channel === undefined || idLength === 0 || 5 + idLength > body.length) return null;
    return {
      kind: KIND_APPEND,
      entry: {
        msgId: body.toString('latin1', 5, 5 + idLength),
        lane,
        channel,
        retain: (body[3]! & 1) === 1,
        payload: body.toString('utf8', 5 + idLength),
      },
    };
  }
  if ((kind === KIND_ACK || kind === KIND_DROP) && body.length > 1) {
    return { kind, msgId: body.toString('latin1', 1) };
  }
  return null;
}

function recordAt(buffer: Buffer, offset: number): { record: DecodedRecord; end: number } | null {
  if (buffer.length - offset < HEADER_BYTES + 1) return null;
  const length = buffer.readUInt32LE(offset);
  if (length < 1 || length > MAX_BODY_BYTES) return null;
  const end = offset + HEADER_BYTES + length;
  if (end > buffer.length) return null;
  const kind = buffer[offset + HEADER_BYTES];
  if (kind !== KIND_APPEND && kind !== KIND_ACK && kind !== KIND_DROP) return null;
  const body = buffer.subarray(offset + HEADER_BYTES, end);
  if (crc32(body) !== buffer.readUInt32LE(offset + 4)) return null;
  const record = decodeBody(body);
  return record ? { record, end } : null;
}

/** Reads every valid record of one segment file's bytes. Never throws. */
export function scanSegment(buffer: Buffer): SegmentScan {
  const records: DecodedRecord[] = [];
  if (buffer.length < SEGMENT_MAGIC.length || !buffer.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC)) {
    // A file cut while its header was written is an empty torn segment, anything else is foreign.
    const torn = buffer.length < SEGMENT_MAGIC.length && SEGMENT_MAGIC.subarray(0, buffer.length).equals(buffer);
    return { records, corruptRecords: 0, skippedBytes: 0, tornTailBytes: torn ? buffer.length : 0, badMagic: !torn };
  }
  let offset = SEGMENT_MAGIC.length;
  let corruptRecords = 0;
  let skippedBytes = 0;
  let tornTailBytes = 0;
  while (offset < buffer.length) {
    const found = recordAt(buffer, offset);
    if (found) {
      records.push(found.record);
      offset = found.end;
      continue;
    }
    let next = -1;
    for (let candidate = offset + 1; candidate + HEADER_BYTES < buffer.length; candidate += 1) {
      if (recordAt(buffer, candidate)) {
        next = candidate;
        break;
      }
    }
    if (next === -1) {
      tornTailBytes = buffer.length - offset;
      break;
    }
    corruptRecords += 1;
    skippedBytes += next - offset;
    offset = next;
  }
  return { records, corruptRecords, skippedBytes, tornTailBytes, badMagic: false };
}

/* ------------------------------------------- replay ------------------------------------------- */

function listSegments(dir: string): { number: number; file: string }[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const segments: { number: number; file: string }[] = [];
  for (const name of names) {
    const match = SEGMENT_PATTERN.exec(name);
    if (match) segments.push({ number: Number(match[1]), file: path.join(dir, name) });
  }
  return segments.sort((a, b) => a.number - b.number);
}

function segmentFile(dir: string, number: number): string {
  return path.join(dir, `segment-${String(number).padStart(16, '0')}.log`);
}

type Replay = { entries: StoredEntry[]; recovery: RecoveryStats; lastSegment: number };

function replayDir(dir: string): Replay {
  const segments = listSegments(dir);
  const pending = new Map<string, StoredEntry>();
  let records = 0;
  let corruptRecords = 0;
  let skippedBytes = 0;
  let tornTailBytes = 0;
  let badSegments = 0;
  for (const segment of segments) {
    const scan = scanSegment(readFileSync(segment.file));
    if (scan.badMagic) badSegments += 1;
    records += scan.records.length;
    corruptRecords += scan.corruptRecords;
    skippedBytes += scan.skippedBytes;
    tornTailBytes += scan.tornTailBytes;
    for (const record of scan.records) {
      if (record.kind === KIND_APPEND) {
        if (!pending.has(record.entry.msgId)) pending.set(record.entry.msgId, record.entry);
      } else {
        pending.delete(record.msgId);
      }
    }
  }
  const entries = [...pending.values()];
  return {
    entries,
    recovery: {
      segments: segments.length,
      records,
      corruptRecords,
      skippedBytes,
      tornTailBytes,
      badSegments,
      pending: entries.length,
    },
    lastSegment: segments.at(-1)?.number ?? 0,
  };
}

/**
 * Reads an outbox directory without changing it: the messages still pending (in the order they
 * were stored; FIFO per lane) and what recovery found. For tools and tests (e.g. after SIGKILL).
 */
export function readOutboxDir(dir: string): { entries: StoredEntry[]; recovery: RecoveryStats } {
  const { entries, recovery } = replayDir(dir);
  return { entries, recovery };
}

/* ------------------------------------------- journal ------------------------------------------ */

export type FileOutboxOptions = {
  readonly dir: string;
  readonly maxBytes: number;
  readonly fsync: OutboxFsync;
  readonly fsyncIntervalMs?: number;
  /** The active segment is compacted only once larger than this (default 1 MiB). */
  readonly compactMinBytes?: number;
  /** Called once per write failure (disk full, I/O error); messages stay in memory. */
  readonly onWriteError?: (error: Error) => void;
};

export type FileOutbox = Outbox & { readonly recovery: RecoveryStats; readonly dir: string };

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some filesystems refuse to fsync a directory; the data files are fsynced regardless.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function createFileJournal(options: FileOutboxOptions, firstSegment: number, live: Iterable<StoredEntry>) {
  const dir = options.dir;
  const compactMinBytes = options.compactMinBytes ?? 1024 * 1024;
  let segmentNumber = firstSegment;
  let fd = -1;
  let activeBytes = 0;
  let compactions = 0;
  let writeErrors = 0;
  let fsyncs = 0;
  let dirty = false;
  let interval: ReturnType<typeof setInterval> | undefined;

  function reportError(error: unknown): void {
    writeErrors += 1;
    options.onWriteError?.(error as Error);
  }

  function sync(): void {
    if (fd < 0 || !dirty) return;
    try {
      fsyncSync(fd);
      fsyncs += 1;
      dirty = false;
    } catch (error) {
      reportError(error);
    }
  }

  function write(record: Buffer, durable: boolean): void {
    if (fd < 0) return;
    try {
      writeSync(fd, record);
      activeBytes += record.length;
      dirty = true;
      if (durable && options.fsync === 'always') sync();
    } catch (error) {
      reportError(error);
    }
  }

  /** Writes the live messages into a new segment, then deletes the older segments. */
  function compact(entries: Iterable<StoredEntry>): void {
    const nextNumber = segmentNumber + 1;
    const file = segmentFile(dir, nextNumber);
    const chunks: Buffer[] = [SEGMENT_MAGIC];
    let bytes = SEGMENT_MAGIC.length;
    for (const entry of entries) {
      const record = encodeAppendRecord(entry);
      chunks.push(record);
      bytes += record.length;
    }
    let nextFd = -1;
    try {
      nextFd = openSync(file, 'wx');
      writeSync(nextFd, Buffer.concat(chunks, bytes));
      if (options.fsync !== 'never') fsyncSync(nextFd);
    } catch (error) {
      if (nextFd >= 0) closeSync(nextFd);
      rmSync(file, { force: true });
      reportError(error);
      return;
    }
    if (options.fsync !== 'never') fsyncDir(dir);
    if (fd >= 0) closeSync(fd);
    fd = nextFd;
    segmentNumber = nextNumber;
    activeBytes = bytes;
    dirty = false;
    compactions += 1;
    for (const old of listSegments(dir)) {
      if (old.number < nextNumber) rmSync(old.file, { force: true });
    }
    if (options.fsync !== 'never') fsyncDir(dir);
  }

  compact(live);
  if (fd < 0) throw new Error(`cannot open an outbox segment in ${dir}`);
  if (options.fsync === 'interval') {
    interval = setInterval(sync, options.fsyncIntervalMs ?? 1000);
    interval.unref();
  }

  const journal: OutboxJournal = {
    append(entry) {
      write(encodeAppendRecord(entry), true);
    },
    ack(msgId) {
      write(encodeIdRecord(KIND_ACK, msgId), false);
    },
    drop(msgId) {
      write(encodeIdRecord(KIND_DROP, msgId), false);
    },
    maintain(liveEntries, pendingBytes) {
      if (activeBytes > compactMinBytes && activeBytes > 2 * pendingBytes) compact(liveEntries());
    },
    stats(): JournalStats {
      return { diskBytes: activeBytes, segments: 1, compactions, writeErrors, fsyncs };
    },
    close() {
      if (interval) clearInterval(interval);
      sync();
      if (fd >= 0) closeSync(fd);
      fd = -1;
    },
  };
  return journal;
}

/**
 * Opens (or creates) the file-backed outbox in `dir`: replays the segments, compacts the pending
 * messages into a fresh segment and returns an outbox whose every change is journalled.
 * Throws when the directory cannot be created or written (a startup failure).
 */
export function openFileOutbox(options: FileOutboxOptions): FileOutbox {
  const created = mkdirSync(options.dir, { recursive: true });
  // A new outbox directory must itself survive a power cut.
  if (created !== undefined && options.fsync !== 'never') fsyncDir(path.dirname(path.resolve(options.dir)));
  const { entries, recovery, lastSegment } = replayDir(options.dir);
  const journal = createFileJournal(options, lastSegment, entries);
  const outbox = createOutbox({ maxBytes: options.maxBytes, journal, restored: entries });
  return Object.assign(outbox, { recovery, dir: options.dir });
}

/** Bytes on disk of an outbox directory (every segment). */
export function outboxDiskBytes(dir: string): number {
  return listSegments(dir).reduce((sum, segment) => sum + statSync(segment.file).size, 0);
}

export type { Lane };
