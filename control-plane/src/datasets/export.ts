import { closeSync, createReadStream, createWriteStream, openSync, readSync, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatasetExportQuery, DatasetSplit } from '@edgeloop/protocol';
import { Header, Pax } from 'tar';
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
 * The tar headers are node-tar's (`Header`, and a `Pax` extended header for what ustar cannot
 * hold): npm's own tar implementation encodes every field and checksum. What is ours is only the
 * framing every tar reader expects: each header, then the body, zero padding to the next 512-byte
 * block, and two zero blocks at the end.
 *
 * What it costs (bench/datasets-export.ts, 10,000 images of 20 kB against `tar -cf`): the
 * members are read from the database once (annotations.json is spooled as two lists, images and
 * annotations, and the image list is kept as sha256 + size); an image's size is the one its sample
 * row holds (the upload checked it against the blob, and a blob never changes in place), so an
 * image costs an access check (is the blob there?), not a stat; a batch of small images (at most BATCH_FILES files or about BATCH_BYTES) is laid
 * out as one buffer, headers and padding included, and each image is read with open/read/close on
 * this thread straight into its place in it: one chunk per batch goes to the socket, with no copy
 * after the read. The event loop gets a turn between two batches.
 *
 * Measured and left out: tar-stream's pack (one stream entry, three buffers and a callback per
 * file, then a copy to coalesce them into socket-sized chunks) took 2.5x as long; fs.readFile goes
 * through the thread pool four times per file, which cost more than the reads; reading on a worker
 * thread into a shared ring cost more CPU in messages than the reads on a 2-core machine. A warm
 * read is ~10 us per file, so a batch holds the loop well under a millisecond; on a cold disk it
 * is the disk's latency times BATCH_FILES.
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
  readonly tmpDir?: string;
  readonly now?: () => number;
};

/** An image to write: its sha256 (the entry is images/<sha256>.jpg) and its size. */
type ImageRef = { readonly sha256: string; readonly size: number };
type ImageMember = ImageRef & { readonly member: DatasetMember };

/** Images up to this size are read whole into a batch; larger ones are streamed. */
const WHOLE_READ_LIMIT = 1024 * 1024;
/** A batch: at most this many images, and about this many bytes. */
const BATCH_BYTES = 1024 * 1024;
const BATCH_FILES = 64;
/** Spooled text is written in pieces of about this size. */
const SPOOL_CHUNK = 256 * 1024;
const BLOCK = 512;
/** The end of an archive: two zero blocks. */
const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

const paddingOf = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Tar headers of regular files (mode 0644, owner 0, one mtime), encoded by node-tar: one reused
 * Header, written in place where ustar holds the entry, and after a PAX header where it cannot.
 */
export function createTarHeaders(mtime: Date) {
  const header = new Header({ mode: 0o644, uid: 0, gid: 0, mtime, type: 'File' });
  return {
    /** Writes the 512-byte ustar header at `offset`; false when ustar cannot hold the entry (nothing usable written). */
    encodeInto(target: Buffer, offset: number, name: string, size: number): boolean {
      target.fill(0, offset, offset + BLOCK);
      header.path = name;
      header.size = size;
      return !header.encode(target, offset);
    },
    /** The header blocks as a new buffer: a PAX header first when ustar cannot hold the entry. */
    encode(name: string, size: number): Buffer {
      const block = Buffer.alloc(BLOCK);
      header.path = name;
      header.size = size;
      if (!header.encode(block, 0)) return block;
      return Buffer.concat([new Pax({ path: name, size, mtime, mode: 0o644, uid: 0, gid: 0 }).encode(), block]);
    },
  };
}

export type TarHeaders = ReturnType<typeof createTarHeaders>;

/** Members with their images' sha256 and size, each image once (the first sample with those bytes wins). */
async function* distinctImages(members: AsyncIterable<DatasetMember>): AsyncGenerator<ImageMember> {
  const seen = new Set<string>();
  for await (const member of members) {
    const { sha256, bytes } = member.metadata.image;
    if (seen.has(sha256)) continue;
    seen.add(sha256);
    yield { sha256, size: bytes, member };
  }
}

/** An open file descriptor, or null when there is no such file (a blob gone behind the store's back). */
function openIfPresent(path: string): number | null {
  try {
    return openSync(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/**
 * Reads `size` bytes of the open file `fd` (`path`) into `target` at `offset`, then closes it (no
 * stat: the size is the one the sample row gave, and a blob never changes in place).
 */
function readInto(fd: number, path: string, target: Buffer, offset: number, size: number): void {
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

/** One entry of a batch: bytes read from a file of known size, or given whole. */
export type BatchEntry = { readonly name: string } & (
  | { readonly fd: number; readonly path: string; readonly size: number }
  | { readonly bytes: Buffer }
);

const sizeOf = (entry: BatchEntry) => ('bytes' in entry ? entry.bytes.byteLength : entry.size);

/**
 * Entries laid out as one tar chunk: each header, body (files read in place) and padding. Every
 * file of the batch is closed, whether or not the chunk could be made.
 */
export function packBatch(entries: readonly BatchEntry[], headers: TarHeaders): Buffer {
  /** Entries from here on hold a file nobody has closed yet (readInto closes the one it reads). */
  let open = 0;
  try {
    const sizes = entries.map(sizeOf);
    const bodySpace = (i: number) => sizes[i]! + paddingOf(sizes[i]!);
    // Each header written in place in its block; an entry ustar cannot hold (never one of ours:
    // short ASCII names, sizes under 8 GiB) sends the batch the long way, with PAX headers.
    let total = 0;
    for (let i = 0; i < entries.length; i++) total += BLOCK + bodySpace(i);
    let chunk = Buffer.allocUnsafe(total);
    const bodyAt: number[] = [];
    let offset = 0;
    for (let i = 0; i < entries.length; i++) {
      if (!headers.encodeInto(chunk, offset, entries[i]!.name, sizes[i]!)) break;
      bodyAt.push(offset + BLOCK);
      offset += BLOCK + bodySpace(i);
    }
    if (bodyAt.length < entries.length) {
      const blocks = entries.map((entry, i) => headers.encode(entry.name, sizes[i]!));
      chunk = Buffer.allocUnsafe(blocks.reduce((sum, block, i) => sum + block.byteLength + bodySpace(i), 0));
      bodyAt.length = 0;
      offset = 0;
      blocks.forEach((block, i) => {
        offset += block.copy(chunk, offset);
        bodyAt.push(offset);
        offset += bodySpace(i);
      });
    }
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      const at = bodyAt[i]!;
      const size = sizes[i]!;
      if ('bytes' in entry) entry.bytes.copy(chunk, at);
      else {
        open = i + 1;
        readInto(entry.fd, entry.path, chunk, at, size);
      }
      chunk.fill(0, at + size, at + size + paddingOf(size));
    }
    return chunk;
  } catch (error) {
    for (const entry of entries.slice(open)) if ('fd' in entry) closeSync(entry.fd);
    throw error;
  }
}

/**
 * An entry whose body is streamed: its header, the pieces (strings or file contents, in order),
 * checked to add up to `size`, and its padding.
 */
async function* streamedEntry(
  name: string,
  size: number,
  parts: readonly (string | { readonly path: string })[],
  headers: TarHeaders,
): AsyncGenerator<Buffer> {
  yield headers.encode(name, size);
  let written = 0;
  for (const part of parts) {
    if (typeof part === 'string') {
      const bytes = Buffer.from(part, 'utf8');
      written += bytes.byteLength;
      if (written > size) break;
      yield bytes;
      continue;
    }
    for await (const piece of createReadStream(part.path, {
      highWaterMark: WHOLE_READ_LIMIT,
    }) as AsyncIterable<Buffer>) {
      written += piece.byteLength;
      if (written > size) break;
      yield piece;
    }
  }
  if (written !== size) throw new Error(`${name} ended after ${Math.min(written, size)} of ${size} bytes`);
  yield Buffer.alloc(paddingOf(size));
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
    path,
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

type Spool = ReturnType<typeof createSpool>;

/** What an export adds for one image it writes: more entries after it, and spool writes to wait for. */
type ImageExtras = { readonly entries: readonly BatchEntry[]; readonly wait?: Promise<unknown> };
const NO_EXTRAS: ImageExtras = { entries: [] };

/**
 * The image entries (and, per image, the entries `onImage` gives), as chunks: small images in
 * batches laid out whole, a large one streamed on its own. An image whose blob is gone is left
 * out, and `onImage` is called only for the images written, in order; what it waits on is awaited
 * before the next batch.
 */
async function* imageChunks(
  images: AsyncIterable<ImageMember>,
  pathOf: (sha256: string) => string,
  headers: TarHeaders,
  onImage: (image: ImageMember) => ImageExtras,
): AsyncGenerator<Buffer> {
  let batch: BatchEntry[] = [];
  let files = 0;
  let bytes = 0;
  let waits: Promise<unknown>[] = [];
  const flush = async () => {
    const entries = batch;
    batch = [];
    const chunk = packBatch(entries, headers);
    files = 0;
    bytes = 0;
    if (waits.length > 0) await Promise.all(waits);
    waits = [];
    return chunk;
  };
  try {
    for await (const image of images) {
      const name = `images/${image.sha256}.jpg`;
      const path = pathOf(image.sha256);
      const fd = openIfPresent(path);
      if (fd === null) continue;
      if (image.size > WHOLE_READ_LIMIT) {
        // Streamed by path: an open file would outlive a download cancelled at its header.
        closeSync(fd);
        if (batch.length > 0) yield await flush();
        const extras = onImage(image);
        if (extras.wait) waits.push(extras.wait);
        yield* streamedEntry(name, image.size, [{ path }], headers);
        batch.push(...extras.entries);
      } else {
        batch.push({ name, fd, path, size: image.size });
        const extras = onImage(image);
        if (extras.wait) waits.push(extras.wait);
        batch.push(...extras.entries);
        files++;
        bytes += image.size;
      }
      if (files >= BATCH_FILES || bytes >= BATCH_BYTES) {
        yield await flush();
        await turn();
      }
    }
    if (batch.length > 0 || waits.length > 0) yield await flush();
  } finally {
    // A batch cut short (an error, a cancelled download) still holds open files.
    for (const entry of batch) if ('fd' in entry) closeSync(entry.fd);
  }
}

/** The tar bytes of an export, in chunks; the temporary files go before it ends, however it ends. */
async function* exportChunks(input: ExportInput, deps: ExportDeps): AsyncGenerator<Buffer> {
  const mtime = new Date(deps.now?.() ?? Date.now());
  const headers = createTarHeaders(mtime);
  const pathOf = (sha256: string) => deps.blobs.pathOf(sha256);
  const dir = await mkdtemp(join(deps.tmpDir ?? tmpdir(), 'edgeloop-export-'));
  const spools: Spool[] = [];
  const spool = (name: string) => {
    const created = createSpool(join(dir, name));
    spools.push(created);
    return created;
  };
  try {
    const members = distinctImages(input.members());
    if (input.format === 'coco') {
      // One pass: each image is written as its batch is read, and its COCO entries go to two
      // spools (images and annotations); annotations.json, whose header needs its size, is the
      // last entry.
      const coco = createCocoWriter({
        labelled: input.labelled,
        categories: input.categories,
        description: `edgeloop dataset ${input.datasetId}`,
        now: mtime.getTime(),
      });
      const imagesPart = spool('images.part');
      const annotationsPart = spool('annotations.part');
      yield* imageChunks(members, pathOf, headers, ({ member }) => {
        // distinctImages gave each image once, so the writer never declines one.
        const parts = coco.add(member);
        if (!parts) return NO_EXTRAS;
        const spooled = imagesPart.write(parts.image);
        const annotated = parts.annotations === '' ? undefined : annotationsPart.write(parts.annotations);
        if (!spooled && !annotated) return NO_EXTRAS;
        return { entries: [], wait: Promise.all([spooled, annotated]) };
      });
      const head = coco.head();
      const middle = coco.middle();
      const tail = coco.tail();
      const size =
        Buffer.byteLength(head) +
        (await imagesPart.end()) +
        Buffer.byteLength(middle) +
        (await annotationsPart.end()) +
        Buffer.byteLength(tail);
      yield* streamedEntry('annotations.json', size, [head, imagesPart, middle, annotationsPart, tail], headers);
    } else {
      const yolo = createYoloWriter({ labelled: input.labelled, categories: input.categories });
      const lists = {
        train: spool('train.txt'),
        val: spool('val.txt'),
        test: spool('test.txt'),
      } satisfies Record<DatasetSplit, Spool>;
      const provenance = spool('provenance.json');
      let count = 0;
      yield* imageChunks(members, pathOf, headers, ({ sha256, member }) => {
        const listed = lists[member.split].write(`./${imageFileName(member)}\n`);
        const text = `${count === 0 ? '[\n' : ',\n'}${JSON.stringify({ image: imageFileName(member), ...provenanceOf(member) })}`;
        count++;
        const spooled = provenance.write(text);
        const entries = [{ name: `labels/${sha256}.txt`, bytes: Buffer.from(yolo.labelsOf(member), 'utf8') }];
        if (!listed && !spooled) return { entries };
        return { entries, wait: Promise.all([listed, spooled]) };
      });
      await provenance.write(count === 0 ? '[]\n' : '\n]\n');
      const classes = yolo
        .classNames()
        .map((name) => `${name}\n`)
        .join('');
      yield packBatch(
        [
          { name: 'classes.txt', bytes: Buffer.from(classes, 'utf8') },
          { name: 'data.yaml', bytes: Buffer.from(yolo.dataYaml(), 'utf8') },
        ],
        headers,
      );
      for (const [name, file] of [
        ['train.txt', lists.train],
        ['val.txt', lists.val],
        ['test.txt', lists.test],
        ['provenance.json', provenance],
      ] as const) {
        yield* streamedEntry(name, await file.end(), [file], headers);
      }
    }
    yield END_OF_ARCHIVE;
  } finally {
    for (const open of spools) open.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The export as a web stream (a Hono response body), pulled chunk by chunk as the client takes
 * them; cancelling it stops the export and removes its temporary files.
 */
export function exportDatasetWebStream(input: ExportInput, deps: ExportDeps): ReadableStream<Uint8Array> {
  const chunks = exportChunks(input, deps);
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const next = await chunks.next();
          if (next.done) controller.close();
          else controller.enqueue(new Uint8Array(next.value.buffer, next.value.byteOffset, next.value.byteLength));
        } catch (error) {
          // After a cancel the controller is closed and takes nothing more; erroring it is then a no-op.
          try {
            controller.error(error);
          } catch {}
        }
      },
      async cancel() {
        await chunks.return(undefined);
      },
    },
    { highWaterMark: 0 },
  );
}
