import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** What a release says about its file. */
export type FileDigest = { readonly sha256: string; readonly sizeBytes: number };

/** sha256 (lowercase hex) and size of a file, streamed in chunks; rejects on a read error or abort. */
export async function digestFile(path: string, options: { signal?: AbortSignal } = {}): Promise<FileDigest> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  const stream = createReadStream(path, { highWaterMark: 1 << 20, signal: options.signal });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    sizeBytes += chunk.length;
  }
  return { sha256: hash.digest('hex'), sizeBytes };
}
