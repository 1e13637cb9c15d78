import {
  SAMPLE_UPLOAD_CONTENT_TYPE,
  SAMPLE_UPLOAD_OFFSET_HEADER,
  type SampleMetadata,
  SampleUploadState,
} from '@edgeloop/protocol';
import { systemTimers, type Timers } from '../clock.ts';
import type { Spool, SpoolEntry } from './spool.ts';

/*
 * Drains the spool, oldest first, with the resumable upload protocol of protocol/src/samples.ts:
 *   POST  /api/v1/samples/uploads        metadata -> {uploadId, offset, complete}
 *   PATCH /api/v1/samples/uploads/:id    Upload-Offset: N, bytes from N in chunks -> 204 | 201
 *   HEAD  /api/v1/samples/uploads/:id    -> Upload-Offset (after a cut: where to resume)
 * with the device credential (HTTP Basic, sent to the control plane's origin only).
 *
 * After a network error, a timeout or a 5xx it backs off (exponential, with jitter) and asks the
 * server for its offset (HEAD), so it resumes from the last acknowledged byte, never from 0. An
 * already-stored sha256 answers the POST with complete: true and costs no bytes. A 400/403/413/422
 * rejection (or a 409 without an offset) drops the sample as 'rejected': it would never pass. The
 * spool entry is removed only after the control plane said the sample is stored.
 */

export type UploaderStats = {
  uploaded: number;
  uploadedBytes: number;
  /** Chunk bytes put on the wire (including chunks cut off and sent again). */
  bytesSent: number;
  rejected: number;
  retries: number;
  lastError: string | null;
};

export interface SampleUploader {
  start(): void;
  /** A new sample is in the spool. */
  kick(): void;
  stop(): Promise<void>;
  stats(): UploaderStats;
}

export type SampleUploaderDeps = {
  readonly spool: Spool;
  /** The control plane's base URL (http://host:port). */
  readonly baseUrl: string;
  readonly credentials?: { readonly username: string; readonly password: string } | undefined;
  readonly fetch?: typeof fetch;
  readonly timers?: Timers;
  readonly random?: () => number;
  readonly onRejected?: (metadata: SampleMetadata | null, reason: string) => void;
  readonly onUploaded?: (metadata: SampleMetadata, sampleId: string | null) => void;
  readonly options?: {
    readonly chunkBytes?: number;
    readonly initialRetryMs?: number;
    readonly maxRetryMs?: number;
    readonly requestTimeoutMs?: number;
  };
};

const REJECT_STATUSES = new Set([400, 403, 413, 422]);

class Retry extends Error {}
class Rejected extends Error {}
/** The server forgot the upload (404): start it again with a POST. */
class Restart extends Error {}

export function createSampleUploader(deps: SampleUploaderDeps): SampleUploader {
  const fetchFn = deps.fetch ?? fetch;
  const timers = deps.timers ?? systemTimers;
  const random = deps.random ?? Math.random;
  const chunkBytes = deps.options?.chunkBytes ?? 256 * 1024;
  const initialRetryMs = deps.options?.initialRetryMs ?? 500;
  const maxRetryMs = deps.options?.maxRetryMs ?? 30_000;
  const requestTimeoutMs = deps.options?.requestTimeoutMs ?? 30_000;
  const base = deps.baseUrl.replace(/\/+$/, '');
  // Read at every request: a rotated secret (rotate-credentials) replaces the password in place.
  const credentials = deps.credentials;
  const authOf = (username: string, password: string) =>
    `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
  const stats: UploaderStats = {
    uploaded: 0,
    uploadedBytes: 0,
    bytesSent: 0,
    rejected: 0,
    retries: 0,
    lastError: null,
  };
  let controller = new AbortController();
  let running = false;
  let loopDone: Promise<void> = Promise.resolve();
  let wake: (() => void) | null = null;
  let failures = 0;

  function notify(): void {
    const w = wake;
    wake = null;
    w?.();
  }

  function headers(extra: Record<string, string>): Record<string, string> {
    return credentials ? { authorization: authOf(credentials.username, credentials.password), ...extra } : extra;
  }

  async function request(url: string, init: RequestInit): Promise<Response> {
    const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(requestTimeoutMs)]);
    try {
      return await fetchFn(url, { ...init, signal });
    } catch (error) {
      if (controller.signal.aborted) throw error;
      throw new Retry(`${init.method} ${url}: ${(error as Error).message}`);
    }
  }

  async function judge(response: Response, what: string): Promise<never> {
    const body = await response.text().catch(() => '');
    const detail = `${what}: HTTP ${response.status} ${body.slice(0, 200)}`;
    if (response.status === 404) throw new Restart(detail);
    if (REJECT_STATUSES.has(response.status)) throw new Rejected(detail);
    throw new Retry(detail);
  }

  function offsetOf(response: Response): number | null {
    const value = response.headers.get(SAMPLE_UPLOAD_OFFSET_HEADER);
    if (value === null || !/^\d+$/.test(value)) return null;
    return Number(value);
  }

  async function begin(metadata: SampleMetadata): Promise<SampleUploadState> {
    const response = await request(`${base}/api/v1/samples/uploads`, {
      method: 'POST',
      headers: headers({ 'content-type': 'application/json' }),
      body: JSON.stringify(metadata),
    });
    if (response.status !== 200 && response.status !== 201) return judge(response, 'POST uploads');
    const parsed = SampleUploadState.safeParse(await response.json().catch(() => null));
    if (!parsed.success) throw new Retry('POST uploads: unreadable upload state');
    return parsed.data;
  }

  async function headOffset(uploadId: string): Promise<number> {
    const response = await request(`${base}/api/v1/samples/uploads/${encodeURIComponent(uploadId)}`, {
      method: 'HEAD',
      headers: headers({}),
    });
    if (response.status !== 204 && response.status !== 200) return judge(response, 'HEAD upload');
    const offset = offsetOf(response);
    if (offset === null) throw new Retry('HEAD upload: no Upload-Offset');
    return offset;
  }

  async function backoff(): Promise<void> {
    failures++;
    stats.retries++;
    const ms = Math.min(maxRetryMs, initialRetryMs * 2 ** Math.min(failures - 1, 16)) * (0.5 + random() / 2);
    await new Promise<void>((resolve) => {
      const handle = timers.setTimeout(done, ms);
      function done(): void {
        controller.signal.removeEventListener('abort', abort);
        resolve();
      }
      function abort(): void {
        timers.clearTimeout(handle);
        resolve();
      }
      controller.signal.addEventListener('abort', abort, { once: true });
    });
  }

  /** Uploads one sample; resolves 'stored' or 'rejected', throws only when stopped. */
  async function upload(metadata: SampleMetadata, bytes: Buffer): Promise<'stored' | 'rejected'> {
    let uploadId: string | null = null;
    let offset = 0;
    for (;;) {
      if (controller.signal.aborted) throw new Error('stopped');
      try {
        if (uploadId === null) {
          const state = await begin(metadata);
          if (state.complete) return finish(metadata, state.sampleId);
          uploadId = state.uploadId;
          offset = state.offset;
        }
        if (offset > bytes.length)
          throw new Rejected(`server offset ${offset} past the sample's ${bytes.length} bytes`);
        const chunk = bytes.subarray(offset, Math.min(bytes.length, offset + chunkBytes));
        stats.bytesSent += chunk.length;
        const response = await request(`${base}/api/v1/samples/uploads/${encodeURIComponent(uploadId)}`, {
          method: 'PATCH',
          headers: headers({
            [SAMPLE_UPLOAD_OFFSET_HEADER]: String(offset),
            'content-type': SAMPLE_UPLOAD_CONTENT_TYPE,
          }),
          // A view of the spool file's bytes, not a copy (Node's Buffer is always on an ArrayBuffer).
          body: new Uint8Array(chunk.buffer as ArrayBuffer, chunk.byteOffset, chunk.byteLength),
        });
        if (response.status === 201 || response.status === 200) {
          const parsed = SampleUploadState.safeParse(await response.json().catch(() => null));
          if (parsed.success && parsed.data.complete) return finish(metadata, parsed.data.sampleId);
          offset = offsetOf(response) ?? (parsed.success ? parsed.data.offset : offset + chunk.length);
        } else if (response.status === 204) {
          await response.body?.cancel();
          const acknowledged = offsetOf(response);
          if (acknowledged === null) throw new Retry('PATCH upload: no Upload-Offset');
          offset = acknowledged;
        } else if (response.status === 409) {
          await response.body?.cancel();
          const at = offsetOf(response);
          // The same offset again: the server is still busy with a chunk cut off earlier; wait.
          if (at === offset) throw new Retry('PATCH upload: HTTP 409 busy');
          offset = at ?? (await headOffset(uploadId));
        } else {
          await judge(response, 'PATCH upload');
        }
        failures = 0;
      } catch (error) {
        if (controller.signal.aborted) throw error;
        if (error instanceof Rejected) {
          stats.lastError = error.message;
          return 'rejected';
        }
        stats.lastError = (error as Error).message;
        if (error instanceof Restart) {
          uploadId = null;
          await backoff();
          continue;
        }
        await backoff();
        // Resume from what the server holds, never from 0.
        if (uploadId !== null) {
          try {
            offset = await headOffset(uploadId);
          } catch (headError) {
            if (controller.signal.aborted) throw headError;
            if (headError instanceof Restart) uploadId = null;
            else if (headError instanceof Rejected) {
              stats.lastError = headError.message;
              return 'rejected';
            }
            // Otherwise the next PATCH (at the old offset) finds out, with a 409 at worst.
          }
        }
      }
    }
  }

  function finish(metadata: SampleMetadata, sampleId: string | null): 'stored' {
    stats.uploaded++;
    stats.uploadedBytes += metadata.image.bytes;
    deps.onUploaded?.(metadata, sampleId);
    return 'stored';
  }

  async function loop(): Promise<void> {
    while (running) {
      const entry: SpoolEntry | null = deps.spool.oldest();
      if (!entry) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        continue;
      }
      const sample = await deps.spool.read(entry);
      if (!sample) continue;
      let outcome: 'stored' | 'rejected';
      try {
        outcome = await upload(sample.metadata, sample.bytes);
      } catch {
        break; // stopped
      }
      if (outcome === 'rejected') {
        stats.rejected++;
        deps.onRejected?.(sample.metadata, stats.lastError ?? 'rejected');
      }
      deps.spool.remove(entry);
    }
  }

  return {
    start() {
      if (running) return;
      running = true;
      controller = new AbortController();
      loopDone = loop();
    },
    kick: notify,
    async stop() {
      if (!running) return;
      running = false;
      controller.abort();
      notify();
      await loopDone;
    },
    stats: () => ({ ...stats }),
  };
}
