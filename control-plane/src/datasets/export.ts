import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatasetExportQuery, DatasetSplit } from '@edgeloop/protocol';
import type { BlobStore } from '../models/blob-store.ts';
import { createCocoWriter } from './coco.ts';
import { type DatasetMember, imageFileName, provenanceOf } from './members.ts';
import { createTarWriter, type TarSink, TarSinkClosed } from './tar-writer.ts';
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
/** Members between two turns of the event loop while annotations.json is spooled. */
const TURN_EVERY = 1000;
/** Spooled text is written in pieces of about this size. */
const SPOOL_CHUNK = 256 * 1024;

/**
 * A file of text pieces written in order; `end` gives its size. Written with writeSync in pieces
 * of SPOOL_CHUNK (into the page cache, tens of microseconds each): a write stream's round trip
 * through the thread pool per piece made this pass wait on the pool whenever the machine was
 * busy, and every millisecond here comes before the first byte of the tar.
 */
function createSpool(path: string) {
  const fd = openSync(path, 'wx', 0o600);
  let open = true;
  // Each piece is encoded straight into this buffer (a string built by += and encoded at once
  // cost more than the JSON it held: the concatenation has to be flattened first).
  const buffer = Buffer.allocUnsafe(SPOOL_CHUNK);
  let used = 0;
  let bytes = 0;
  const writeAll = (chunk: Uint8Array, length: number) => {
    let done = 0;
    while (done < length) done += writeSync(fd, chunk, done, length - done);
    bytes += length;
  };
  const flush = () => {
    if (used > 0) writeAll(buffer, used);
    used = 0;
  };
  const close = () => {
    if (!open) return;
    open = false;
    closeSync(fd);
  };
  return {
    /** Appends text. */
    write(text: string): void {
      // A UTF-16 code unit is at most 3 bytes of UTF-8.
      if (text.length * 3 > SPOOL_CHUNK - used) {
        flush();
        if (text.length * 3 > SPOOL_CHUNK) {
          const encoded = Buffer.from(text, 'utf8');
          writeAll(encoded, encoded.byteLength);
          return;
        }
      }
      used += buffer.write(text, used, 'utf8');
    },
    /** Closes the file without finishing it (an export that stopped early). */
    destroy: close,
    /** Writes what is left and closes the file; its size in bytes. */
    end(): number {
      flush();
      close();
      return bytes;
    },
  };
}

/**
 * Writes the export to `sink` as one tar; resolves when the last chunk is handed over. Throws
 * TarSinkClosed when the reader went away, or the error that broke the export (the archive
 * written so far is then short: a sink must not end it as if it were whole). The temporary
 * files are gone when it settles, however it ends.
 */
export async function writeDatasetTar(input: ExportInput, deps: ExportDeps, sink: TarSink): Promise<void> {
  const mtime = new Date(deps.now?.() ?? Date.now());
  const tar = createTarWriter(sink, { mtime, mode: 0o644 });
  const pathOf = (sha256: string) => deps.blobs.pathOf(sha256);
  const dir = mkdtempSync(join(deps.tmpDir ?? tmpdir(), 'edgeloop-export-'));
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
        if (sink.closed) throw new TarSinkClosed();
        const parts = coco.add(member);
        if (!parts) continue;
        images.push({ sha256, size });
        imagesPart.write(parts.image);
        if (parts.annotations !== '') annotationsPart.write(parts.annotations);
        // The rows come synchronously (SQLite): other requests get a turn now and then.
        if (images.length % TURN_EVERY === 0) await turn();
      }
      const head = coco.head();
      const middle = coco.middle();
      const tail = coco.tail();
      const size =
        Buffer.byteLength(head) +
        imagesPart.end() +
        Buffer.byteLength(middle) +
        annotationsPart.end() +
        Buffer.byteLength(tail);
      await tar.parts('annotations.json', size, [
        head,
        { path: file('images.part') },
        middle,
        { path: file('annotations.part') },
        tail,
      ]);
      for (const { sha256, size } of images) {
        const added = tar.file(`images/${sha256}.jpg`, pathOf(sha256), size);
        if (added) await added;
      }
    } else {
      const yolo = createYoloWriter({ labelled: input.labelled, categories: input.categories });
      const lists = {
        train: spool('train.txt'),
        val: spool('val.txt'),
        test: spool('test.txt'),
      } satisfies Record<DatasetSplit, ReturnType<typeof createSpool>>;
      const provenance = spool('provenance.json');
      let count = 0;
      for await (const { sha256, size, member } of members) {
        const added = tar.file(`images/${sha256}.jpg`, pathOf(sha256), size);
        if (added) await added;
        const labelled = tar.bytes(`labels/${sha256}.txt`, yolo.labelsOf(member));
        if (labelled) await labelled;
        lists[member.split].write(`./${imageFileName(member)}\n`);
        provenance.write(
          `${count === 0 ? '[\n' : ',\n'}${JSON.stringify({ image: imageFileName(member), ...provenanceOf(member) })}`,
        );
        count++;
      }
      provenance.write(count === 0 ? '[]\n' : '\n]\n');
      const sizes = {
        'train.txt': lists.train.end(),
        'val.txt': lists.val.end(),
        'test.txt': lists.test.end(),
        'provenance.json': provenance.end(),
      };
      await tar.bytes(
        'classes.txt',
        yolo
          .classNames()
          .map((name) => `${name}\n`)
          .join(''),
      );
      await tar.bytes('data.yaml', yolo.dataYaml());
      for (const [name, size] of Object.entries(sizes)) await tar.parts(name, size, [{ path: file(name) }]);
    }
    // The last chunk goes out only after the temporary files are gone, so a reader that reaches
    // the end finds none left.
    removeSpools(spools, dir);
    await tar.end();
  } finally {
    removeSpools(spools, dir);
  }
}

function removeSpools(spools: readonly ReturnType<typeof createSpool>[], dir: string): void {
  for (const open of spools) open.destroy();
  rmSync(dir, { recursive: true, force: true });
}

/**
 * The export as a web stream (a Hono response body off a Node socket, and the tests); cancelling
 * it stops the export. One chunk waits in the stream; each chunk is a fresh buffer (a web stream
 * never says when its reader is done with one).
 */
export function exportDatasetWebStream(input: ExportInput, deps: ExportDeps): ReadableStream<Uint8Array> {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let closed = false;
  let waiting: (() => void) | null = null;
  const wake = () => {
    const resolve = waiting;
    waiting = null;
    resolve?.();
  };
  const sink: TarSink = {
    write(chunk) {
      controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      return (controller.desiredSize ?? 0) > 0;
    },
    ready() {
      if (closed || (controller.desiredSize ?? 0) > 0) return Promise.resolve();
      return new Promise<void>((resolve) => {
        waiting = resolve;
      });
    },
    get closed() {
      return closed;
    },
  };
  return new ReadableStream<Uint8Array>(
    {
      start(started) {
        controller = started;
        writeDatasetTar(input, deps, sink).then(
          () => {
            if (!closed) controller.close();
          },
          (error: unknown) => {
            if (!closed) controller.error(error);
          },
        );
      },
      pull() {
        wake();
      },
      cancel() {
        closed = true;
        wake();
      },
    },
    { highWaterMark: 1 },
  );
}
