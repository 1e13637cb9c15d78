import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatasetExportQuery, DatasetSplit } from '@edgeloop/protocol';
import tar from 'tar-stream';
import type { BlobStore } from '../models/blob-store.ts';
import { createCocoWriter } from './coco.ts';
import { createImageReader, type ImageReader } from './image-reader.ts';
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
 * list is kept as sha256 + size); the image files are sized and read on a worker thread into a
 * ring of shared memory (image-reader.ts), a batch per request, so the event loop neither waits
 * on the disk nor allocates per file; each image goes to tar-stream as one buffer (a view on the
 * ring), and the tar comes out copied into chunks of COALESCE_BYTES, each ring view given back
 * as soon as it is copied.
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
  readonly blobs: Pick<BlobStore, 'pathOf'>;
  /** Reads the image files (a worker thread by default; one per export, closed at its end). */
  readonly createReader?: () => ImageReader;
  readonly tmpDir?: string;
  readonly now?: () => number;
};

/** An image to write: its sha256 (the entry is images/<sha256>.jpg) and its size in the blob store. */
type ImageRef = { readonly sha256: string; readonly size: number };
type ImageMember = ImageRef & { readonly member: DatasetMember };

/** Images up to this size are read whole; larger ones are streamed. */
const WHOLE_READ_LIMIT = 1024 * 1024;
/** One read request: about this many bytes (at most the reader's maxBatchBytes) or files. */
const BATCH_BYTES = 512 * 1024;
const BATCH_FILES = 128;
/** Read requests in flight ahead of the tar writer. */
const READ_AHEAD = 1;
/** Members per size request (one stat each, on the reader's thread). */
const SIZE_BATCH = 256;
/** Spooled text is written in pieces of about this size. */
const SPOOL_CHUNK = 64 * 1024;
const COALESCE_BYTES = 256 * 1024;

/** Members whose image bytes are in the blob store, each image once (the first sample with those bytes wins). */
async function* withImages(
  members: AsyncIterable<DatasetMember>,
  reader: ImageReader,
  pathOf: (sha256: string) => string,
): AsyncGenerator<ImageMember> {
  const seen = new Set<string>();
  type Sized = { readonly members: DatasetMember[]; readonly sizes: Promise<(number | null)[]> };
  let batch: DatasetMember[] = [];
  // One batch is sized on the reader's thread while the next one is read from the database.
  let inFlight: Sized | null = null;
  const send = (): Sized => {
    const sized = { members: batch, sizes: reader.sizes(batch.map((m) => pathOf(m.metadata.image.sha256))) };
    sized.sizes.catch(() => undefined);
    batch = [];
    return sized;
  };
  async function* emit(sized: Sized): AsyncGenerator<ImageMember> {
    const sizes = await sized.sizes;
    for (let i = 0; i < sized.members.length; i++) {
      const size = sizes[i];
      const member = sized.members[i]!;
      if (size !== null && size !== undefined) yield { sha256: member.metadata.image.sha256, size, member };
    }
  }
  for await (const member of members) {
    const sha256 = member.metadata.image.sha256;
    if (seen.has(sha256)) continue;
    seen.add(sha256);
    batch.push(member);
    if (batch.length >= SIZE_BATCH) {
      const next = send();
      if (inFlight) yield* emit(inFlight);
      inFlight = next;
    }
  }
  const last = batch.length > 0 ? send() : null;
  if (inFlight) yield* emit(inFlight);
  if (last) yield* emit(last);
}

type Loaded<T> = { readonly image: T; readonly bytes: Buffer | null };

/**
 * Images in batches, each small one with its bytes (read whole on the reader's thread, a batch
 * into one slice of its ring) and each large one with null (to be streamed). READ_AHEAD batches
 * are read while the tar writer takes the current one.
 */
async function* readBatches<T extends ImageRef>(
  images: AsyncIterable<T> | Iterable<T>,
  reader: ImageReader,
  pathOf: (sha256: string) => string,
): AsyncGenerator<Loaded<T>[]> {
  const queue: { readonly images: T[]; readonly bytes: Promise<Buffer[]> | null }[] = [];
  let pending: T[] = [];
  let pendingBytes = 0;
  const send = () => {
    const bytes = reader.read(
      pending.map((image) => pathOf(image.sha256)),
      pending.map((image) => image.size),
    );
    // A read that fails before its turn is reported at its turn, not as an unhandled rejection.
    bytes.catch(() => undefined);
    queue.push({ images: pending, bytes });
    pending = [];
    pendingBytes = 0;
  };
  const take = async (): Promise<Loaded<T>[]> => {
    const { images: batch, bytes } = queue.shift()!;
    if (bytes === null) return batch.map((image) => ({ image, bytes: null }));
    const buffers = await bytes;
    return batch.map((image, i) => ({ image, bytes: buffers[i]! }));
  };
  const wholeLimit = Math.min(WHOLE_READ_LIMIT, reader.maxBatchBytes);
  const batchBytes = Math.min(BATCH_BYTES, reader.maxBatchBytes);
  for await (const image of images) {
    if (image.size > wholeLimit) {
      if (pending.length > 0) send();
      queue.push({ images: [image], bytes: null });
    } else {
      if (pendingBytes + image.size > reader.maxBatchBytes) send();
      pending.push(image);
      pendingBytes += image.size;
      if (pendingBytes >= batchBytes || pending.length >= BATCH_FILES) send();
    }
    while (queue.length > READ_AHEAD) yield await take();
  }
  if (pending.length > 0) send();
  while (queue.length > 0) yield await take();
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

/**
 * The export as a stream of tar bytes; the temporary files go when it ends or is destroyed. Image
 * bodies are views on the reader's ring: the consumer copies each one and then gives it back with
 * `release` (the ring fills up otherwise, and the export waits).
 */
function exportDatasetTar(input: ExportInput, deps: ExportDeps): { pack: tar.Pack; release(piece: Buffer): void } {
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
    for await (const batch of readBatches(images, reader, pathOf)) {
      if (pack.destroyed) return;
      let last: Promise<void> | undefined;
      for (const { image, bytes } of batch) {
        const name = `images/${image.sha256}.jpg`;
        if (bytes) last = addBuffer(name, bytes);
        else {
          await last;
          last = addStreamed(
            name,
            image.size,
            createReadStream(pathOf(image.sha256), { highWaterMark: WHOLE_READ_LIMIT }),
          );
        }
        const added = after?.(image);
        if (added) last = added;
      }
      await last;
    }
  };

  const reader = (deps.createReader ?? createImageReader)();
  const run = async () => {
    const dir = await mkdtemp(join(deps.tmpDir ?? tmpdir(), 'edgeloop-export-'));
    try {
      const file = (name: string) => join(dir, name);
      const members = withImages(input.members(), reader, pathOf);
      if (input.format === 'coco') {
        // One pass: the images and annotations lists go to two spools; the image list stays in
        // memory as sha256 + size (a few tens of bytes per image).
        const coco = createCocoWriter({
          labelled: input.labelled,
          categories: input.categories,
          description: `edgeloop dataset ${input.datasetId}`,
          now: mtime.getTime(),
        });
        const imagesPart = createSpool(file('images.part'));
        const annotationsPart = createSpool(file('annotations.part'));
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
          train: createSpool(file('train.txt')),
          val: createSpool(file('val.txt')),
          test: createSpool(file('test.txt')),
        } satisfies Record<DatasetSplit, ReturnType<typeof createSpool>>;
        const provenance = createSpool(file('provenance.json'));
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
      await rm(dir, { recursive: true, force: true });
    }
  };
  const runAndClose = () => run().finally(() => reader.close());
  // Finalized only after the temporary files are gone, so a reader at the end finds none left.
  runAndClose().then(
    () => {
      if (!pack.destroyed) pack.finalize();
    },
    (error: unknown) => {
      if (!pack.destroyed) pack.destroy(error as Error);
    },
  );
  return { pack, release: (piece) => reader.release(piece) };
}

/** The export as a web stream (a Hono response body); cancelling it stops the export. */
export function exportDatasetWebStream(input: ExportInput, deps: ExportDeps): ReadableStream<Uint8Array> {
  const { pack, release } = exportDatasetTar(input, deps);
  const iterator = pack[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  // A piece only partly copied into the last chunk: the rest goes first into the next one.
  let carry: Buffer | null = null;
  let ended = false;
  return new ReadableStream<Uint8Array>(
    {
      // tar-stream hands out headers, bodies and padding as separate buffers; they are copied
      // into chunks of COALESCE_BYTES (fewer socket writes), and each ring view is given back
      // once copied.
      async pull(controller) {
        try {
          const chunk = Buffer.allocUnsafe(COALESCE_BYTES);
          let size = 0;
          while (size < COALESCE_BYTES) {
            let piece = carry;
            carry = null;
            if (!piece) {
              const next = ended ? { done: true as const, value: undefined } : await iterator.next();
              if (next.done) {
                ended = true;
                break;
              }
              piece = next.value;
            }
            const taken = Math.min(piece.byteLength, COALESCE_BYTES - size);
            piece.copy(chunk, size, 0, taken);
            size += taken;
            if (taken < piece.byteLength) carry = piece.subarray(taken);
            else release(piece);
          }
          if (size > 0) controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, size));
          if (ended && !carry) controller.close();
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
