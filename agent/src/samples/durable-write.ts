import { open, rename } from 'node:fs/promises';
import path from 'node:path';

/*
 * The one way the spool and the budget put a file on disk: the bytes to `temp`, fsynced, renamed
 * to `file`, and the directory fsynced (the outbox's discipline), so a kill -9 or a power loss
 * leaves the old file or the new one, and at worst a temp file. `fsync: false` skips both syncs
 * (tests, the simulator). The capture hands these writes to its encoder (encoder.ts), so with the
 * child encoder they run at its low priority too.
 */

export type DurableWrite = (temp: string, file: string, data: Uint8Array, fsync: boolean) => Promise<void>;

export const writeDurably: DurableWrite = async (temp, file, data, fsync) => {
  const handle = await open(temp, 'w');
  try {
    await handle.writeFile(data);
    if (fsync) await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, file);
  if (fsync) await syncDirectory(path.dirname(file));
};

async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // best effort on filesystems that refuse a directory fsync
  }
}
