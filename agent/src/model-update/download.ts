import { createHash, type Hash } from 'node:crypto';
import { closeSync, fsyncSync, ftruncateSync, mkdirSync, openSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { fail, ok, type Result } from '@edgeloop/protocol';
import { systemTimers, type Timers } from '../clock.ts';

/*
 * Resumable model download over HTTP into a `DownloadTarget`: a `.part` file on a device
 * (fileDownloadTarget), memory in the simulator (createMemoryDownloadTarget). A restart continues
 * with `Range: bytes=<bytes held>-`. The download never keeps more than the size the signed
 * release declares: a server that sends more is cut off (`size_exceeded`). A server that ignores
 * Range (200 instead of 206) restarts the target from zero; a 206 whose Content-Range does not
 * start at our offset is refused (`http_error`) rather than spliced in at the wrong place.
 *
 * downloadWithRetry retries the retryable failures (network trouble, 5xx, a transfer that ended
 * early) with capped exponential backoff and jitter, each attempt resuming where the last stopped.
 */

export type DownloadErrorCode =
  | 'http_error'
  | 'network_error'
  | 'size_exceeded'
  | 'size_mismatch'
  | 'aborted'
  | 'unauthorized'
  | 'not_found';

/** Where downloaded bytes go. Writes are sequential; `size()` is where the next one lands. */
export interface DownloadTarget {
  /** Bytes held (the resume offset). */
  size(): number;
  /** Drops every byte (a server that ignored Range, or a target larger than declared). */
  reset(): void;
  /** Appends `bytes` at `size()`. */
  append(bytes: Uint8Array): void;
  /** Makes what was appended durable (fsync for a file). */
  flush(): void;
  close(): void;
}

export type DownloadOptions = {
  readonly url: string;
  readonly target: DownloadTarget;
  readonly expectedSize: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
  readonly fetch?: typeof fetch;
  readonly onProgress?: (bytes: number, total: number) => void;
};

export type DownloadOutcome = { readonly bytes: number; readonly resumedFrom: number };

/** Whether a failed download is worth retrying later (network trouble) or final. */
export function isRetryable(code: DownloadErrorCode): boolean {
  return code === 'network_error' || code === 'http_error' || code === 'size_mismatch';
}

/** A `.part` file; every append is written at once, `flush` fsyncs. */
export function fileDownloadTarget(file: string): DownloadTarget {
  mkdirSync(path.dirname(file), { recursive: true });
  let size = 0;
  try {
    size = statSync(file).size;
  } catch {
    size = 0;
  }
  const fd = openSync(file, size > 0 ? 'r+' : 'w');
  return {
    size: () => size,
    reset() {
      ftruncateSync(fd, 0);
      size = 0;
    },
    append(bytes) {
      let written = 0;
      while (written < bytes.byteLength) {
        written += writeSync(fd, bytes, written, bytes.byteLength - written, size + written);
      }
      size += bytes.byteLength;
    },
    flush() {
      fsyncSync(fd);
    },
    close() {
      closeSync(fd);
    },
  };
}

/** A download held in memory: the sha256 is computed as bytes arrive; bytes are kept only on request. */
export interface MemoryDownloadTarget extends DownloadTarget {
  /** sha256 (hex) of the bytes held so far. */
  sha256(): string;
  /** The bytes, when created with `keepBytes`; otherwise null. */
  bytes(): Uint8Array | null;
}

export function createMemoryDownloadTarget(options: { readonly keepBytes?: boolean } = {}): MemoryDownloadTarget {
  return new MemoryTarget(options.keepBytes ?? false);
}

class MemoryTarget implements MemoryDownloadTarget {
  readonly #keep: boolean;
  #hash: Hash = createHash('sha256');
  #size = 0;
  #chunks: Uint8Array[] | null;

  constructor(keep: boolean) {
    this.#keep = keep;
    this.#chunks = keep ? [] : null;
  }
  size(): number {
    return this.#size;
  }
  reset(): void {
    this.#hash = createHash('sha256');
    this.#size = 0;
    this.#chunks = this.#keep ? [] : null;
  }
  append(bytes: Uint8Array): void {
    this.#hash.update(bytes);
    this.#size += bytes.byteLength;
    this.#chunks?.push(bytes.slice());
  }
  flush(): void {}
  close(): void {}
  sha256(): string {
    return this.#hash.copy().digest('hex');
  }
  bytes(): Uint8Array | null {
    if (!this.#chunks) return null;
    const out = new Uint8Array(this.#size);
    let at = 0;
    for (const chunk of this.#chunks) {
      out.set(chunk, at);
      at += chunk.byteLength;
    }
    this.#chunks = [out];
    return out;
  }
}

/** The start of a `Content-Range: bytes <start>-<end>/<size>` header, or null. */
function contentRangeStart(header: string | null): number | null {
  const match = header ? /^bytes\s+(\d+)-\d+\/(?:\d+|\*)$/i.exec(header.trim()) : null;
  return match ? Number(match[1]) : null;
}

/** One download attempt: resumes from what the target holds. Never throws. */
export async function downloadModel(options: DownloadOptions): Promise<Result<DownloadOutcome, DownloadErrorCode>> {
  const fetchImpl = options.fetch ?? fetch;
  const target = options.target;
  if (target.size() > options.expectedSize) target.reset();
  let offset = target.size();
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
  const discardBody = () => response.body?.cancel().catch(() => {});
  if (response.status === 401 || response.status === 403) {
    await discardBody();
    return fail('unauthorized', `download refused with HTTP ${response.status}`);
  }
  if (response.status === 404) {
    await discardBody();
    return fail('not_found', `model not found at ${options.url}`);
  }
  if (response.status === 416) {
    // Our offset is beyond what the server has: start again.
    await discardBody();
    target.reset();
    return fail('http_error', 'server answered 416 to the resume range; restarting from zero next time');
  }
  if (response.status !== 200 && response.status !== 206) {
    await discardBody();
    return fail('http_error', `download failed with HTTP ${response.status}`);
  }
  if (response.status === 206 && contentRangeStart(response.headers.get('content-range')) !== offset) {
    await discardBody();
    return fail(
      'http_error',
      `server answered a range that does not start at ${offset} (${response.headers.get('content-range')})`,
    );
  }
  if (response.status === 200 && offset > 0) {
    target.reset();
    offset = 0;
  }
  if (!response.body) return fail('http_error', 'response has no body');
  let position = offset;
  try {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      if (position + chunk.byteLength > options.expectedSize) {
        target.append(chunk.subarray(0, options.expectedSize - position));
        target.flush();
        await discardBody();
        return fail('size_exceeded', `server sent more than the declared ${options.expectedSize} bytes`);
      }
      target.append(chunk);
      position += chunk.byteLength;
      options.onProgress?.(position, options.expectedSize);
    }
  } catch (error) {
    target.flush();
    if (options.signal?.aborted) return fail('aborted', 'download aborted');
    return fail('network_error', `download interrupted at ${position} bytes: ${(error as Error).message}`);
  }
  target.flush();
  if (position !== options.expectedSize) {
    return fail('size_mismatch', `download ended at ${position} of ${options.expectedSize} bytes`);
  }
  return ok({ bytes: position, resumedFrom });
}

export type RetryPolicy = {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  /** Attempts in all before a retryable failure becomes final; null: keep trying (devices converge when back online). */
  readonly maxAttempts: number | null;
};

export type RetriedOutcome = DownloadOutcome & {
  readonly attempts: number;
  /** Where the first attempt started (bytes already on disk from an earlier run). */
  readonly firstResumedFrom: number;
};

/** Capped exponential backoff with jitter: attempt 0 waits about initialDelayMs. */
export function retryDelayMs(attempt: number, policy: RetryPolicy, random: () => number): number {
  const base = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.min(attempt, 30));
  return Math.round(base * (0.5 + 0.5 * random()));
}

/** Waits `ms` on the injected timers; false when `signal` aborted first. */
export function sleep(ms: number, signal: AbortSignal | undefined, timers: Timers = systemTimers): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      timers.clearTimeout(handle);
      resolve(false);
    };
    const handle = timers.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export type RetryDeps = {
  readonly policy: RetryPolicy;
  readonly timers?: Timers;
  readonly random?: () => number;
  /** Told about every failed attempt that will be retried (count it; do not log per byte). */
  readonly onRetry?: (attempt: number, error: { code: DownloadErrorCode; message: string }, delayMs: number) => void;
};

/** downloadModel until it succeeds, fails for good, runs out of attempts or is aborted. */
export async function downloadWithRetry(
  options: DownloadOptions,
  deps: RetryDeps,
): Promise<Result<RetriedOutcome, DownloadErrorCode>> {
  const random = deps.random ?? Math.random;
  const firstResumedFrom = options.target.size();
  for (let attempt = 0; ; attempt++) {
    const result = await downloadModel(options);
    if (result.ok) return ok({ ...result.value, attempts: attempt + 1, firstResumedFrom });
    const { code } = result.error;
    const lastAttempt = deps.policy.maxAttempts !== null && attempt + 1 >= deps.policy.maxAttempts;
    if (code === 'aborted' || !isRetryable(code) || lastAttempt) return result;
    const delay = retryDelayMs(attempt, deps.policy, random);
    deps.onRetry?.(attempt + 1, result.error, delay);
    if (!(await sleep(delay, options.signal, deps.timers))) return fail('aborted', 'download aborted');
  }
}
