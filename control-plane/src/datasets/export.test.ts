import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
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
import { exportDatasetWebStream } from './export.ts';
import type { DatasetMember } from './members.ts';

let dir: string;
let blobs: BlobStore;
let members: DatasetMember[];

async function storeImage(bytes: Uint8Array) {
  const blob = await blobs.receive(iterate([bytes]), { maxBytes: 1 << 20 });
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
});
