import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { digestFile } from '@edgeloop/firmware-images';
import { writeFileAtomic } from '../desired-state.ts';
import { type Logger, silentLogger } from '../logger.ts';
import {
  createMemoryDownloadTarget,
  type DownloadTarget,
  fileDownloadTarget,
  type MemoryDownloadTarget,
} from './download.ts';
import { openSlots, SLOT_NAMES, type SlotEntry, type SlotName, type SlotTable } from './slots.ts';
import { ManagerState } from './update-record.ts';

/*
 * Where the model manager keeps bytes and state. Two implementations of one interface:
 *
 *   createFileModelStorage(dir)     a device: <dir>/slots.json + slot-a.onnx + slot-b.onnx (slots.ts),
 *                                   <dir>/downloads/<sha256>.part, <dir>/update.json; every write
 *                                   atomic (temp file, fsync, rename, fsync dir)
 *   createMemoryModelStorage()      the simulator: the same rules in memory; downloads are hashed as
 *                                   they arrive and (by default) not kept, so an idle simulated
 *                                   device holds a few hundred bytes, not a model
 *
 * Both survive a "kill" of the manager that uses them (the simulator keeps the storage object
 * across a simulated reboot, the way it keeps the memory outbox).
 */

/** Where the runtime finds a slot's model: a file on a device, bytes (if kept) in the simulator. */
export type ModelLocation = { readonly path?: string; readonly bytes?: Uint8Array };

/** Facts about bytes held: what verification compares with the signed release. */
export type ByteFacts = { readonly sizeBytes: number; readonly sha256: string };

export class StorageError extends Error {
  readonly code: 'download_missing' | 'slot_active' | 'slot_empty';
  constructor(code: StorageError['code'], message: string) {
    super(message);
    this.name = 'StorageError';
    this.code = code;
  }
}

export interface ModelStorage {
  /** Active slot, what each slot holds, highest committed release counters. */
  readTable(): SlotTable;
  /** The slot holding these bytes, if any. */
  findSlot(sha256: string): SlotName | null;
  /** The slot a new model goes into (never the active one). */
  inactiveSlot(): SlotName;
  /** The partial download of `sha256`, resuming what is held. Close it when done. */
  openDownload(sha256: string): DownloadTarget;
  /** Size and sha256 of what was downloaded for `sha256`; null when nothing is held. */
  downloadFacts(sha256: string, signal?: AbortSignal): Promise<ByteFacts | null>;
  /** Removes partial downloads, all but `keep`. */
  discardDownloads(keep?: string): void;
  /** Size and sha256 of the bytes in a slot; null when it is empty. */
  slotFacts(slot: SlotName, signal?: AbortSignal): Promise<ByteFacts | null>;
  /**
   * Moves the completed download of `entry.ref.sha256` into `slot` (never the active one) and
   * records the entry. Throws StorageError `download_missing` when no such download is held.
   */
  install(slot: SlotName, entry: SlotEntry, signal?: AbortSignal): Promise<void>;
  /** Rewrites the entry of a slot that already holds these bytes (a new release of old bytes). */
  describe(slot: SlotName, entry: SlotEntry): void;
  /** Makes a slot the active one (atomic); null: the locally configured model. */
  activate(slot: SlotName | null): void;
  /** Records a committed release (anti-rollback); a lower counter than recorded is ignored. */
  recordCommit(name: string, counter: number, sha256: string): void;
  locate(slot: SlotName): ModelLocation;
  loadState(): ManagerState | null;
  saveState(state: ManagerState): void;
}

export function createFileModelStorage(dir: string, logger: Logger = silentLogger): ModelStorage {
  const slots = openSlots(dir);
  const downloads = path.join(dir, 'downloads');
  const stateFile = path.join(dir, 'update.json');
  const partOf = (sha256: string) => path.join(downloads, `${sha256}.part`);
  const factsOf = async (file: string, signal?: AbortSignal): Promise<ByteFacts | null> => {
    if (!existsSync(file)) return null;
    const digest = signal ? await digestFile(file, { signal }) : await digestFile(file);
    return { sizeBytes: digest.sizeBytes, sha256: digest.sha256 };
  };
  return {
    readTable: () => slots.read(),
    findSlot: (sha256) => slots.find(sha256),
    inactiveSlot: () => slots.inactive(),
    openDownload: (sha256) => fileDownloadTarget(partOf(sha256)),
    downloadFacts: (sha256, signal) => factsOf(partOf(sha256), signal),
    discardDownloads(keep) {
      if (!existsSync(downloads)) return;
      for (const name of readdirSync(downloads)) {
        if (keep !== undefined && name === `${keep}.part`) continue;
        rmSync(path.join(downloads, name), { force: true });
      }
    },
    async slotFacts(slot, signal) {
      if (!slots.read().slots[slot]) return null;
      return factsOf(slots.fileOf(slot), signal);
    },
    async install(slot, entry, signal) {
      const part = partOf(entry.ref.sha256);
      if (slots.read().active === slot) throw new StorageError('slot_active', `slot ${slot} is active`);
      if (existsSync(part)) {
        slots.install(slot, part, entry);
        return;
      }
      // A crash between the rename and the table write leaves the bytes in the slot file only.
      const held = await factsOf(slots.fileOf(slot), signal);
      if (held?.sha256 === entry.ref.sha256) {
        slots.describe(slot, entry);
        return;
      }
      throw new StorageError('download_missing', `no downloaded bytes of ${entry.ref.sha256} to install`);
    },
    describe: (slot, entry) => slots.describe(slot, entry),
    activate: (slot) => slots.activate(slot),
    recordCommit: (name, counter, sha256) => slots.recordCommit(name, counter, sha256),
    locate: (slot) => ({ path: slots.fileOf(slot) }),
    loadState() {
      let text: string;
      try {
        text = readFileSync(stateFile, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') logger.warn({ err: error }, 'cannot read update.json');
        return null;
      }
      try {
        const parsed = ManagerState.safeParse(JSON.parse(text));
        if (parsed.success) return parsed.data;
        logger.warn({ issues: parsed.error.issues.slice(0, 3) }, 'update.json is invalid; ignored');
      } catch (error) {
        logger.warn({ err: error }, 'update.json is not JSON; ignored');
      }
      return null;
    },
    saveState(state) {
      writeFileAtomic(stateFile, JSON.stringify(state));
    },
  };
}

export type MemoryModelStorageOptions = {
  /** Keep downloaded bytes (for a runtime that loads them); default false: only size and hash. */
  readonly keepBytes?: boolean;
};

type MemorySlot = { entry: SlotEntry; facts: ByteFacts; bytes: Uint8Array | null };

/** The simulator's storage: same contract, no files. A class so thousands share one set of methods. */
export function createMemoryModelStorage(options: MemoryModelStorageOptions = {}): ModelStorage {
  return new MemoryModelStorage(options.keepBytes ?? false);
}

class MemoryModelStorage implements ModelStorage {
  readonly #keepBytes: boolean;
  #active: SlotName | null = null;
  #a: MemorySlot | null = null;
  #b: MemorySlot | null = null;
  #highest: SlotTable['highest'] = {};
  /** At most a few partial downloads (the manager discards all but the current one). */
  #downloads: Map<string, MemoryDownloadTarget> | null = null;
  #state: string | null = null;

  constructor(keepBytes: boolean) {
    this.#keepBytes = keepBytes;
  }

  #slot(name: SlotName): MemorySlot | null {
    return name === 'a' ? this.#a : this.#b;
  }
  #setSlot(name: SlotName, value: MemorySlot | null): void {
    if (name === 'a') this.#a = value;
    else this.#b = value;
  }

  readTable(): SlotTable {
    return {
      active: this.#active,
      slots: { a: this.#a?.entry ?? null, b: this.#b?.entry ?? null },
      highest: { ...this.#highest },
    };
  }
  findSlot(sha256: string): SlotName | null {
    for (const name of SLOT_NAMES) if (this.#slot(name)?.facts.sha256 === sha256) return name;
    return null;
  }
  inactiveSlot(): SlotName {
    return this.#active === 'a' ? 'b' : 'a';
  }
  openDownload(sha256: string): DownloadTarget {
    this.#downloads ??= new Map();
    let target = this.#downloads.get(sha256);
    if (!target) {
      target = createMemoryDownloadTarget({ keepBytes: this.#keepBytes });
      this.#downloads.set(sha256, target);
    }
    return target;
  }
  async downloadFacts(sha256: string): Promise<ByteFacts | null> {
    const target = this.#downloads?.get(sha256);
    if (!target) return null;
    return { sizeBytes: target.size(), sha256: target.sha256() };
  }
  discardDownloads(keep?: string): void {
    if (!this.#downloads) return;
    for (const key of [...this.#downloads.keys()]) if (key !== keep) this.#downloads.delete(key);
    if (this.#downloads.size === 0) this.#downloads = null;
  }
  async slotFacts(slot: SlotName): Promise<ByteFacts | null> {
    return this.#slot(slot)?.facts ?? null;
  }
  async install(slot: SlotName, entry: SlotEntry): Promise<void> {
    if (this.#active === slot) throw new StorageError('slot_active', `slot ${slot} is active`);
    const sha256 = entry.ref.sha256;
    const target = this.#downloads?.get(sha256);
    if (!target) {
      if (this.#slot(slot)?.facts.sha256 === sha256) {
        this.describe(slot, entry);
        return;
      }
      throw new StorageError('download_missing', `no downloaded bytes of ${sha256} to install`);
    }
    this.#setSlot(slot, { entry, facts: { sizeBytes: target.size(), sha256: target.sha256() }, bytes: target.bytes() });
    this.#downloads?.delete(sha256);
    if (this.#downloads?.size === 0) this.#downloads = null;
  }
  describe(slot: SlotName, entry: SlotEntry): void {
    const held = this.#slot(slot);
    if (!held) throw new StorageError('slot_empty', `slot ${slot} is empty`);
    this.#setSlot(slot, { ...held, entry });
  }
  activate(slot: SlotName | null): void {
    if (slot !== null && !this.#slot(slot)) throw new StorageError('slot_empty', `slot ${slot} is empty`);
    this.#active = slot;
  }
  recordCommit(name: string, counter: number, sha256: string): void {
    const current = this.#highest[name];
    if (current && current.counter > counter) return;
    this.#highest = { ...this.#highest, [name]: { counter, sha256 } };
  }
  locate(slot: SlotName): ModelLocation {
    const bytes = this.#slot(slot)?.bytes;
    return bytes ? { bytes } : {};
  }
  loadState(): ManagerState | null {
    // Kept serialised, like the file: what a reboot reads is what was written, never a live object.
    return this.#state === null ? null : ManagerState.parse(JSON.parse(this.#state));
  }
  saveState(state: ManagerState): void {
    this.#state = JSON.stringify(state);
  }
}
