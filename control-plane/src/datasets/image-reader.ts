import { Worker } from 'node:worker_threads';

/*
 * Image files for an export, read on a worker thread into a ring of shared memory: a batch of
 * paths goes over, the worker reads the files into one slice of the ring, and the caller gets
 * views on that slice. Nothing is copied between the threads and nothing is allocated per file,
 * so the export leaves no image-sized garbage behind (which grew the RSS until the next GC).
 *
 * Why a worker: a small file costs open + read + close. On the event loop, fs.readFile sends each
 * file through the thread pool four times (open, fstat, read, close), which cost more than the
 * reads; sync reads there would stall the loop (MQTT ingest, other requests) on a cold disk.
 *
 * Ring slices are handed out and given back in order: `read` waits while the ring is full, and the
 * caller gives space back with `release(view)` once it has copied or written every view up to
 * and including `view`.
 */

export type ImageReader = {
  /** Each file's size, or null when it is not there. */
  sizes(paths: readonly string[]): Promise<(number | null)[]>;
  /**
   * The bytes of each file, `sizes[i]` of them (a file that is shorter or gone is an error), as
   * views on the ring (their `buffer` is `ring`). The batch may total at most `maxBatchBytes`.
   */
  read(paths: readonly string[], sizes: readonly number[]): Promise<Buffer[]>;
  /** Gives back the ring up to the end of `view` (and every view handed out before it). */
  release(view: Uint8Array): void;
  /** The memory the views live in (to tell them from other buffers). */
  readonly ring: SharedArrayBuffer;
  readonly maxBatchBytes: number;
  close(): Promise<void>;
};

export type ImageReaderOptions = {
  /** Bytes of the ring (default 4 MiB); a batch may use at most a quarter of it. */
  readonly ringBytes?: number;
};

type Request =
  | { readonly id: number; readonly op: 'sizes'; readonly paths: readonly string[] }
  | {
      readonly id: number;
      readonly op: 'read';
      readonly offset: number;
      readonly paths: readonly string[];
      readonly sizes: readonly number[];
    };
type Reply =
  | { readonly id: number; readonly sizes: number[] }
  | { readonly id: number; readonly read: true }
  | { readonly id: number; readonly error: { readonly message: string; readonly code?: string } };

/** The worker, as plain CommonJS so it runs the same under node, tsx and vitest. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { closeSync, openSync, readSync, statSync } = require('node:fs');
const ring = new Uint8Array(workerData.ring);
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
    let offset = request.offset;
    request.paths.forEach((path, i) => {
      const size = request.sizes[i];
      const fd = openSync(path, 'r');
      try {
        let done = 0;
        while (done < size) {
          const n = readSync(fd, ring, offset + done, size - done, done);
          if (n === 0) throw new Error(path + ' ended after ' + done + ' of ' + size + ' bytes');
          done += n;
        }
      } finally {
        closeSync(fd);
      }
      offset += size;
    });
    parentPort.postMessage({ id: request.id, read: true });
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

/** A reader with its own worker thread and ring; close() ends both (an export makes one and closes it). */
export function createImageReader(options: ImageReaderOptions = {}): ImageReader {
  const ringBytes = options.ringBytes ?? 4 * 1024 * 1024;
  const maxBatchBytes = Math.floor(ringBytes / 4);
  const ring = new SharedArrayBuffer(ringBytes);
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ring } });
  const waiting = new Map<number, { resolve: (reply: Reply) => void; reject: (error: Error) => void }>();
  let nextId = 0;
  let failure: Error | null = null;

  // The slices in use, oldest first, as [start, end) offsets (never empty); a new one goes after
  // the newest, or at 0 when the end of the ring is too short. Space is handed out in the order
  // it is asked for, so slices are given back in that order too.
  const slices: { start: number; end: number }[] = [];
  const spaceWaiters: (() => void)[] = [];
  let reserving: Promise<unknown> = Promise.resolve();
  /** Where a slice of `size` bytes fits now, or null. */
  const fit = (size: number): number | null => {
    if (slices.length === 0) return 0;
    const oldest = slices[0]!.start;
    const head = slices[slices.length - 1]!.end;
    if (head > oldest) {
      if (ringBytes - head >= size) return head;
      return oldest >= size ? 0 : null;
    }
    return oldest - head >= size ? head : null;
  };
  const wakeAll = () => {
    for (const wake of spaceWaiters.splice(0)) wake();
  };
  /** A slice of `size` bytes, once there is room for it (after every earlier reservation). */
  const reserve = (size: number): Promise<number> => {
    const reserved = reserving.then(async () => {
      for (;;) {
        if (failure) throw failure;
        const offset = fit(size);
        if (offset !== null) {
          slices.push({ start: offset, end: offset + size });
          return offset;
        }
        await new Promise<void>((resolve) => spaceWaiters.push(resolve));
      }
    });
    reserving = reserved.catch(() => undefined);
    return reserved;
  };

  const failAll = (error: Error) => {
    failure ??= error;
    for (const pending of waiting.values()) pending.reject(error);
    waiting.clear();
    wakeAll();
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
    ring,
    maxBatchBytes,

    async sizes(paths) {
      if (paths.length === 0) return [];
      const reply = await ask({ id: nextId++, op: 'sizes', paths });
      if (!('sizes' in reply)) throw new Error('the image reader answered a size request with bytes');
      return reply.sizes.map((size) => (size < 0 ? null : size));
    },

    async read(paths, sizes) {
      let total = 0;
      for (const size of sizes) total += size;
      if (total === 0) return sizes.map(() => Buffer.alloc(0));
      if (total > maxBatchBytes) throw new RangeError(`a read batch of ${total} bytes exceeds ${maxBatchBytes}`);
      const offset = await reserve(total);
      await ask({ id: nextId++, op: 'read', offset, paths, sizes });
      let at = offset;
      return sizes.map((size) => {
        const view = Buffer.from(ring, at, size);
        at += size;
        return view;
      });
    },

    release(view) {
      if (view.buffer !== ring || view.byteLength === 0) return;
      const start = view.byteOffset;
      const end = start + view.byteLength;
      const index = slices.findIndex((slice) => start >= slice.start && end <= slice.end);
      if (index < 0) return;
      slices.splice(0, index);
      if (end === slices[0]!.end) slices.shift();
      else slices[0]!.start = end;
      wakeAll();
    },

    async close() {
      failAll(new Error('the image reader is closed'));
      await worker.terminate();
    },
  };
}
