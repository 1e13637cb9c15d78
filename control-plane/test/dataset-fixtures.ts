import { createHash, randomBytes } from 'node:crypto';
import type { DatasetSplit, SampleMetadata, SamplePrediction } from '@edgeloop/protocol';
import tar from 'tar-stream';
import type { DatasetMember } from '../src/datasets/members.ts';
import type { SampleRecord } from '../src/db/repositories.ts';
import type { TestControlPlane } from './harness.ts';
import { makeJpeg, sha256Hex } from './sample-fixtures.ts';

/** A sample's metadata as a device sends it, with the image sha256 of `bytes`. */
export function sampleMetadata(
  bytes: Uint8Array,
  overrides: Partial<Omit<SampleMetadata, 'image'>> & { width?: number; height?: number } = {},
): SampleMetadata {
  const { width = 640, height = 480, ...rest } = overrides;
  return {
    deviceId: 'cam-1',
    site: 'lyon',
    labels: { site: 'lyon' },
    model: { id: 'det@1.0.0', sha256: 'a'.repeat(64) },
    strategy: 'near-threshold',
    reason: 'score 0.52 within 0.5 +- 0.1',
    tags: ['unsure'],
    predictions: [],
    frameTs: 1_780_000_000_000,
    bootId: 'boot-1',
    seq: 1,
    image: {
      sha256: createHash('sha256').update(bytes).digest('hex'),
      bytes: bytes.byteLength,
      width,
      height,
      contentType: 'image/jpeg',
    },
    ...rest,
  };
}

export function prediction(box: [number, number, number, number], label: string, score = 0.55): SamplePrediction {
  return { box, label, score, classId: 0 };
}

export function member(
  sampleId: string,
  metadata: SampleMetadata,
  options: { split?: DatasetSplit; annotations?: DatasetMember['annotations'] } = {},
): DatasetMember {
  return {
    sampleId,
    split: options.split ?? 'train',
    metadata,
    receivedAt: metadata.frameTs + 1000,
    annotations: options.annotations ?? null,
  };
}

export async function* iterate<T>(items: readonly T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}

/** A COCO document as parsed JSON, typed loosely for checks. */
export type CocoDocument = {
  images: { id: number; file_name: string; width: number; height: number; [key: string]: unknown }[];
  annotations: {
    id: number;
    image_id: number;
    category_id: number;
    bbox: [number, number, number, number];
    area: number;
    iscrowd: number;
  }[];
  categories: { id: number; name: string }[];
};

/** Every rule of the COCO detection format that CVAT and Label Studio rely on; the problems found. */
export function cocoProblems(doc: CocoDocument): string[] {
  const problems: string[] = [];
  for (const key of ['images', 'annotations', 'categories'] as const) {
    if (!Array.isArray(doc[key])) problems.push(`${key} is not a list`);
  }
  const unique = (name: string, ids: number[]) => {
    if (new Set(ids).size !== ids.length) problems.push(`${name} ids are not unique`);
    if (!ids.every((id) => Number.isInteger(id))) problems.push(`${name} ids are not integers`);
  };
  unique(
    'image',
    doc.images.map((i) => i.id),
  );
  unique(
    'annotation',
    doc.annotations.map((a) => a.id),
  );
  unique(
    'category',
    doc.categories.map((c) => c.id),
  );
  const images = new Map(doc.images.map((i) => [i.id, i]));
  const categories = new Set(doc.categories.map((c) => c.id));
  for (const a of doc.annotations) {
    const image = images.get(a.image_id);
    if (!image) problems.push(`annotation ${a.id}: image_id ${a.image_id} does not resolve`);
    if (!categories.has(a.category_id)) problems.push(`annotation ${a.id}: category_id does not resolve`);
    const [x, y, w, h] = a.bbox;
    if (image && (x < 0 || y < 0 || w <= 0 || h <= 0 || x + w > image.width + 1e-6 || y + h > image.height + 1e-6)) {
      problems.push(`annotation ${a.id}: bbox ${JSON.stringify(a.bbox)} is not inside ${image.width}x${image.height}`);
    }
    if (typeof a.area !== 'number' || Math.abs(a.area - w * h) > 1) problems.push(`annotation ${a.id}: area`);
    if (a.iscrowd !== 0) problems.push(`annotation ${a.id}: iscrowd is not 0`);
  }
  return problems;
}

/** Every file of a tar stream, by name. */
export async function untar(stream: ReadableStream<Uint8Array>): Promise<Map<string, Buffer>> {
  const extract = tar.extract();
  const files = new Map<string, Buffer>();
  const done = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      files.set(entry.header.name, Buffer.concat(chunks));
    }
  })();
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) extract.write(chunk);
  extract.end(undefined);
  await done;
  return files;
}

/** Stores a sample with a real JPEG through the sample repository and the blob store. */
export async function storeSampleIn(
  t: TestControlPlane,
  seed: number,
  overrides: Partial<SampleRecord> = {},
): Promise<SampleRecord> {
  const jpeg = await makeJpeg(64, 48, seed);
  const blob = await t.cp.internals.blobs.receive(
    (async function* () {
      yield jpeg;
    })(),
    { maxBytes: 1 << 20 },
  );
  await blob.commit();
  const sample: SampleRecord = {
    id: `smp_${randomBytes(8).toString('hex')}`,
    deviceId: 'cam-1',
    site: 'north',
    labels: { site: 'north' },
    modelId: 'det@1.0.0',
    modelSha256: 'a'.repeat(64),
    strategy: 'near-threshold',
    reason: '1 detection within 0.5 +- 0.1',
    tags: ['unsure'],
    predictions: [
      { box: [2, 3, 20, 24], score: 0.52, classId: 0, label: 'text' },
      { box: [30, 10, 70, 60], score: 0.47, classId: 1, label: 'logo' },
    ],
    frameTs: 1_800_000_000_000 + seed,
    bootId: 'boot0001',
    seq: seed,
    imageSha256: sha256Hex(jpeg),
    bytes: jpeg.length,
    width: 64,
    height: 48,
    thumbnailSha256: null,
    receivedAt: 1_800_000_001_000 + seed,
    ...overrides,
  };
  const stored = await t.store.samples.insert(sample);
  return stored.sample;
}
