import { closeSync, fsyncSync, ftruncateSync, mkdirSync, openSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { fail, ok, type Result } from '@edgeloop/protocol';

/*
 * Resumable model download over HTTP. Bytes go to `<dest>` (a `.part` file) as they arrive; a
 * restart continues with `Range: bytes=<size on disk>-`. The download never writes more than the
 * size the signed release declares: a server that sends more is cut off (`size_exceeded`).
 * A server that ignores Range (200 instead of 206) restarts the file from zero.
 */

export type DownloadErrorCode =
  | 'http_error'
  | 'network_error'
  | 'size_exceeded'
  | 'size_mismatch'
  | 'aborted'
  | 'unauthorized'
  | 'not_found';

export type DownloadOptions = {
  readonly url: string;
  readonly dest: string;
  readonly expectedSize: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
  readonly fetch?: typeof fetch;
  readonly onProgress?: (bytes: number, total: number) => void;
};

export type DownloadOutcome = { readonly bytes: number; readonly resumedFrom: number };

/** Whether a failed download is worth retrying later (network trouble) or final. */
export function isRetryable(code: DownloadErrorCode): boolean {
  return code === 'network_error' || code === 'http_error';
}

function sizeOnDisk(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

export async function downloadModel(options: DownloadOptions): Promise<Result<DownloadOutcome, DownloadErrorCode>> {
  const fetchImpl = options.fetch ?? fetch;
  mkdirSync(path.dirname(options.dest), { recursive: true });
  let offset = sizeOnDisk(options.dest);
  const fd = openSync(options.dest, offset > 0 ? 'r+' : 'w');
  try {
    if (offset > options.expectedSize) {
      ftruncateSync(fd, 0);
      offset = 0;
    }
    const resumedFrom = offset;
    if (offset === options.expectedSize) return ok({ bytes: offset, resumedFrom });
    const headers: Record<string, string> = { ...options.headers };
    if (offset > 0) headers.range = `bytes=${offset}-`;
    let response: Response;
    try {
      response = await fetchImpl(options.url, { headers, signal: options.signal ?? null });
    } catch (error) {
      if (options.signal?.aborted) return fail('aborted', 'download aborted');
      return fail('network_error', `cannot reach ${options.url}: ${(error as Error).message}`);
    }
    if (response.status === 401 || response.status === 403) {
      return fail('unauthorized', `download refused with HTTP ${response.status}`);
    }
    if (response.status === 404) return fail('not_found', `model not found at ${options.url}`);
    if (response.status === 416) {
      // Our offset is beyond what the server has: start again.
      ftruncateSync(fd, 0);
      return fail('http_error', 'server answered 416 to the resume range; restarting from zero next time');
    }
    if (response.status !== 200 && response.status !== 206) {
      return fail('http_error', `download failed with HTTP ${response.status}`);
    }
    if (response.status === 200 && offset > 0) {
      ftruncateSync(fd, 0);
      offset = 0;
    }
    if (!response.body) return fail('http_error', 'response has no body');
    let position = offset;
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        if (position + chunk.byteLength > options.expectedSize) {
          writeSync(fd, chunk, 0, options.expectedSize - position, position);
          fsyncSync(fd);
          ftruncateSync(fd, options.expectedSize);
          return fail('size_exceeded', `server sent more than the declared ${options.expectedSize} bytes`);
        }
        writeSync(fd, chunk, 0, chunk.byteLength, position);
        position += chunk.byteLength;
        options.onProgress?.(position, options.expectedSize);
      }
    } catch (error) {
      fsyncSync(fd);
      if (options.signal?.aborted) return fail('aborted', 'download aborted');
      return fail('network_error', `download interrupted at ${position} bytes: ${(error as Error).message}`);
    }
    fsyncSync(fd);
    if (position !== options.expectedSize) {
      return fail('size_mismatch', `download ended at ${position} of ${options.expectedSize} bytes`);
    }
    return ok({ bytes: position, resumedFrom });
  } finally {
    closeSync(fd);
  }
}
