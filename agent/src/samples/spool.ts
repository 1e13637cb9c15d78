import { mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { type SampleMetadata, SampleMetadata as SampleMetadataSchema } from '@edgeloop/protocol';
import { type DurableWrite, writeDurably } from './durable-write.ts';

/*
 * The durable sample spool: one file per sample, `<ordinal>-<sha256>.sample`, holding
 *   "ELS1" | u32 BE metadata length | metadata JSON | image bytes
 * written to a temp name, fsynced, renamed, and the directory fsynced (durable-write.ts),
 * so a kill -9 or power loss leaves either the whole sample or a temp file. Opening removes temp
 * files and anything unreadable, and resumes the ordinal after the highest one found. The spool is
 * bounded in bytes: a put past the bound drops the oldest samples first (reported to onDrop).
 */

const MAGIC = Buffer.from('ELS1');
const SUFFIX = '.sample';
const TEMP_PREFIX = '.tmp-';
const NAME = /^(\d{16})-([0-9a-f]{64})\.sample$/;

export type SpoolEntry = {
  readonly name: string;
  readonly ordinal: number;
  readonly sha256: string;
  readonly size: number;
};

export type SpoolRecovery = {
  readonly entries: number;
  readonly bytes: number;
  readonly removedTemp: number;
  readonly removedBad: number;
};

export interface Spool {
  /**
   * Stores a sample durably (async file I/O: the vision loop's thread never waits on a disk);
   * resolves with how many older samples it pushed out (0 or more), or -1 when it alone is too large.
   */
  put(metadata: SampleMetadata, bytes: Uint8Array): Promise<number>;
  /** True when a sample with these bytes is waiting already. */
  has(sha256: string): boolean;
  /** The oldest sample waiting, or null. */
  oldest(): SpoolEntry | null;
  /** Reads a sample; null when it is gone or unreadable (an unreadable one is removed). */
  read(entry: SpoolEntry): Promise<{ metadata: SampleMetadata; bytes: Buffer } | null>;
  remove(entry: SpoolEntry): void;
  setMaxBytes(maxBytes: number): void;
  stats(): { readonly count: number; readonly bytes: number; readonly maxBytes: number };
  readonly recovery: SpoolRecovery;
}

export type SpoolDeps = {
  readonly dir: string;
  readonly maxBytes: number;
  /** Called with each sample pushed out by the byte bound. */
  readonly onDrop?: (entry: SpoolEntry) => void;
  /** fsync file and directory (default true). */
  readonly fsync?: boolean;
  /** How a sample file reaches the disk (default: writeDurably in this process). */
  readonly write?: DurableWrite;
};

export function encodeSpoolFile(metadata: SampleMetadata, bytes: Uint8Array): Buffer {
  const json = Buffer.from(JSON.stringify(metadata), 'utf8');
  const header = Buffer.alloc(8);
  MAGIC.copy(header, 0);
  header.writeUInt32BE(json.length, 4);
  return Buffer.concat([header, json, bytes]);
}

export function decodeSpoolFile(file: Buffer): { metadata: SampleMetadata; bytes: Buffer } | null {
  if (file.length < 8 || !file.subarray(0, 4).equals(MAGIC)) return null;
  const length = file.readUInt32BE(4);
  if (8 + length > file.length) return null;
  let json: unknown;
  try {
    json = JSON.parse(file.subarray(8, 8 + length).toString('utf8'));
  } catch {
    return null;
  }
  const parsed = SampleMetadataSchema.safeParse(json);
  if (!parsed.success) return null;
  const bytes = file.subarray(8 + length);
  if (bytes.length !== parsed.data.image.bytes) return null;
  return { metadata: parsed.data, bytes };
}

export function openSpool(deps: SpoolDeps): Spool {
  const dir = deps.dir;
  const doSync = deps.fsync ?? true;
  const write = deps.write ?? writeDurably;
  let maxBytes = deps.maxBytes;
  mkdirSync(dir, { recursive: true });
  const entries: SpoolEntry[] = [];
  let removedTemp = 0;
  let removedBad = 0;
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (name.startsWith(TEMP_PREFIX)) {
      unlinkQuietly(full);
      removedTemp++;
      continue;
    }
    const match = NAME.exec(name);
    if (!match) {
      if (name.endsWith(SUFFIX)) {
        unlinkQuietly(full);
        removedBad++;
      }
      continue;
    }
    const size = statSync(full).size;
    entries.push({ name, ordinal: Number(match[1]), sha256: match[2] as string, size });
  }
  entries.sort((a, b) => a.ordinal - b.ordinal);
  let total = entries.reduce((sum, e) => sum + e.size, 0);
  let next = (entries.at(-1)?.ordinal ?? 0) + 1;
  const recovery: SpoolRecovery = { entries: entries.length, bytes: total, removedTemp, removedBad };

  function drop(entry: SpoolEntry): void {
    unlinkQuietly(path.join(dir, entry.name));
    total -= entry.size;
    deps.onDrop?.(entry);
  }

  return {
    async put(metadata, bytes) {
      const sha = metadata.image.sha256;
      if (entries.some((e) => e.sha256 === sha)) return 0;
      const file = encodeSpoolFile(metadata, bytes);
      if (file.length > maxBytes) return -1;
      let pushedOut = 0;
      while (entries.length > 0 && total + file.length > maxBytes) {
        drop(entries.shift() as SpoolEntry);
        pushedOut++;
      }
      const ordinal = next++;
      const name = `${String(ordinal).padStart(16, '0')}-${sha}${SUFFIX}`;
      const temp = path.join(dir, `${TEMP_PREFIX}${name}`);
      await write(temp, path.join(dir, name), file, doSync);
      entries.push({ name, ordinal, sha256: sha, size: file.length });
      total += file.length;
      return pushedOut;
    },
    has: (sha256) => entries.some((e) => e.sha256 === sha256),
    oldest: () => entries[0] ?? null,
    async read(entry) {
      let file: Buffer;
      try {
        file = await readFile(path.join(dir, entry.name));
      } catch {
        this.remove(entry);
        return null;
      }
      const decoded = decodeSpoolFile(file);
      if (!decoded) this.remove(entry);
      return decoded;
    },
    remove(entry) {
      const i = entries.findIndex((e) => e.name === entry.name);
      if (i < 0) return;
      entries.splice(i, 1);
      total -= entry.size;
      unlinkQuietly(path.join(dir, entry.name));
    },
    setMaxBytes(bytes) {
      maxBytes = bytes;
      while (entries.length > 0 && total > maxBytes) drop(entries.shift() as SpoolEntry);
    },
    stats: () => ({ count: entries.length, bytes: total, maxBytes }),
    recovery,
  };
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}
