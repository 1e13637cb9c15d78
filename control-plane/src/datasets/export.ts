import { createReadStream, createWriteStream, readFile, type WriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatasetExportQuery, DatasetSplit } from '@edgeloop/protocol';
import tar from 'tar-stream';
import type { BlobStore } from '../models/blob-store.ts';
import { cocoJsonChunks } from './coco.ts';
import { type DatasetMember, imageFileName, provenanceOf } from './members.ts';
import { createYoloWriter } from './yolo.ts';

/*
 * A dataset version as a streamed tar. Rows come page by page, image bytes by file stream, and
 * the few files whose size is known only at the end (annotations.json, provenance.json, split
 * lists) are spooled to a temporary directory first (a tar header needs the size), so memory stays
 * flat however many samples the version holds.
 *
 *   coco: annotations.json, images/<sha256>.jpg
 *   yolo: images/<sha256>.jpg, labels/<sha256>.txt, classes.txt, data.yaml, train.txt, val.txt,
 *         test.txt, provenance.json
 */

export type ExportFormat = DatasetExportQuery['format'];

export type ExportInput = {
  readonly datasetId: string;
  readonly format: ExportFormat;
  readonly labelled: boolean;
  readonly categories: readonly string[];
  /** Every member of the version, in a stable order; called once per pass. */
  readonly members: () => AsyncIterable<DatasetMember>;
};

export type ExportDeps = {
  readonly blobs: Pick<BlobStore, 'pathOf' | 'sizeOf'>;
  readonly tmpDir?: string;
  readonly now?: () => number;
};

/**
 * Members whose image bytes are in the blob store, each image once (the first sample with those
 * bytes wins). The blob store is asked once per image over all passes; later passes read the sizes
 * the first one found, so every pass gives the same members.
 */
function createImageIndex(blobs: ExportDeps['blobs']) {
  const sizes = new Map<string, number | null>();
  return async function* pass(members: AsyncIterable<DatasetMember>): AsyncGenerator<ImageMember> {
    const emitted = new Set<string>();
    for await (const member of members) {
      const sha = member.metadata.image.sha256;
      if (emitted.has(sha)) continue;
      let size = sizes.get(sha);
      if (size === undefined) {
        size = blobs.sizeOf(sha);
        sizes.set(sha, size);
      }
      if (size === null) continue;
      emitted.add(sha);
      yield { ...member, imageBytes: size };
    }
  };
}

function closedSignal(stream: tar.Pack): Promise<void> {
  return new Promise((resolve) => stream.once('close', () => resolve()));
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

/** Writes text chunks to a file and resolves with its size. */
async function spool(path: string, chunks: AsyncIterable<string>): Promise<number> {
  const file: WriteStream = createWriteStream(path);
  const failed = new Promise<never>((_, reject) => file.once('error', reject));
  await Promise.race([writeChunks(file, chunks, new Promise(() => undefined)), failed]);
  await new Promise<void>((resolve, reject) => file.end((error?: Error | null) => (error ? reject(error) : resolve())));
  return (await stat(path)).size;
}

/** One tar entry, its bytes from `source`; resolves when tar-stream has taken it. */
function addEntry(
  pack: tar.Pack,
  name: string,
  size: number,
  source: AsyncIterable<string | Uint8Array>,
  closed: Promise<void>,
  mtime: Date,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const entry = pack.entry({ name, size, mtime, mode: 0o644 }, (error) => (error ? reject(error) : resolve()));
    writeChunks(entry, source, closed).then(
      () => entry.end(undefined),
      (error: unknown) => {
        entry.destroy(error as Error);
        reject(error);
      },
    );
  });
}

async function* once<T extends string | Uint8Array>(chunk: T): AsyncGenerator<T> {
  yield chunk;
}

/** Images up to this size are read whole, READ_AHEAD at a time; larger ones are streamed. */
const WHOLE_READ_LIMIT = 1024 * 1024;
/**
 * Reads in flight ahead of the tar writer: one file at a time waits on the disk's latency for every
 * file (small images are latency, not bandwidth); a few in flight keep the disk busy. Memory is
 * bounded by READ_AHEAD x WHOLE_READ_LIMIT.
 */
const READ_AHEAD = 16;
const COALESCE_BYTES = 256 * 1024;

/** fs.readFile with a callback: no FileHandle per file (fs/promises' readFile costs more per small file). */
function readWhole(path: string): Promise<Buffer> {
  return new Promise((resolve, reject) => readFile(path, (error, data) => (error ? reject(error) : resolve(data))));
}

type ImageMember = DatasetMember & { readonly imageBytes: number };
type LoadedMember = ImageMember & { readonly bytes: Promise<Buffer> | null };

/** Members with their image reads started up to READ_AHEAD ahead of the consumer. */
async function* readAhead(
  source: AsyncIterable<ImageMember>,
  load: (member: ImageMember) => Promise<Buffer> | null,
): AsyncGenerator<LoadedMember> {
  const queue: LoadedMember[] = [];
  for await (const member of source) {
    const bytes = load(member);
    // A read that fails before its turn is reported at its turn, not as an unhandled rejection.
    bytes?.catch(() => undefined);
    queue.push({ ...member, bytes });
    if (queue.length >= READ_AHEAD) yield queue.shift()!;
  }
  yield* queue;
}

/** The export as a stream of tar bytes; the temporary files go when it ends or is destroyed. */
export function exportDatasetTar(input: ExportInput, deps: ExportDeps): tar.Pack {
  const pack = tar.pack();
  const closed = closedSignal(pack);
  const mtime = new Date(deps.now?.() ?? Date.now());
  const run = async () => {
    const dir = await mkdtemp(join(deps.tmpDir ?? tmpdir(), 'edgeloop-export-'));
    try {
      const file = (name: string) => join(dir, name);
      const addFile = async (name: string, path: string, size: number) =>
        addEntry(pack, name, size, createReadStream(path, { highWaterMark: 256 * 1024 }), closed, mtime);
      const addText = async (name: string, text: string) =>
        addEntry(pack, name, Buffer.byteLength(text), once(text), closed, mtime);
      const addImage = async (member: LoadedMember) => {
        const path = deps.blobs.pathOf(member.metadata.image.sha256);
        if (member.bytes === null) return addFile(imageFileName(member), path, member.imageBytes);
        const bytes = await member.bytes;
        return addEntry(pack, imageFileName(member), bytes.byteLength, once(bytes), closed, mtime);
      };
      const withImages = createImageIndex(deps.blobs);
      const images = () =>
        readAhead(withImages(input.members()), (member) =>
          member.imageBytes > WHOLE_READ_LIMIT ? null : readWhole(deps.blobs.pathOf(member.metadata.image.sha256)),
        );

      if (input.format === 'coco') {
        const size = await spool(
          file('annotations.json'),
          cocoJsonChunks(() => withImages(input.members()), {
            labelled: input.labelled,
            categories: input.categories,
            description: `edgeloop dataset ${input.datasetId}`,
            now: mtime.getTime(),
          }),
        );
        await addFile('annotations.json', file('annotations.json'), size);
        for await (const member of images()) {
          if (pack.destroyed) return;
          await addImage(member);
        }
      } else {
        const yolo = createYoloWriter({ labelled: input.labelled, categories: input.categories });
        const lists = {
          train: createWriteStream(file('train.txt')),
          val: createWriteStream(file('val.txt')),
          test: createWriteStream(file('test.txt')),
        } satisfies Record<DatasetSplit, WriteStream>;
        const provenance = createWriteStream(file('provenance.json'));
        const never = new Promise<void>(() => undefined);
        let count = 0;
        for await (const member of images()) {
          if (pack.destroyed) return;
          await addImage(member);
          const stem = member.metadata.image.sha256;
          await addText(`labels/${stem}.txt`, yolo.labelsOf(member));
          await writeChunks(lists[member.split], once(`./${imageFileName(member)}\n`), never);
          await writeChunks(
            provenance,
            once(
              `${count === 0 ? '[\n' : ',\n'}${JSON.stringify({ image: imageFileName(member), ...provenanceOf(member) })}`,
            ),
            never,
          );
          count++;
        }
        await writeChunks(provenance, once(count === 0 ? '[]\n' : '\n]\n'), never);
        for (const stream of [...Object.values(lists), provenance]) {
          await new Promise<void>((resolve, reject) =>
            stream.end((error?: Error | null) => (error ? reject(error) : resolve())),
          );
        }
        await addText(
          'classes.txt',
          yolo
            .classNames()
            .map((name) => `${name}\n`)
            .join(''),
        );
        await addText('data.yaml', yolo.dataYaml());
        for (const name of ['train.txt', 'val.txt', 'test.txt', 'provenance.json']) {
          await addFile(name, file(name), (await stat(file(name))).size);
        }
      }
    } finally {
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
