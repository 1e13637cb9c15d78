import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { BlobStore } from '../models/blob-store.ts';

/*
 * Sample files in the content-addressed blob store (the one models use): a verified upload is
 * renamed into place (no second copy), thumbnails are received like any blob, and a blob goes
 * when the last sample using it does.
 */

/** fsync of a directory off the event loop (a synchronous one would stall every other request). */
async function fsyncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Moves a file whose sha256 was checked to its content address (dropping it if that blob exists). */
export async function adoptBlob(blobs: BlobStore, file: string, sha256: string, size: number): Promise<void> {
  const target = blobs.pathOf(sha256);
  if (blobs.sizeOf(sha256) === size) {
    await rm(file, { force: true });
    return;
  }
  await rename(file, target).catch(async (error: unknown) => {
    if ((error as { code?: string }).code !== 'ENOENT') throw error;
    // The first blob under this prefix: make its directory.
    await mkdir(dirname(target), { recursive: true });
    await rename(file, target);
  });
  await fsyncDirectory(dirname(target));
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
