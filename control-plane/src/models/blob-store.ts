import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, rmSync, statSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

/*
 * Content-addressed blobs on disk: `<root>/sha256/<2 hex>/<64 hex>`. A blob is received into
 * `<root>/tmp/` while its sha256 and size are computed, fsynced, and only then renamed into place
 * (rename is atomic; the directory is fsynced after), so a crash leaves either no blob or a whole
 * one, never a torn file under a hash name. The same bytes are stored once.
 */

export class BlobTooLargeError extends Error {
  readonly code = 'payload_too_large';
  constructor(limit: number) {
    super(`the file exceeds ${limit} bytes`);
    this.name = 'BlobTooLargeError';
  }
}

/** Bytes received into a temporary file, not yet stored under their hash. */
export type ReceivedBlob = {
  readonly sha256: string;
  readonly sizeBytes: number;
  /** The first byte of the file, or null when it is empty. */
  readonly firstByte: number | null;
  /** Moves the bytes to their content address (dropping them if that blob exists). */
  commit(): Promise<void>;
  /** Deletes the temporary file. */
  discard(): Promise<void>;
};

export type BlobStore = {
  /** Streams `source` into a temporary file; throws BlobTooLargeError past `maxBytes` (nothing kept). */
  receive(source: AsyncIterable<Uint8Array>, options: { readonly maxBytes: number }): Promise<ReceivedBlob>;
  /** Where the blob with this sha256 lives (whether or not it exists). */
  pathOf(sha256: string): string;
  /** Size of the stored blob, or null when there is none. */
  sizeOf(sha256: string): number | null;
  /** Deletes temporary files left by a crash (call at start). */
  sweepTemporary(): number;
};

const SHA256 = /^[0-9a-f]{64}$/;

function fsyncDirectory(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function createBlobStore(options: { readonly root: string }): BlobStore {
  const tmpDir = join(options.root, 'tmp');
  const pathOf = (sha256: string) => {
    if (!SHA256.test(sha256)) throw new TypeError(`not a sha256: ${sha256}`);
    return join(options.root, 'sha256', sha256.slice(0, 2), sha256);
  };

  return {
    pathOf,

    sizeOf(sha256) {
      try {
        return statSync(pathOf(sha256)).size;
      } catch {
        return null;
      }
    },

    sweepTemporary() {
      let removed = 0;
      try {
        for (const name of readdirSync(tmpDir)) {
          rmSync(join(tmpDir, name), { force: true });
          removed++;
        }
      } catch {
        // no tmp directory yet
      }
      return removed;
    },

    async receive(source, { maxBytes }) {
      mkdirSync(tmpDir, { recursive: true });
      const temp = join(tmpDir, `${randomBytes(8).toString('hex')}.part`);
      const hash = createHash('sha256');
      let sizeBytes = 0;
      let firstByte: number | null = null;
      const handle = await open(temp, 'wx', 0o644);
      let closed = false;
      try {
        for await (const chunk of source) {
          if (chunk.byteLength === 0) continue;
          sizeBytes += chunk.byteLength;
          if (sizeBytes > maxBytes) throw new BlobTooLargeError(maxBytes);
          firstByte ??= chunk[0] ?? null;
          hash.update(chunk);
          let offset = 0;
          while (offset < chunk.byteLength) {
            const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset);
            offset += bytesWritten;
          }
        }
        await handle.sync();
        await handle.close();
        closed = true;
      } catch (error) {
        if (!closed) await handle.close().catch(() => undefined);
        await rm(temp, { force: true });
        throw error;
      }
      const sha256 = hash.digest('hex');
      let settled = false;
      return {
        sha256,
        sizeBytes,
        firstByte,
        async commit() {
          if (settled) return;
          settled = true;
          const target = pathOf(sha256);
          const dir = join(options.root, 'sha256', sha256.slice(0, 2));
          mkdirSync(dir, { recursive: true });
          let existing: number | null = null;
          try {
            existing = statSync(target).size;
          } catch {
            existing = null;
          }
          if (existing === sizeBytes) {
            await rm(temp, { force: true });
            return;
          }
          await rename(temp, target);
          fsyncDirectory(dir);
        },
        async discard() {
          if (settled) return;
          settled = true;
          await rm(temp, { force: true });
        },
      };
    },
  };
}
