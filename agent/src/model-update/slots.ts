import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ModelManifest, ModelRef } from '@edgeloop/protocol';
import { z } from 'zod';
import { writeFileAtomic } from '../desired-state.ts';

/*
 * A/B model slots on disk:
 *
 *   <dir>/slots.json     which slot is active, what each holds, highest release counters
 *   <dir>/slot-a.onnx    one model file per slot
 *   <dir>/slot-b.onnx
 *
 * A new model is always written into the inactive slot (rename of a verified download, then a
 * directory fsync), and the switch is one atomic rewrite of slots.json. Whatever instant the
 * process dies at, slots.json names a slot whose file is complete.
 */

export const SLOT_NAMES = ['a', 'b'] as const;
export type SlotName = (typeof SLOT_NAMES)[number];

export const SlotEntry = z.object({
  ref: ModelRef,
  manifest: ModelManifest,
  releaseCounter: z.int().min(0),
  installedAt: z.int().min(0),
});
export type SlotEntry = z.infer<typeof SlotEntry>;

export const SlotTable = z.object({
  active: z.enum(SLOT_NAMES).nullable(),
  slots: z.object({ a: SlotEntry.nullable(), b: SlotEntry.nullable() }),
  /** Per model name: the highest release counter ever committed, and the sha256 it had. */
  highest: z.record(z.string(), z.object({ counter: z.int().min(0), sha256: z.string() })).default({}),
});
export type SlotTable = z.infer<typeof SlotTable>;

const EMPTY: SlotTable = { active: null, slots: { a: null, b: null }, highest: {} };

export type Slots = {
  readonly dir: string;
  read(): SlotTable;
  /** The slot a new model goes into (never the active one). */
  inactive(): SlotName;
  fileOf(slot: SlotName): string;
  /** Moves a verified file into a slot and records it; the active slot is untouched. */
  install(slot: SlotName, verifiedFile: string, entry: SlotEntry): void;
  /** Makes a slot the active one (atomic); null: no slot (the locally configured model runs). */
  activate(slot: SlotName | null): void;
  /** Rewrites what a slot's entry says about bytes it already holds (a new release of the same bytes). */
  describe(slot: SlotName, entry: SlotEntry): void;
  /** Records a committed release for anti-rollback. */
  recordCommit(name: string, counter: number, sha256: string): void;
  active(): { slot: SlotName; entry: SlotEntry } | null;
  /** The slot holding a model (by sha256), if any. */
  find(sha256: string): SlotName | null;
};

export function openSlots(dir: string): Slots {
  mkdirSync(dir, { recursive: true });
  const tableFile = path.join(dir, 'slots.json');
  const write = (table: SlotTable) => writeFileAtomic(tableFile, JSON.stringify(table));
  const read = (): SlotTable => {
    if (!existsSync(tableFile)) return structuredClone(EMPTY);
    try {
      const parsed = SlotTable.safeParse(JSON.parse(readFileSync(tableFile, 'utf8')));
      if (parsed.success) return parsed.data;
    } catch {
      // unreadable: treated as empty below (the atomic writes make this a manual-tampering case)
    }
    return structuredClone(EMPTY);
  };
  const fileOf = (slot: SlotName) => path.join(dir, `slot-${slot}.onnx`);
  return {
    dir,
    read,
    fileOf,
    inactive() {
      const table = read();
      return table.active === 'a' ? 'b' : 'a';
    },
    install(slot, verifiedFile, entry) {
      const table = read();
      if (table.active === slot) throw new Error(`slot ${slot} is active; install into the inactive slot`);
      // Forget the old content first, so a crash between the rename and the table write never
      // leaves the table describing bytes that are gone.
      if (table.slots[slot]) write({ ...table, slots: { ...table.slots, [slot]: null } });
      renameSync(verifiedFile, fileOf(slot));
      // The table write below fsyncs the directory, which also makes the rename durable.
      write({ ...read(), slots: { ...read().slots, [slot]: entry } });
    },
    activate(slot) {
      const table = read();
      if (slot !== null && !table.slots[slot]) throw new Error(`slot ${slot} is empty`);
      if (table.active === slot) return;
      write({ ...table, active: slot });
    },
    describe(slot, entry) {
      const table = read();
      write({ ...table, slots: { ...table.slots, [slot]: entry } });
    },
    recordCommit(name, counter, sha256) {
      const table = read();
      const current = table.highest[name];
      if (current && current.counter > counter) return;
      write({ ...table, highest: { ...table.highest, [name]: { counter, sha256 } } });
    },
    active() {
      const table = read();
      if (!table.active) return null;
      const entry = table.slots[table.active];
      return entry ? { slot: table.active, entry } : null;
    },
    find(sha256) {
      const table = read();
      for (const slot of SLOT_NAMES) if (table.slots[slot]?.ref.sha256 === sha256) return slot;
      return null;
    },
  };
}

/** Removes a leftover partial download (used when an update is abandoned). */
export function removePartial(file: string): void {
  rmSync(file, { force: true });
}
