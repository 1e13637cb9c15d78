import {
  close,
  closeSync,
  constants,
  fsync,
  fsyncSync,
  mkdirSync,
  open as openFd,
  openSync,
  statSync,
  write,
} from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
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

// Plain descriptors, not fs/promises FileHandles: a FileHandle costs a transferable object (and
// its bookkeeping) per open, which shows in a profile at hundreds of samples a second.
//
// Every asynchronous fs call is a trip to libuv's thread pool and back, and on a small (virtual)
// machine each trip costs more CPU than the call itself. So the calls that can block on the disk
// or the journal (creating, writing, syncing, renaming) go to the pool, and the ones that cannot
// run inline: closing a descriptor whose data is synced already, and opening an existing
// directory read-only (a lookup, no journal handle). A new file is opened O_DSYNC, so its one
// write returns once the data is durable: the write and the fsync are one trip, not two.
const openAsync = promisify(openFd);
const writeAsync = promisify(write);
const fsyncAsync = promisify(fsync);
const closeAsync = promisify(close);
const DSYNC = constants.O_DSYNC as number | undefined;
const CREATE_DURABLE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (DSYNC ?? 0);

/**
 * BlobStore.sizeOf without its thrown ENOENT: a new sample's blob is absent, and an error built
 * per upload (with its stack) cost more than the stat itself.
 */
function storedSize(blobs: BlobStore, sha256: string): number | null {
  return statSync(blobs.pathOf(sha256), { throwIfNoEntry: false })?.size ?? null;
}

/**
 * Makes the 256 prefix directories of the blob store (`sha256/00` to `sha256/ff`) that do not
 * exist yet, durably (call at start). Without them the first blob under each prefix costs a
 * failed rename, a mkdir, a second rename and a sync of the parent: a quarter of the first
 * thousand uploads of a new store. Returns how many were made.
 */
export function makePrefixDirectories(blobs: BlobStore): number {
  let made = 0;
  let parent: string | null = null;
  for (let prefix = 0; prefix < 256; prefix++) {
    const dir = dirname(blobs.pathOf(prefix.toString(16).padStart(2, '0').padEnd(64, '0')));
    parent = dirname(dir);
    if (mkdirSync(dir, { recursive: true }) !== undefined) made++;
  }
  if (made > 0 && parent !== null) {
    for (const dir of [parent, dirname(parent)]) {
      const fd = openSync(dir, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  }
  return made;
}

/** fsync of a directory off the event loop (a synchronous one would stall every other request). */
export async function fsyncDirectory(path: string): Promise<void> {
  const fd = openSync(path, 'r');
  try {
    await fsyncAsync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Moves a fsynced file whose sha256 was checked to its content address (dropping it if that blob
 * exists). Returns the directories to fsync before the blob may be relied on (none when it
 * existed already; the parent too when its prefix directory was made just now).
 */
export async function placeBlob(blobs: BlobStore, file: string, sha256: string, size: number): Promise<string[]> {
  if (storedSize(blobs, sha256) === size) {
    await rm(file, { force: true });
    return [];
  }
  return moveIntoPlace(file, blobs.pathOf(sha256));
}

/** Renames `file` to `target`, making its prefix directory when needed; returns what to fsync. */
async function moveIntoPlace(file: string, target: string): Promise<string[]> {
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
  if (storedSize(blobs, sha256) === bytes.byteLength) return [];
  try {
    const fd = await openAsync(temp, CREATE_DURABLE, 0o644);
    let synced = false;
    try {
      let at = 0;
      while (at < bytes.byteLength) at += (await writeAsync(fd, bytes, at, bytes.byteLength - at, at)).bytesWritten;
      if (DSYNC === undefined) await fsyncAsync(fd);
      synced = true;
    } finally {
      if (synced) closeSync(fd);
      else await closeAsync(fd);
    }
    return await moveIntoPlace(temp, blobs.pathOf(sha256));
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
