import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { BlobStore } from '../models/blob-store.ts';

/*
 * Sample files in the content-addressed blob store (the one models use): a verified upload is
 * renamed into place (no second copy), thumbnails are received like any blob, and a blob goes
 * when the last sample using it does.
 *
 * Durability: the file is fsynced before its rename, and the rename is durable once its directory
 * is fsynced. placeBlob and writeBlob leave that last fsync to the caller (they return the
 * directories), so the uploads that finish together sync each directory once (group commit, see
 * uploads.ts) before their rows are stored.
 */

/** fsync of a directory off the event loop (a synchronous one would stall every other request). */
export async function fsyncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Moves a fsynced file whose sha256 was checked to its content address (dropping it if that blob
 * exists). Returns the directories to fsync before the blob may be relied on (none when it
 * existed already; the parent too when its prefix directory was made just now).
 */
export async function placeBlob(blobs: BlobStore, file: string, sha256: string, size: number): Promise<string[]> {
  const target = blobs.pathOf(sha256);
  if (blobs.sizeOf(sha256) === size) {
    await rm(file, { force: true });
    return [];
  }
  const dir = dirname(target);
  try {
    await rename(file, target);
    return [dir];
  } catch (error) {
    if ((error as { code?: string }).code !== 'ENOENT') throw error;
  }
  // The first blob under this prefix: make its directory (whose own entry needs a sync too).
  await mkdir(dir, { recursive: true });
  await rename(file, target);
  return [dir, dirname(dir)];
}

/** Moves a verified file to its content address, durably (placeBlob, then the directory fsyncs). */
export async function adoptBlob(blobs: BlobStore, file: string, sha256: string, size: number): Promise<void> {
  for (const dir of await placeBlob(blobs, file, sha256, size)) await fsyncDirectory(dir);
}

/**
 * Writes verified bytes held in memory to `temp` (created, never overwritten), fsyncs them and
 * moves them to their content address. Returns the directories to fsync, as placeBlob does; on an
 * error the temporary file is gone.
 */
export async function writeBlob(blobs: BlobStore, temp: string, bytes: Uint8Array, sha256: string): Promise<string[]> {
  if (blobs.sizeOf(sha256) === bytes.byteLength) return [];
  try {
    const handle = await open(temp, 'wx', 0o644);
    try {
      let at = 0;
      while (at < bytes.byteLength) {
        const { bytesWritten } = await handle.write(bytes, at, bytes.byteLength - at, at);
        at += bytesWritten;
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    return await placeBlob(blobs, temp, sha256, bytes.byteLength);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** Stores bytes as a blob; returns their sha256. */
export async function storeBlob(blobs: BlobStore, bytes: Uint8Array): Promise<string> {
  const received = await blobs.receive(
    (async function* () {
      yield bytes;
    })(),
    { maxBytes: bytes.byteLength },
  );
  await received.commit();
  return received.sha256;
}

/** Deletes a blob (no error when it is gone already). */
export async function removeBlob(blobs: BlobStore, sha256: string): Promise<void> {
  await rm(blobs.pathOf(sha256), { force: true });
}
