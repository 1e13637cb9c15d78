import { Worker } from 'node:worker_threads';

/*
 * Image files for an export, read on a worker thread: a batch of paths goes over, one buffer with
 * their bytes (transferred, not copied) comes back. A small file costs open + read + close; on
 * the event loop, fs.readFile sends each file through the thread pool four times (open, fstat,
 * read, close), which cost more than the reads, while sync reads there would stall the loop
 * (MQTT ingest, other requests) on a cold disk. The worker does the sync reads instead, off the
 * loop and on another core.
 */

export type ImageReader = {
  /** Each file's size, or null when it is not there. */
  sizes(paths: readonly string[]): Promise<(number | null)[]>;
  /** The bytes of each file, `sizes[i]` of them (a file that is shorter or gone is an error). */
  read(paths: readonly string[], sizes: readonly number[]): Promise<Buffer[]>;
  close(): Promise<void>;
};

type Request =
  | { readonly id: number; readonly op: 'sizes'; readonly paths: readonly string[] }
  | { readonly id: number; readonly op: 'read'; readonly paths: readonly string[]; readonly sizes: readonly number[] };
type Reply =
  | { readonly id: number; readonly sizes: number[] }
  | { readonly id: number; readonly buffer: ArrayBuffer }
  | { readonly id: number; readonly error: { readonly message: string; readonly code?: string } };

/** The worker, as plain CommonJS so it runs the same under node, tsx and vitest. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { closeSync, openSync, readSync, statSync } = require('node:fs');
parentPort.on('message', (request) => {
  try {
    if (request.op === 'sizes') {
      const sizes = request.paths.map((path) => {
        const stat = statSync(path, { throwIfNoEntry: false });
        return stat && stat.isFile() ? stat.size : -1;
      });
      parentPort.postMessage({ id: request.id, sizes });
      return;
    }
    let total = 0;
    for (const size of request.sizes) total += size;
    const buffer = new ArrayBuffer(total);
    const view = new Uint8Array(buffer);
    let offset = 0;
    request.paths.forEach((path, i) => {
      const size = request.sizes[i];
      const fd = openSync(path, 'r');
      try {
        let done = 0;
        while (done < size) {
          const n = readSync(fd, view, offset + done, size - done, done);
          if (n === 0) throw new Error(path + ' ended after ' + done + ' of ' + size + ' bytes');
          done += n;
        }
      } finally {
        closeSync(fd);
      }
      offset += size;
    });
    parentPort.postMessage({ id: request.id, buffer }, [buffer]);
  } catch (error) {
    parentPort.postMessage({ id: request.id, error: { message: String(error && error.message), code: error && error.code } });
  }
});
`;

export class ImageReadError extends Error {
  readonly code: string | undefined;
  constructor(message: string, code: string | undefined) {
    super(message);
    this.name = 'ImageReadError';
    this.code = code;
  }
}

/** A reader with its own worker thread; close() ends the thread (an export makes one and closes it). */
export function createImageReader(): ImageReader {
  const worker = new Worker(WORKER_SOURCE, { eval: true });
  const waiting = new Map<number, { resolve: (reply: Reply) => void; reject: (error: Error) => void }>();
  let nextId = 0;
  let failure: Error | null = null;
  const failAll = (error: Error) => {
    failure ??= error;
    for (const pending of waiting.values()) pending.reject(error);
    waiting.clear();
  };
  worker.on('message', (reply: Reply) => {
    const pending = waiting.get(reply.id);
    waiting.delete(reply.id);
    pending?.resolve(reply);
  });
  worker.on('error', failAll);
  worker.on('exit', () => failAll(new Error('the image reader thread has stopped')));

  const ask = (request: Request) =>
    new Promise<Reply>((resolve, reject) => {
      if (failure) return reject(failure);
      waiting.set(request.id, { resolve, reject });
      worker.postMessage(request);
    }).then((reply) => {
      if ('error' in reply) throw new ImageReadError(reply.error.message, reply.error.code);
      return reply;
    });

  return {
    async sizes(paths) {
      if (paths.length === 0) return [];
      const reply = await ask({ id: nextId++, op: 'sizes', paths });
      if (!('sizes' in reply)) throw new Error('the image reader answered a size request with bytes');
      return reply.sizes.map((size) => (size < 0 ? null : size));
    },

    async read(paths, sizes) {
      if (paths.length === 0) return [];
      const reply = await ask({ id: nextId++, op: 'read', paths, sizes });
      if (!('buffer' in reply)) throw new Error('the image reader answered a read request with sizes');
      const buffer = Buffer.from(reply.buffer);
      let offset = 0;
      return sizes.map((size) => {
        const bytes = buffer.subarray(offset, offset + size);
        offset += size;
        return bytes;
      });
    },

    async close() {
      failure ??= new Error('the image reader is closed');
      await worker.terminate();
    },
  };
}
