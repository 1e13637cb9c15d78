import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import tar from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type CocoDocument,
  cocoProblems,
  iterate,
  member,
  prediction,
  sampleMetadata,
  untar,
} from '../../test/dataset-fixtures.ts';
import { type BlobStore, createBlobStore } from '../models/blob-store.ts';
import { createTarHeaders, exportDatasetWebStream, packBatch } from './export.ts';
import type { DatasetMember } from './members.ts';

let dir: string;
let blobs: BlobStore;
let members: DatasetMember[];

async function storeImage(bytes: Uint8Array) {
  const blob = await blobs.receive(iterate([bytes]), { maxBytes: 8 << 20 });
  await blob.commit();
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'export-test-'));
  blobs = createBlobStore({ root: join(dir, 'blobs') });
  members = [];
  for (let i = 0; i < 40; i++) {
    const bytes = Buffer.from(`jpeg bytes of sample ${i}`);
    await storeImage(bytes);
    members.push(
      member(
        `s${i}`,
        sampleMetadata(bytes, {
          seq: i,
          predictions: i % 4 === 0 ? [] : [prediction([i, i, i + 50, i + 30], i % 2 ? 'text' : 'logo')],
        }),
        { split: (['train', 'val', 'test'] as const)[i % 3]! },
      ),
    );
  }
});

afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Every entry of a tar stream, its names in tar order; each header checked against its body. */
async function untarInOrder(stream: ReadableStream<Uint8Array>) {
  const extract = tar.extract();
  const names: string[] = [];
  const files = new Map<string, Buffer>();
  const done = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      const body = Buffer.concat(chunks);
      expect(entry.header).toMatchObject({ type: 'file', size: body.byteLength, mode: 0o644 });
      names.push(entry.header.name);
      files.set(entry.header.name, body);
    }
  })();
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) extract.write(chunk);
  extract.end(undefined);
  await done;
  return { names, files };
}

/** File descriptors this process holds. */
const openFiles = () => readdirSync('/proc/self/fd').length;

const input = (format: 'coco' | 'yolo') => ({
  datasetId: 'hard@1',
  format,
  labelled: false,
  categories: [],
  members: () => iterate(members),
});

describe('exportDatasetWebStream', () => {
  it('streams a COCO tar: a valid annotations.json and every image under the name it gives', async () => {
    const files = await untar(exportDatasetWebStream(input('coco'), { blobs, tmpDir: dir }));
    const doc = JSON.parse(files.get('annotations.json')!.toString('utf8')) as CocoDocument;
    expect(cocoProblems(doc)).toEqual([]);
    expect(doc.images).toHaveLength(40);
    expect(doc.annotations).toHaveLength(30);
    for (const image of doc.images) expect(files.has(image.file_name)).toBe(true);
    expect(files.get(`images/${members[3]!.metadata.image.sha256}.jpg`)!.toString()).toBe('jpeg bytes of sample 3');
  });

  it('streams a YOLO tar: one label file per image with boxes in [0, 1], classes, splits and provenance', async () => {
    const files = await untar(exportDatasetWebStream(input('yolo'), { blobs, tmpDir: dir }));
    const images = [...files.keys()].filter((name) => name.startsWith('images/'));
    const labels = [...files.keys()].filter((name) => name.startsWith('labels/'));
    expect(images).toHaveLength(40);
    expect(labels.map((name) => name.replace(/^labels\/(.*)\.txt$/, '$1')).sort()).toEqual(
      images.map((name) => name.replace(/^images\/(.*)\.jpg$/, '$1')).sort(),
    );
    const classes = files.get('classes.txt')!.toString().trim().split('\n');
    let lines = 0;
    for (const name of labels) {
      for (const line of files.get(name)!.toString().split('\n').filter(Boolean)) {
        const [cls, ...numbers] = line.split(' ').map(Number);
        expect(cls).toBeLessThan(classes.length);
        for (const n of numbers) expect(n >= 0 && n <= 1).toBe(true);
        lines++;
      }
    }
    expect(lines).toBe(30);
    const provenance = JSON.parse(files.get('provenance.json')!.toString()) as { image: string; device_id: string }[];
    expect(provenance).toHaveLength(40);
    expect(provenance[0]).toMatchObject({
      device_id: 'cam-1',
      model_sha256: 'a'.repeat(64),
      strategy: 'near-threshold',
    });
    const listed = ['train.txt', 'val.txt', 'test.txt'].map((n) =>
      files.get(n)!.toString().split('\n').filter(Boolean),
    );
    expect(listed.map((l) => l.length)).toEqual([14, 13, 13]);
    expect(files.get('data.yaml')!.toString()).toContain('train: train.txt');
  });

  it('leaves out a sample whose image is missing from every file, and removes its temporary files', async () => {
    const missing = Buffer.from('never stored');
    members.push(member('gone', sampleMetadata(missing, { predictions: [prediction([0, 0, 9, 9], 'text')] })));
    const files = await untar(exportDatasetWebStream(input('coco'), { blobs, tmpDir: dir }));
    const doc = JSON.parse(files.get('annotations.json')!.toString('utf8')) as CocoDocument;
    expect(doc.images).toHaveLength(40);
    expect(cocoProblems(doc)).toEqual([]);
    expect(readdirSync(dir).filter((name) => name.startsWith('edgeloop-export-'))).toEqual([]);
  });

  it('exports a few hundred samples whole: every entry in tar order with its exact bytes, large images streamed', async () => {
    // 300 more: sizes from a few bytes to 1.1 MB (past the whole-read limit), a repeated image,
    // spread over many read batches.
    const big = (seed: number, size: number) => Buffer.alloc(size, seed);
    const stored = new Map<string, Buffer>();
    for (const m of members) stored.set(m.metadata.image.sha256, Buffer.from(`jpeg bytes of sample ${m.metadata.seq}`));
    for (let i = 0; i < 300; i++) {
      const bytes =
        i % 150 === 7 ? big(i, 1_100_000) : Buffer.concat([Buffer.from(`sample ${i} `), big(i, (i * 997) % 12_000)]);
      const metadata = sampleMetadata(bytes, { seq: 100 + i, deviceId: `cam-${i % 7}` });
      // Straight into the store's layout (receive() fsyncs each blob; the export only reads them).
      const path = blobs.pathOf(metadata.image.sha256);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, bytes);
      stored.set(metadata.image.sha256, bytes);
      members.push(member(`t${String(i).padStart(3, '0')}`, metadata));
      if (i === 50) members.push(member('t050-again', metadata));
    }
    const { names, files } = await untarInOrder(exportDatasetWebStream(input('coco'), { blobs, tmpDir: dir }));
    // The images in the order the document lists them, then annotations.json (its header needs
    // its size, known once every image is written).
    expect(names.at(-1)).toBe('annotations.json');
    const doc = JSON.parse(files.get('annotations.json')!.toString('utf8')) as CocoDocument;
    expect(cocoProblems(doc)).toEqual([]);
    expect(doc.images).toHaveLength(340);
    expect(names.slice(0, -1)).toEqual(doc.images.map((image) => image.file_name));
    for (const image of doc.images) {
      const sha = String(image.image_sha256);
      expect(image.file_name).toBe(`images/${sha}.jpg`);
      expect(image).toMatchObject({ sample_id: expect.any(String), device_id: expect.any(String), boot_id: 'boot-1' });
      expect(files.get(image.file_name)!.equals(stored.get(sha)!)).toBe(true);
    }
    expect(readdirSync(dir).filter((name) => name.startsWith('edgeloop-export-'))).toEqual([]);

    const yolo = await untar(exportDatasetWebStream(input('yolo'), { blobs, tmpDir: dir }));
    const provenance = JSON.parse(yolo.get('provenance.json')!.toString()) as { image: string; sample_id: string }[];
    expect(provenance).toHaveLength(340);
    for (const entry of provenance) {
      expect(yolo.get(entry.image)!.equals(stored.get(entry.image.slice(7, 71))!)).toBe(true);
      expect(yolo.has(`labels/${entry.image.slice(7, 71)}.txt`)).toBe(true);
    }
  });

  it('fails the stream, not with a short entry, when an image is shorter than its sample says', async () => {
    // The size in a tar header comes from the sample row (the upload checked it against the blob);
    // a blob cut short behind the store's back must end the export with an error, never a short entry.
    const victim = members[5]!.metadata.image.sha256;
    truncateSync(blobs.pathOf(victim), 3);
    const fds = openFiles();
    await expect(untar(exportDatasetWebStream(input('coco'), { blobs, tmpDir: dir }))).rejects.toThrow(
      /ended after 3 of/,
    );
    expect(readdirSync(dir).filter((name) => name.startsWith('edgeloop-export-'))).toEqual([]);
    // The other files of the batch it stopped in are closed too.
    expect(openFiles()).toBe(fds);
  });

  it('writes an archive GNU tar lists and extracts byte for byte', async () => {
    // A reader nobody here wrote, besides tar-stream's extract in the other tests.
    const archive = join(dir, 'export.tar');
    const chunks: Uint8Array[] = [];
    for await (const chunk of exportDatasetWebStream(input('yolo'), {
      blobs,
      tmpDir: dir,
    }) as unknown as AsyncIterable<Uint8Array>)
      chunks.push(chunk);
    writeFileSync(archive, Buffer.concat(chunks));
    const listed = execFileSync('tar', ['-tvf', archive], { encoding: 'utf8' }).trim().split('\n');
    expect(listed).toHaveLength(40 * 2 + 6);
    for (const line of listed) expect(line).toMatch(/^-rw-r--r-- /);
    const out = join(dir, 'out');
    mkdirSync(out);
    execFileSync('tar', ['-xf', archive, '-C', out]);
    for (const m of members) {
      const sha = m.metadata.image.sha256;
      expect(readFileSync(join(out, 'images', `${sha}.jpg`)).equals(readFileSync(blobs.pathOf(sha)))).toBe(true);
    }
    expect(readFileSync(join(out, 'classes.txt'), 'utf8').trim().split('\n').sort()).toEqual(['logo', 'text']);
  });

  it('gives an entry ustar cannot hold a PAX header, which GNU tar reads back', () => {
    const long = `labels/${'x'.repeat(150)}.txt`;
    const headers = createTarHeaders(new Date(1_800_000_000_000));
    const chunk = packBatch(
      [
        { name: 'classes.txt', bytes: Buffer.from('text\n') },
        { name: long, bytes: Buffer.from('0 0.5 0.5 0.1 0.1\n') },
      ],
      headers,
    );
    expect(chunk.byteLength % 512).toBe(0);
    const archive = join(dir, 'pax.tar');
    writeFileSync(archive, Buffer.concat([chunk, Buffer.alloc(1024)]));
    expect(execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n')).toEqual([
      'classes.txt',
      long,
    ]);
    const out = join(dir, 'pax');
    mkdirSync(out);
    execFileSync('tar', ['-xf', archive, '-C', out]);
    expect(readFileSync(join(out, long), 'utf8')).toBe('0 0.5 0.5 0.1 0.1\n');
  });

  it('stops a cancelled export and removes its temporary files', async () => {
    // 2 MB of images: the first chunk (256 kB) comes long before the end.
    for (let i = 0; i < 20; i++) {
      const bytes = Buffer.alloc(100_000, i + 1);
      const metadata = sampleMetadata(bytes, { seq: 500 + i });
      mkdirSync(dirname(blobs.pathOf(metadata.image.sha256)), { recursive: true });
      writeFileSync(blobs.pathOf(metadata.image.sha256), bytes);
      members.push(member(`big${i}`, metadata));
    }
    const fds = openFiles();
    for (const format of ['coco', 'yolo'] as const) {
      const reader = exportDatasetWebStream(input(format), { blobs, tmpDir: dir }).getReader();
      expect((await reader.read()).done).toBe(false);
      await reader.cancel();
      await vi.waitFor(() =>
        expect(readdirSync(dir).filter((name) => name.startsWith('edgeloop-export-'))).toEqual([]),
      );
    }
    await vi.waitFor(() => expect(openFiles()).toBe(fds));
  });
});
