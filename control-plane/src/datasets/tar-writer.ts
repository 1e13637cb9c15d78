import { closeSync, openSync, readSync } from 'node:fs';

/*
 * A ustar archive written straight into large chunks: each entry's 512-byte header, its bytes
 * (read from disk with readSync into the chunk, no intermediate buffer) and its padding go into
 * the chunk in place, and a chunk goes to the sink when it is full. A chunk the sink has released
 * is reused (no fresh memory to fault in per chunk), so a whole export touches a few chunks.
 *
 * Why not tar-stream: it hands out every header, body and padding as its own buffer through a
 * streamx queue, then those had to be coalesced (one more copy) and carried through a web stream
 * (a promise and a copy per chunk); on the export bench (10,000 images of 20 kB) that overhead
 * was as large as the disk reads and the socket writes together.
 *
 * Backpressure: when the sink says it is full, the next chunk is still filled, and the writer
 * waits for the sink before handing it over (disk reads overlap the client's draining). A sink
 * that went away (the client disconnected) stops the writer at its next chunk with TarSinkClosed.
 */

export type TarSink = {
  /**
   * Takes a chunk. `release` is called when the sink no longer needs the chunk's memory (a sink
   * that keeps chunks, or cannot tell, never calls it). Returns false when the writer should
   * wait for `ready()` before the next chunk.
   */
  write(chunk: Buffer, release: () => void): boolean;
  /** Resolves when the sink takes chunks again, or when it closed. */
  ready(): Promise<void>;
  /** The reader went away: nothing more is taken. */
  readonly closed: boolean;
};

/** The reader of the archive went away before its end. */
export class TarSinkClosed extends Error {
  constructor() {
    super('the export stream was closed by its reader');
    this.name = 'TarSinkClosed';
  }
}

/** A piece of an entry's content: text, bytes, or a file's whole content. */
export type TarPart = string | Uint8Array | { readonly path: string };

export type TarWriterOptions = {
  /** Size of the chunks handed to the sink. */
  readonly chunkBytes?: number;
  /** Modification time of every entry. */
  readonly mtime: Date;
  /** Permission bits of every entry. */
  readonly mode?: number;
};

export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** Released chunks kept for reuse. */
const POOL_LIMIT = 4;
const BLOCK = 512;
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
/** The largest size the 11 octal digits of a ustar size field hold; larger ones are base-256. */
const MAX_OCTAL_SIZE = 0o77777777777;

/** The fields every header shares (mode, owner, mtime, type, magic); name, size and checksum are filled per entry. */
function headerTemplate(mode: number, mtime: Date): Buffer {
  const header = Buffer.alloc(BLOCK);
  const octal = (value: number, digits: number, at: number) =>
    header.write(`${value.toString(8).padStart(digits, '0')} `, at, 'latin1');
  octal(mode & 0o7777, 6, 100);
  octal(0, 6, 108);
  octal(0, 6, 116);
  octal(Math.max(0, Math.floor(mtime.getTime() / 1000)), 11, 136);
  header[156] = 0x30; // '0': a regular file
  header.write('ustar\u000000', 257, 'latin1');
  octal(0, 6, 329);
  octal(0, 6, 337);
  return header;
}

/** Splits a name into the ustar prefix and name fields; throws when it does not fit. */
function splitName(name: string): { prefix: string; name: string } {
  if (!/^[\x20-\x7e]+$/.test(name)) throw new Error(`tar entry name ${JSON.stringify(name)} is not printable ASCII`);
  if (name.length <= 100) return { prefix: '', name };
  for (let slash = name.indexOf('/'); slash !== -1; slash = name.indexOf('/', slash + 1)) {
    if (slash <= 155 && name.length - slash - 1 <= 100 && slash > 0) {
      return { prefix: name.slice(0, slash), name: name.slice(slash + 1) };
    }
  }
  throw new Error(`tar entry name ${name} is too long for ustar`);
}

export function createTarWriter(sink: TarSink, options: TarWriterOptions) {
  const chunkBytes = Math.max(BLOCK * 2, options.chunkBytes ?? DEFAULT_CHUNK_BYTES);
  const template = headerTemplate(options.mode ?? 0o644, options.mtime);
  let templateSum = 8 * 0x20; // the checksum field counts as spaces
  for (const byte of template) templateSum += byte;
  const pool: Buffer[] = [];
  let chunk: Buffer = Buffer.allocUnsafeSlow(chunkBytes);
  let used = 0;
  /** The sink asked to wait before the next chunk. */
  let mustWait = false;

  const release = (buffer: Buffer) => () => {
    if (pool.length < POOL_LIMIT) pool.push(buffer);
  };

  /**
   * Hands the filled part of the chunk to the sink and starts another; waits first when the sink
   * asked, else gives the event loop a turn (a sink that always takes its chunks at once must not
   * hold the loop for a whole export).
   */
  const flush = async (): Promise<void> => {
    if (mustWait) {
      await sink.ready();
      mustWait = false;
    } else await turn();
    if (sink.closed) throw new TarSinkClosed();
    if (used === 0) return;
    const full = chunk;
    const filled = used;
    chunk = pool.pop() ?? Buffer.allocUnsafeSlow(chunkBytes);
    used = 0;
    mustWait = !sink.write(full.subarray(0, filled), release(full));
  };

  /** Room for at least `bytes` (at most a chunk) in the current chunk, flushing it when needed. */
  const room = (bytes: number): Promise<void> | undefined => (chunkBytes - used < bytes ? flush() : undefined);

  const writeHeader = (entryName: string, size: number) => {
    if (!Number.isSafeInteger(size) || size < 0) throw new Error(`tar entry ${entryName}: bad size ${size}`);
    const { prefix, name } = splitName(entryName);
    const at = used;
    chunk.set(template, at);
    let sum = templateSum;
    chunk.write(name, at, 'latin1');
    for (let i = 0; i < name.length; i++) sum += name.charCodeAt(i);
    if (prefix) {
      chunk.write(prefix, at + 345, 'latin1');
      for (let i = 0; i < prefix.length; i++) sum += prefix.charCodeAt(i);
    }
    if (size <= MAX_OCTAL_SIZE) {
      const digits = `${size.toString(8).padStart(11, '0')} `;
      chunk.write(digits, at + 124, 'latin1');
      for (let i = 0; i < 12; i++) sum += digits.charCodeAt(i);
    } else {
      // GNU base-256: 0x80, then the size big-endian in the 11 bytes left.
      chunk[at + 124] = 0x80;
      sum += 0x80;
      let rest = size;
      for (let i = 11; i >= 1; i--) {
        const byte = rest % 256;
        chunk[at + 124 + i] = byte;
        sum += byte;
        rest = Math.floor(rest / 256);
      }
    }
    chunk.write(`${sum.toString(8).padStart(6, '0')} `, at + 148, 'latin1');
    chunk[at + 155] = 0;
    used += BLOCK;
  };

  /** Zeros up to the next block boundary after `size` content bytes. */
  const pad = async (size: number) => {
    const padding = (BLOCK - (size % BLOCK)) % BLOCK;
    if (padding === 0) return;
    const waited = room(padding);
    if (waited) await waited;
    chunk.fill(0, used, used + padding);
    used += padding;
  };

  /** Copies bytes into the chunks. */
  const copy = async (bytes: Uint8Array) => {
    let done = 0;
    while (done < bytes.byteLength) {
      if (used === chunkBytes) await flush();
      const n = Math.min(bytes.byteLength - done, chunkBytes - used);
      chunk.set(bytes.subarray(done, done + n), used);
      used += n;
      done += n;
    }
  };

  /**
   * Reads a file into the chunks: `limit` bytes at most (its declared size), or to its end when
   * null. Returns the bytes read. The descriptor is closed however it ends.
   */
  const readFile = async (path: string, limit: number | null): Promise<number> => {
    const fd = openSync(path, 'r');
    try {
      let done = 0;
      for (;;) {
        if (limit !== null && done === limit) return done;
        if (used === chunkBytes) await flush();
        const want = limit === null ? chunkBytes - used : Math.min(limit - done, chunkBytes - used);
        const n = readSync(fd, chunk, used, want, done);
        if (n === 0) {
          if (limit === null) return done;
          throw new Error(`${path} ended after ${done} of ${limit} bytes`);
        }
        used += n;
        done += n;
      }
    } finally {
      closeSync(fd);
    }
  };

  /** One small file read whole into the current chunk (it fits): no promise when no flush is needed. */
  const fileInPlace = (name: string, path: string, size: number) => {
    writeHeader(name, size);
    const fd = openSync(path, 'r');
    try {
      let done = 0;
      while (done < size) {
        const n = readSync(fd, chunk, used + done, size - done, done);
        if (n === 0) throw new Error(`${path} ended after ${done} of ${size} bytes`);
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    used += size;
    const padding = (BLOCK - (size % BLOCK)) % BLOCK;
    chunk.fill(0, used, used + padding);
    used += padding;
  };

  return {
    /**
     * An entry of `size` bytes read from `path` (exactly `size`: a file that ends short fails the
     * archive). Returns a promise only when it had to wait for the sink.
     */
    file(name: string, path: string, size: number): Promise<void> | undefined {
      const whole = BLOCK + size + BLOCK;
      if (whole <= chunkBytes - used) {
        fileInPlace(name, path, size);
        return undefined;
      }
      return (async () => {
        const waited = room(BLOCK);
        if (waited) await waited;
        writeHeader(name, size);
        await readFile(path, size);
        await pad(size);
      })();
    },

    /** An entry of `size` bytes made of `parts` in order; fails when they do not add up to `size`. */
    async parts(name: string, size: number, parts: readonly TarPart[]): Promise<void> {
      const waited = room(BLOCK);
      if (waited) await waited;
      writeHeader(name, size);
      let written = 0;
      for (const part of parts) {
        if (typeof part === 'string') {
          const bytes = Buffer.from(part, 'utf8');
          await copy(bytes);
          written += bytes.byteLength;
        } else if (part instanceof Uint8Array) {
          await copy(part);
          written += part.byteLength;
        } else written += await readFile(part.path, null);
        if (written > size) throw new Error(`tar entry ${name}: more than the ${size} bytes declared`);
      }
      if (written !== size) throw new Error(`tar entry ${name}: ${written} bytes written of ${size} declared`);
      await pad(size);
    },

    /** An entry holding `content`. Returns a promise only when it had to wait for the sink. */
    bytes(name: string, content: string | Uint8Array): Promise<void> | undefined {
      const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
      if (BLOCK + bytes.byteLength + BLOCK > chunkBytes - used) return this.parts(name, bytes.byteLength, [bytes]);
      writeHeader(name, bytes.byteLength);
      chunk.set(bytes, used);
      used += bytes.byteLength;
      const padding = (BLOCK - (bytes.byteLength % BLOCK)) % BLOCK;
      chunk.fill(0, used, used + padding);
      used += padding;
      return undefined;
    },

    /** The two zero blocks that end an archive, and the last chunk. */
    async end(): Promise<void> {
      for (let i = 0; i < 2; i++) {
        const waited = room(BLOCK);
        if (waited) await waited;
        chunk.fill(0, used, used + BLOCK);
        used += BLOCK;
      }
      await flush();
      if (mustWait) await sink.ready();
      if (sink.closed) throw new TarSinkClosed();
    },
  };
}

export type TarWriter = ReturnType<typeof createTarWriter>;
