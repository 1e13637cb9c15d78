import { closeSync, createReadStream, createWriteStream, openSync, readSync, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatasetExportQuery, DatasetSplit } from '@edgeloop/protocol';
import tar from 'tar-stream';
import type { BlobStore } from '../models/blob-store.ts';
import { createCocoWriter } from './coco.ts';
import { type DatasetMember, imageFileName, provenanceOf } from './members.ts';
import { createYoloWriter } from './yolo.ts';

/*
 * A dataset version as a streamed tar, from one pass over its members. Rows come page by page;
 * image bytes are read in batches (small files whole, large ones streamed); the files whose size
 * is known only at the end (annotations.json, provenance.json, split lists) are spooled to a
 * temporary directory first (a tar header needs the size), so memory stays flat however many
 * samples the version holds.
 *
 *   coco: annotations.json, images/<sha256>.jpg
 *   yolo: images/<sha256>.jpg, labels/<sha256>.txt, classes.txt, data.yaml, train.txt, val.txt,
 *         test.txt, provenance.json
 *
 * What it costs (bench/datasets-export.ts, 10,000 images of 20 kB): the members are read from the
 * database once (annotations.json is spooled as two lists, images and annotations, and the image
 * list is kept as sha256 + size); small images are read with open/read/close on this thread into
 * one buffer per batch, at most BATCH_FILES files or BATCH_BYTES between two turns of the event
 * loop (fs.readFile goes through the thread pool four times per file, which cost more than the
 * reads); each image is handed to tar-stream as one buffer, not through an entry stream.
 *
 * Measured and left out: reading on a worker thread into a shared ring (the loop never waits on
 * the disk) cost more CPU in messages than the reads, and added a thread's RSS; on a 2-core
 * machine shared with the client it was slower. The sizes (one stat per image) were already
 * asked synchronously before this change. A warm read is ~10 us per file, so a batch holds the
 * loop well under a millisecond; on a cold disk it is the disk's latency times BATCH_FILES.
 */

export type ExportFormat = DatasetExportQuery['format'];

export type ExportInput = {
  readonly datasetId: string;
  readonly format: ExportFormat;
  readonly labelled: boolean;
  readonly categories: readonly string[];
  /** Every member of the version, in a stable order; called once. */
  readonly members: () => AsyncIterable<DatasetMember>;
};

export type ExportDeps = {
  readonly blobs: Pick<BlobStore, 'pathOf' | 'sizeOf'>;
  readonly tmpDir?: string;
  readonly now?: () => number;
};

/** An image to write: its sha256 (the entry is images/<sha256>.jpg) and its size in the blob store. */
type ImageRef = { readonly sha256: string; readonly size: number };
type ImageMember = ImageRef & { readonly member: DatasetMember };

/** Images up to this size are read whole; larger ones are streamed. */
const WHOLE_READ_LIMIT = 1024 * 1024;
/** Whole reads between two turns of the event loop: at most this many files, and about this many bytes. */
const BATCH_BYTES = 512 * 1024;
const BATCH_FILES = 64;
/** Spooled text is written in pieces of about this size. */
const SPOOL_CHUNK = 64 * 1024;
const COALESCE_BYTES = 256 * 1024;

/** Members whose image bytes are in the blob store, each image once (the first sample with those bytes wins). */
async function* withImages(
  members: AsyncIterable<DatasetMember>,
  blobs: ExportDeps['blobs'],
): AsyncGenerator<ImageMember> {
  const seen = new Set<string>();
  for await (const member of members) {
    const sha256 = member.metadata.image.sha256;
    if (seen.has(sha256)) continue;
    seen.add(sha256);
    const size = blobs.sizeOf(sha256);
    if (size === null) continue;
    yield { sha256, size, member };
  }
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Reads `size` bytes of `path` into `target` at `offset` (open, read, close; no stat: the size is
 * the one the blob store gave, and a blob never changes in place).
 */
function readInto(path: string, target: Buffer, offset: number, size: number): void {
  const fd = openSync(path, 'r');
  try {
    let done = 0;
    while (done < size) {
      const n = readSync(fd, target, offset + done, size - done, done);
      if (n === 0) throw new Error(`${path} ended after ${done} of ${size} bytes`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Images in batches, each small one with its bytes (read into one buffer per batch) and each
 * large one with null (to be streamed). Between two batches the event loop gets a turn.
 */
async function* readBatches<T extends ImageRef>(
  images: AsyncIterable<T> | Iterable<T>,
  pathOf: (sha256: string) => string,
): AsyncGenerator<{ image: T; bytes: Buffer | null }[]> {
  let pending: T[] = [];
  let pendingBytes = 0;
  const read = () => {
    const buffer = Buffer.allocUnsafe(pendingBytes);
    let offset = 0;
    const batch = pending.map((image) => {
      if (image.size > WHOLE_READ_LIMIT) return { image, bytes: null };
      readInto(pathOf(image.sha256), buffer, offset, image.size);
      const bytes = buffer.subarray(offset, offset + image.size);
      offset += image.size;
      return { image, bytes };
    });
    pending = [];
    pendingBytes = 0;
    return batch;
  };
  for await (const image of images) {
    pending.push(image);
    if (image.size <= WHOLE_READ_LIMIT) pendingBytes += image.size;
    if (pendingBytes >= BATCH_BYTES || pending.length >= BATCH_FILES || image.size > WHOLE_READ_LIMIT) {
      yield read();
      await turn();
    }
  }
  if (pending.length > 0) yield read();
}

/** A file of text pieces written in order; resolves with its size at the end. */
function createSpool(path: string) {
  const file: WriteStream = createWriteStream(path);
  let failure: Error | null = null;
  let waiting: { resolve: () => void; reject: (error: Error) => void } | null = null;
  file.on('error', (error) => {
    failure = error;
    waiting?.reject(error);
  });
  file.on('drain', () => waiting?.resolve());
  let pending = '';
  let bytes = 0;
  const flush = async () => {
    if (failure) throw failure;
    if (pending === '') return;
    const chunk = Buffer.from(pending, 'utf8');
    pending = '';
    bytes += chunk.byteLength;
    if (!file.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        waiting = { resolve, reject };
      });
      waiting = null;
    }
  };
  return {
    /** Appends text; the returned promise (when any) waits for the file to take it. */
    write(text: string): Promise<void> | undefined {
      pending += text;
      return pending.length >= SPOOL_CHUNK ? flush() : undefined;
    },
    /** Closes the file without finishing it (an export that stopped early). */
    destroy(): void {
      if (!file.closed) file.destroy();
    },
    async end(): Promise<number> {
      await flush();
      await new Promise<void>((resolve, reject) =>
        file.end((error?: Error | null) => (error ? reject(error) : resolve())),
      );
      if (failure) throw failure;
      return bytes;
    },
  };
}

/** What writeChunks needs of a Node or streamx writable. */
type ChunkTarget = {
  write(chunk: string | Uint8Array): boolean;
  once(event: 'drain', listener: () => void): unknown;
  readonly destroyed: boolean;
};

async function writeChunks(target: ChunkTarget, chunks: AsyncIterable<string | Uint8Array>, closed: Promise<void>) {
  for await (const chunk of chunks) {
    if (target.destroyed) throw new Error('export stream closed');
    if (!target.write(chunk)) {
      await Promise.race([new Promise<void>((resolve) => target.once('drain', () => resolve())), closed]);
    }
  }
}

/** Text pieces and the bytes of files, in order, as one source. */
async function* concatenated(parts: readonly (string | { readonly path: string })[]): AsyncGenerator<string | Buffer> {
  for (const part of parts) {
    if (typeof part === 'string') yield part;
    else yield* createReadStream(part.path, { highWaterMark: WHOLE_READ_LIMIT }) as AsyncIterable<Buffer>;
  }
}

/** The export as a stream of tar bytes; the temporary files go when it ends or is destroyed. */
export function exportDatasetTar(input: ExportInput, deps: ExportDeps): tar.Pack {
  const pack = tar.pack();
  const closed = new Promise<void>((resolve) => pack.once('close', () => resolve()));
  const mtime = new Date(deps.now?.() ?? Date.now());
  const pathOf = (sha256: string) => deps.blobs.pathOf(sha256);

  /** One entry, its bytes given whole; resolves when tar-stream has taken them. */
  const addBuffer = (name: string, bytes: Buffer | string) =>
    new Promise<void>((resolve, reject) => {
      pack.entry({ name, mtime, mode: 0o644 }, bytes, (error) => (error ? reject(error) : resolve()));
    });
  /** One entry of `size` bytes from `source`; resolves when tar-stream has taken them. */
  const addStreamed = (name: string, size: number, source: AsyncIterable<string | Uint8Array>) =>
    new Promise<void>((resolve, reject) => {
      const entry = pack.entry({ name, size, mtime, mode: 0o644 }, (error) => (error ? reject(error) : resolve()));
      writeChunks(entry, source, closed).then(
        () => entry.end(undefined),
        (error: unknown) => {
          entry.destroy(error as Error);
          reject(error);
        },
      );
    });
  /**
   * The images entries (and, per image, whatever `after` adds), batch by batch; a batch is handed
   * to tar-stream whole and the next one is read once tar-stream has taken it.
   */
  const addImages = async <T extends ImageRef>(
    images: AsyncIterable<T> | Iterable<T>,
    after?: (image: T) => Promise<void> | undefined,
  ) => {
    for await (const batch of readBatches(images, pathOf)) {
      if (pack.destroyed) return;
      // Every entry promise of the batch is awaited (Promise.all), so when the download is
      // cancelled and tar-stream destroys the queued entries, each rejection is handled here.
      let pending: Promise<void>[] = [];
      for (const { image, bytes } of batch) {
        const name = `images/${image.sha256}.jpg`;
        if (bytes) pending.push(addBuffer(name, bytes));
        else {
          await Promise.all(pending);
          pending = [
            addStreamed(name, image.size, createReadStream(pathOf(image.sha256), { highWaterMark: WHOLE_READ_LIMIT })),
          ];
        }
        const added = after?.(image);
        if (added) pending.push(added);
      }
      await Promise.all(pending);
    }
  };

  const run = async () => {
    const dir = await mkdtemp(join(deps.tmpDir ?? tmpdir(), 'edgeloop-export-'));
    const spools: ReturnType<typeof createSpool>[] = [];
    const spool = (name: string) => {
      const created = createSpool(join(dir, name));
      spools.push(created);
      return created;
    };
    try {
      const file = (name: string) => join(dir, name);
      const members = withImages(input.members(), deps.blobs);
      if (input.format === 'coco') {
        // One pass: the images and annotations lists go to two spools; the image list stays in
        // memory as sha256 + size (a few tens of bytes per image).
        const coco = createCocoWriter({
          labelled: input.labelled,
          categories: input.categories,
          description: `edgeloop dataset ${input.datasetId}`,
          now: mtime.getTime(),
        });
        const imagesPart = spool('images.part');
        const annotationsPart = spool('annotations.part');
        const images: ImageRef[] = [];
        for await (const { sha256, size, member } of members) {
          if (pack.destroyed) return;
          const parts = coco.add(member);
          if (!parts) continue;
          images.push({ sha256, size });
          const spooled = imagesPart.write(parts.image);
          if (spooled) await spooled;
          const annotated = parts.annotations === '' ? undefined : annotationsPart.write(parts.annotations);
          if (annotated) await annotated;
        }
        const head = coco.head();
        const middle = coco.middle();
        const tail = coco.tail();
        const size =
          Buffer.byteLength(head) +
          (await imagesPart.end()) +
          Buffer.byteLength(middle) +
          (await annotationsPart.end()) +
          Buffer.byteLength(tail);
        await addStreamed(
          'annotations.json',
          size,
          concatenated([head, { path: file('images.part') }, middle, { path: file('annotations.part') }, tail]),
        );
        await addImages(images);
      } else {
        const yolo = createYoloWriter({ labelled: input.labelled, categories: input.categories });
        const lists = {
          train: spool('train.txt'),
          val: spool('val.txt'),
          test: spool('test.txt'),
        } satisfies Record<DatasetSplit, ReturnType<typeof createSpool>>;
        const provenance = spool('provenance.json');
        let count = 0;
        await addImages(members, (image) => {
          const { member } = image;
          const listed = lists[member.split].write(`./${imageFileName(member)}\n`);
          const text = `${count === 0 ? '[\n' : ',\n'}${JSON.stringify({ image: imageFileName(member), ...provenanceOf(member) })}`;
          count++;
          const spooled = provenance.write(text);
          const labels = addBuffer(`labels/${image.sha256}.txt`, yolo.labelsOf(member));
          return listed || spooled ? Promise.all([listed, spooled, labels]).then(() => undefined) : labels;
        });
        if (pack.destroyed) return;
        await provenance.write(count === 0 ? '[]\n' : '\n]\n');
        const sizes = {
          'train.txt': await lists.train.end(),
          'val.txt': await lists.val.end(),
          'test.txt': await lists.test.end(),
          'provenance.json': await provenance.end(),
        };
        await addBuffer(
          'classes.txt',
          yolo
            .classNames()
            .map((name) => `${name}\n`)
            .join(''),
        );
        await addBuffer('data.yaml', yolo.dataYaml());
        for (const [name, size] of Object.entries(sizes))
          await addStreamed(name, size, concatenated([{ path: file(name) }]));
      }
    } finally {
      for (const open of spools) open.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  };
  // Finalized only after the temporary files are gone, so a reader at the end finds none left.
  run().then(
    () => {
      if (!pack.destroyed) pack.finalize();
    },
    (error: unknown) => {
      if (!pack.destroyed) pack.destroy(error as Error);
    },
  );
  return pack;
}

/** The export as a web stream (a Hono response body); cancelling it stops the export. */
export function exportDatasetWebStream(input: ExportInput, deps: ExportDeps): ReadableStream<Uint8Array> {
  const pack = exportDatasetTar(input, deps);
  const iterator = pack[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>(
    {
      // tar-stream hands out headers, bodies and padding as separate small buffers; they go out
      // in chunks of about COALESCE_BYTES (fewer socket writes).
      async pull(controller) {
        try {
          const parts: Buffer[] = [];
          let size = 0;
          while (size < COALESCE_BYTES) {
            const next = (await iterator.next()) as IteratorResult<Buffer>;
            if (next.done) break;
            parts.push(next.value);
            size += next.value.byteLength;
          }
          if (size > 0) {
            const chunk = parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
            controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          }
          if (size < COALESCE_BYTES) controller.close();
        } catch (error) {
          controller.error(error);
        }
      },
      cancel() {
        pack.destroy();
      },
    },
    { highWaterMark: 0 },
  );
}
