/*
 * A streaming multipart/form-data reader (RFC 7578) for uploads too large to hold in memory:
 * parts are yielded one at a time with their body as an async iterable of chunks, so a 1 GiB
 * model goes from the socket to a file in bounded memory. A part whose body the caller does not
 * read is skipped. The whole request is capped at `maxBytes`, headers at `maxHeaderBytes`.
 */

export class MultipartError extends Error {
  readonly code: 'bad_request' | 'payload_too_large';
  constructor(code: 'bad_request' | 'payload_too_large', message: string) {
    super(message);
    this.name = 'MultipartError';
    this.code = code;
  }
}

export type MultipartPart = {
  /** The form field name (Content-Disposition name). */
  readonly name: string;
  readonly filename: string | null;
  readonly contentType: string | null;
  readonly body: AsyncIterable<Uint8Array>;
};

export type MultipartOptions = {
  /** Bytes of the whole body, headers and boundaries included. */
  readonly maxBytes: number;
  /** Bytes of one part's headers (and of the preamble). */
  readonly maxHeaderBytes?: number;
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
    // RFC 2046: 1 to 70 characters.
    return value.length >= 1 && value.length <= 70 ? value : null;
  }
  return null;
}

const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');

/** Pulls chunks from the source into a small buffer, counting every byte against the limit. */
function createReader(source: AsyncIterable<Uint8Array>, maxBytes: number) {
  const iterator = source[Symbol.asyncIterator]();
  let buffer: Buffer = Buffer.alloc(0);
  let total = 0;
  let ended = false;
  return {
    get buffer() {
      return buffer;
    },
    consume(bytes: number) {
      buffer = buffer.subarray(bytes);
    },
    /** Reads one more chunk; false at the end of the source. */
    async more(): Promise<boolean> {
      if (ended) return false;
      const next = await iterator.next();
      if (next.done) {
        ended = true;
        return false;
      }
      const chunk = next.value;
      total += chunk.byteLength;
      if (total > maxBytes) throw new MultipartError('payload_too_large', `request body exceeds ${maxBytes} bytes`);
      const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      buffer = buffer.length === 0 ? bytes : Buffer.concat([buffer, bytes]);
      return true;
    },
    async close() {
      await iterator.return?.();
    },
  };
}

function parseHeaders(text: string): { name: string; filename: string | null; contentType: string | null } {
  let disposition: string | null = null;
  let contentType: string | null = null;
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon === -1) throw new MultipartError('bad_request', `malformed part header "${line.slice(0, 80)}"`);
    const key = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (key === 'content-disposition') disposition = value;
    else if (key === 'content-type') contentType = value;
  }
  if (!disposition || !/^form-data\b/i.test(disposition)) {
    throw new MultipartError('bad_request', 'a part lacks Content-Disposition: form-data');
  }
  const param = (key: string): string | null => {
    const match = new RegExp(`;\\s*${key}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]+))`, 'i').exec(disposition);
    if (!match) return null;
    return match[1] !== undefined ? match[1].replace(/\\(.)/g, '$1') : (match[2] ?? null);
  };
  const name = param('name');
  if (name === null) throw new MultipartError('bad_request', 'a part has no name');
  return { name, filename: param('filename'), contentType };
}

/**
 * Yields the parts of a multipart/form-data body. Read (or skip) each part's body before asking
 * for the next part. Throws MultipartError for a malformed body or one over the limits.
 */
export async function* readMultipart(
  source: AsyncIterable<Uint8Array>,
  boundary: string,
  options: MultipartOptions,
): AsyncGenerator<MultipartPart> {
  const maxHeaderBytes = options.maxHeaderBytes ?? 16 * 1024;
  const maxParts = options.maxParts ?? 16;
  const reader = createReader(source, options.maxBytes);
  const opening = Buffer.from(`--${boundary}`);
  const delimiter = Buffer.from(`\r\n--${boundary}`);

  const need = async (bytes: number, what: string) => {
    while (reader.buffer.length < bytes) {
      if (!(await reader.more())) throw new MultipartError('bad_request', `body ends inside ${what}`);
    }
  };

  try {
    // Preamble: skip to the first boundary.
    for (;;) {
      const at = reader.buffer.indexOf(opening);
      if (at !== -1) {
        reader.consume(at + opening.length);
        break;
      }
      if (reader.buffer.length > maxHeaderBytes) throw new MultipartError('bad_request', 'no multipart boundary found');
      if (!(await reader.more())) throw new MultipartError('bad_request', 'no multipart boundary found');
    }

    for (let parts = 0; ; parts++) {
      // After a boundary: `--` closes the body; otherwise optional padding and CRLF.
      await need(2, 'a boundary');
      if (reader.buffer[0] === 0x2d && reader.buffer[1] === 0x2d) return;
      for (;;) {
        const lineEnd = reader.buffer.indexOf(CRLF);
        if (lineEnd !== -1) {
          if (reader.buffer.subarray(0, lineEnd).toString('latin1').trim() !== '') {
            throw new MultipartError('bad_request', 'unexpected bytes after a boundary');
          }
          reader.consume(lineEnd + 2);
          break;
        }
        if (reader.buffer.length > 256) throw new MultipartError('bad_request', 'unexpected bytes after a boundary');
        if (!(await reader.more())) throw new MultipartError('bad_request', 'body ends inside a boundary');
      }
      if (parts >= maxParts) throw new MultipartError('bad_request', `more than ${maxParts} parts`);

      // Headers.
      let headerEnd: number;
      for (;;) {
        headerEnd = reader.buffer.indexOf(HEADER_END);
        if (headerEnd !== -1) break;
        if (reader.buffer.length > maxHeaderBytes) {
          throw new MultipartError('bad_request', `part headers exceed ${maxHeaderBytes} bytes`);
        }
        if (!(await reader.more())) throw new MultipartError('bad_request', 'body ends inside part headers');
      }
      const headers = parseHeaders(reader.buffer.subarray(0, headerEnd).toString('utf8'));
      reader.consume(headerEnd + HEADER_END.length);

      // Body: everything up to the next CRLF--boundary, streamed.
      let finished = false;
      /** The next chunk of this part's body, or null after its last. */
      const nextChunk = async (): Promise<Buffer | null> => {
        while (!finished) {
          const at = reader.buffer.indexOf(delimiter);
          if (at !== -1) {
            const last = reader.buffer.subarray(0, at);
            reader.consume(at + delimiter.length);
            finished = true;
            return last.length > 0 ? last : null;
          }
          // Keep a tail that could be the start of the delimiter.
          const safe = reader.buffer.length - (delimiter.length - 1);
          if (safe > 0) {
            const chunk = reader.buffer.subarray(0, safe);
            reader.consume(safe);
            return chunk;
          }
          if (!(await reader.more())) throw new MultipartError('bad_request', 'body ends inside a part');
        }
        return null;
      };
      const body: AsyncIterable<Uint8Array> = {
        async *[Symbol.asyncIterator]() {
          for (;;) {
            const chunk = await nextChunk();
            if (chunk === null) return;
            yield chunk;
          }
        },
      };
      yield { ...headers, body };
      // Skip whatever the caller left unread.
      while ((await nextChunk()) !== null) {
        // discard
      }
    }
  } finally {
    await reader.close();
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
