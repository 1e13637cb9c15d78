/*
 * A streaming multipart/form-data reader (RFC 7578) for uploads too large to hold in memory,
 * on top of busboy: parts are yielded one at a time with their body as an async iterable of
 * chunks, so a 1 GiB model goes from the socket to a file in bounded memory. Busboy holds back
 * the source while a file part's body is unread (backpressure); a part whose body the caller
 * does not read is skipped. The whole request is capped at `maxBytes`.
 *
 * What busboy decides: a part with a filename (or of type application/octet-stream) is a file
 * and streams; any other part is a field, buffered up to `maxFieldBytes`. Part headers are capped
 * at 16 KiB (its fixed limit). A part without Content-Disposition: form-data is ignored.
 */
import type { Readable } from 'node:stream';
import busboy from 'busboy';

export class MultipartError extends Error {
  readonly code: 'bad_request' | 'payload_too_large';
  constructor(code: 'bad_request' | 'payload_too_large', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MultipartError';
    this.code = code;
  }
}

export type MultipartPart = {
  /** The form field name (Content-Disposition name). */
  readonly name: string;
  readonly filename: string | null;
  /** The part's media type without parameters; text/plain when the part names none (RFC 7578 4.4). */
  readonly contentType: string;
  readonly body: AsyncIterable<Uint8Array>;
};

export type MultipartOptions = {
  /** Bytes of the whole body, headers and boundaries included. */
  readonly maxBytes: number;
  /** Bytes of one field (a part without a filename), which is held in memory. Default 1 MiB. */
  readonly maxFieldBytes?: number;
  readonly maxParts?: number;
};

/** The boundary of a `multipart/form-data; boundary=...` content type, or null. */
export function boundaryOf(contentType: string | undefined | null): string | null {
  if (!contentType) return null;
  const [type, ...params] = contentType.split(';');
  if (type?.trim().toLowerCase() !== 'multipart/form-data') return null;
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== 'boundary') continue;
    let value = param.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    // RFC 2046: 1 to 70 characters, none of them a quote or backslash.
    return value.length >= 1 && value.length <= 70 && !/["\\]/.test(value) ? value : null;
  }
  return null;
}

/** Busboy's errors (plain Errors) as MultipartErrors; ours pass through. */
function asMultipartError(error: unknown): MultipartError {
  if (error instanceof MultipartError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new MultipartError('bad_request', `malformed multipart/form-data body: ${message}`, { cause: error });
}

/** Resolves when `parser` can take more bytes; rejects when it fails or closes first. */
function drained(parser: busboy.Busboy): Promise<void> {
  return new Promise((resolve, reject) => {
    if (parser.destroyed) {
      reject(new MultipartError('bad_request', 'the multipart reader stopped'));
      return;
    }
    const done = (error?: unknown) => {
      parser.off('drain', onDrain);
      parser.off('error', onError);
      parser.off('close', onClose);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onDrain = () => done();
    const onError = (error: unknown) => done(error);
    const onClose = () => done(new MultipartError('bad_request', 'the multipart reader stopped'));
    parser.on('drain', onDrain);
    parser.on('error', onError);
    parser.on('close', onClose);
  });
}

/** Resolves when `parser` has closed: parsed everything it was given, or failed (see its 'error'). */
function closed(parser: busboy.Busboy): Promise<void> {
  return new Promise((resolve) => parser.once('close', () => resolve()));
}

type QueuedPart = { readonly part: MultipartPart; readonly skip: () => Promise<void> };

/**
 * A file part's body over busboy's stream. Leaving the loop early does not destroy the stream
 * (busboy would then wait on it forever); the reader skips what is left before the next part.
 */
function filePart(stream: Readable): Pick<QueuedPart, 'skip'> & { body: AsyncIterable<Uint8Array> } {
  const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let ended = false;
  const next = async (): Promise<IteratorResult<Uint8Array>> => {
    if (ended) return { done: true, value: undefined };
    try {
      const result = await chunks.next();
      if (result.done) ended = true;
      return result;
    } catch (error) {
      ended = true;
      throw asMultipartError(error);
    }
  };
  return {
    body: {
      [Symbol.asyncIterator]: () => ({ next, return: async () => ({ done: true, value: undefined }) }),
    },
    async skip() {
      while (!(await next()).done) {
        // discard
      }
    },
  };
}

/**
 * Yields the parts of a multipart/form-data body in order. Read (or skip) each part's body before
 * asking for the next part. Throws MultipartError for a malformed or truncated body or one over
 * the limits. Leaving the loop early stops reading the source.
 */
export async function* readMultipart(
  source: AsyncIterable<Uint8Array>,
  boundary: string,
  options: MultipartOptions,
): AsyncGenerator<MultipartPart> {
  const maxFieldBytes = options.maxFieldBytes ?? 1024 * 1024;
  const maxParts = options.maxParts ?? 16;

  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: { 'content-type': `multipart/form-data; boundary="${boundary}"` },
      // Busboy marks a field truncated on reaching the limit, so one byte more lets exactly max through.
      limits: { fieldSize: maxFieldBytes + 1 },
    });
  } catch (error) {
    throw new MultipartError('bad_request', `not a multipart/form-data boundary: ${(error as Error).message}`);
  }

  const queue: QueuedPart[] = [];
  let failure: MultipartError | null = null;
  let finished = false;
  let wake: (() => void) | null = null;
  const notify = () => {
    wake?.();
    wake = null;
  };
  const fail = (error: unknown) => {
    failure ??= asMultipartError(error);
    parser.destroy(failure);
    notify();
  };

  let parts = 0;
  /** Whether a new part may be queued; fails the reader when not. */
  const admit = (name: string | undefined): name is string => {
    if (failure) return false;
    if (++parts > maxParts) fail(new MultipartError('bad_request', `more than ${maxParts} parts`));
    else if (!name) fail(new MultipartError('bad_request', 'a part has no name'));
    return failure === null;
  };

  parser.on('file', (name: string | undefined, stream: Readable, info: busboy.FileInfo) => {
    // Its errors reach the caller through the body (or the reader), not as an unhandled event.
    stream.on('error', () => {});
    if (!admit(name)) {
      stream.resume();
      return;
    }
    const { body, skip } = filePart(stream);
    queue.push({ part: { name, filename: info.filename ?? null, contentType: info.mimeType, body }, skip });
    notify();
  });
  parser.on('field', (name: string | undefined, value: string, info: busboy.FieldInfo) => {
    if (!admit(name)) return;
    if (info.valueTruncated) {
      fail(new MultipartError('payload_too_large', `part ${name} exceeds ${maxFieldBytes} bytes`));
      return;
    }
    const bytes = Buffer.from(value, 'utf8');
    const body: AsyncIterable<Uint8Array> = {
      async *[Symbol.asyncIterator]() {
        yield bytes;
      },
    };
    queue.push({ part: { name, filename: null, contentType: info.mimeType, body }, skip: async () => {} });
    notify();
  });

  // The source goes to busboy straight, not through a Readable and pipeline() (those layers cost
  // more than busboy's own parsing for a 200 KB image). A write that busboy holds back (a file body is unread) waits
  // for 'drain', which carries backpressure to the source; the source stops when the reader does.
  const chunks = source[Symbol.asyncIterator]();
  let stopped = false;
  const done = closed(parser);
  // busboy's own failures (and the one fail() destroys it with) land here, once or more.
  parser.on('error', (error: unknown) => {
    if (!stopped) fail(error);
  });
  const pump = async () => {
    let total = 0;
    for (;;) {
      const next = await chunks.next();
      if (stopped || failure) return;
      if (next.done) break;
      const chunk = next.value;
      total += chunk.byteLength;
      if (total > options.maxBytes) {
        throw new MultipartError('payload_too_large', `request body exceeds ${options.maxBytes} bytes`);
      }
      if (!parser.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))) await drained(parser);
      if (stopped || failure) return;
    }
    parser.end();
    await done;
  };
  pump().then(
    () => {
      finished = true;
      notify();
    },
    (error: unknown) => {
      if (!stopped) fail(error);
    },
  );
  try {
    for (;;) {
      if (failure) throw failure;
      const next = queue.shift();
      if (next) {
        yield next.part;
        await next.skip();
        continue;
      }
      if (finished) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    // Done, failed, or the caller left early: stop reading the source (a no-op once finished).
    if (!finished) {
      stopped = true;
      parser.destroy();
      chunks.return?.()?.catch(() => undefined);
    }
  }
}

/** Reads a whole (small) part into a string; MultipartError past `maxBytes`. */
export async function readPartText(body: AsyncIterable<Uint8Array>, maxBytes: number, name: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new MultipartError('payload_too_large', `part ${name} exceeds ${maxBytes} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString('utf8');
}
