import { CocoLabels, type DatasetList, type DatasetView } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SampleRecord } from '../src/db/repositories.ts';
import { type CocoDocument, cocoProblems, storeSampleIn, untar } from './dataset-fixtures.ts';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';
import { sha256Hex } from './sample-fixtures.ts';

/*
 * Dataset versions through the HTTP API of a real control plane (SQLite with the migrations, the
 * real blob store); samples are stored through the sample repository and blob store.
 */

let t: TestControlPlane;
let viewer: string;
let operator: string;
let seed = 0;

const storeSample = (overrides: Partial<SampleRecord> = {}) => storeSampleIn(t, ++seed, overrides);

async function json<T>(response: Response, status: number): Promise<T> {
  const text = await response.text();
  expect({ status: response.status, text }).toMatchObject({ status });
  return JSON.parse(text) as T;
}

async function exportOf(id: string, format: 'coco' | 'yolo', token?: string) {
  const response = await t.raw('GET', `/api/v1/datasets/${id}/export?format=${format}`, token ? { token } : {});
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe('application/x-tar');
  return untar(response.body!);
}

const samples: SampleRecord[] = [];

beforeAll(async () => {
  t = await startTestControlPlane();
  viewer = (await t.createToken('viewer', 'viewer')).secret;
  operator = (await t.createToken('operator', 'operator')).secret;
  for (let i = 0; i < 12; i++) samples.push(await storeSample());
  samples.push(await storeSample({ strategy: 'random', predictions: [] }));
});

afterAll(async () => {
  await t?.stop();
});

describe('dataset versions', () => {
  it('freezes a version made from a query: a later matching sample stays out, and a second create is @2', async () => {
    const first = await json<DatasetView>(
      await t.raw('POST', '/api/v1/datasets', {
        body: { name: 'hard', query: { strategy: 'near-threshold' } },
        token: operator,
      }),
      201,
    );
    expect(first).toMatchObject({ id: 'hard@1', version: 1, parentId: null, labelled: false });
    expect(first.counts.total).toBe(12);
    expect(first.counts.train + first.counts.val + first.counts.test).toBe(12);

    const later = await storeSample();
    const again = await json<DatasetView>(await t.raw('GET', '/api/v1/datasets/hard@1'), 200);
    expect(again.counts).toEqual(first.counts);
    const files = await exportOf('hard@1', 'coco');
    expect(files.has(`images/${later.imageSha256}.jpg`)).toBe(false);

    const second = await json<DatasetView>(
      await t.raw('POST', '/api/v1/datasets', { body: { name: 'hard', query: { strategy: 'near-threshold' } } }),
      201,
    );
    expect(second).toMatchObject({ id: 'hard@2', version: 2 });
    expect(second.counts.total).toBe(13);
  });

  it('places each sample in the same split in every version (sha256 of the sample id)', async () => {
    const ids = samples.slice(0, 6).map((s) => s.id);
    const a = await json<DatasetView>(
      await t.raw('POST', '/api/v1/datasets', { body: { name: 'picked', sampleIds: ids } }),
      201,
    );
    const b = await json<DatasetView>(
      await t.raw('POST', '/api/v1/datasets', { body: { name: 'picked', sampleIds: [...ids].reverse() } }),
      201,
    );
    expect(b.counts).toEqual(a.counts);
    const splits = async (id: string) => {
      const doc = JSON.parse((await exportOf(id, 'coco')).get('annotations.json')!.toString()) as CocoDocument;
      return Object.fromEntries(doc.images.map((image) => [image.sample_id, image.split]));
    };
    expect(await splits('picked@2')).toEqual(await splits('picked@1'));
  });

  it('refuses sample ids that are not stored, storing nothing', async () => {
    const response = await t.raw('POST', '/api/v1/datasets', { body: { name: 'ghost', sampleIds: ['smp_nope'] } });
    expect(response.status).toBe(422);
    expect((await t.raw('GET', '/api/v1/datasets/ghost@1')).status).toBe(404);
  });

  it('lets a viewer list, read and export versions but not create one or import labels', async () => {
    const list = await json<DatasetList>(await t.raw('GET', '/api/v1/datasets?name=hard', { token: viewer }), 200);
    expect(list.items.map((item) => item.id)).toEqual(['hard@2', 'hard@1']);
    expect((await t.raw('GET', '/api/v1/datasets/hard@1', { token: viewer })).status).toBe(200);
    expect((await exportOf('hard@1', 'yolo', viewer)).size).toBeGreaterThan(0);
    const create = await t.raw('POST', '/api/v1/datasets', {
      body: { name: 'viewer-made', query: {} },
      token: viewer,
    });
    expect(create.status).toBe(403);
    const labels = await t.raw('PUT', '/api/v1/datasets/hard@1/labels', {
      body: { images: [], annotations: [], categories: [] },
      token: viewer,
    });
    expect(labels.status).toBe(403);
  });

  it('pages the list with a cursor', async () => {
    const first = await json<DatasetList>(await t.raw('GET', '/api/v1/datasets?limit=1'), 200);
    expect(first.items).toHaveLength(1);
    expect(first.nextCursor).not.toBeNull();
    const second = await json<DatasetList>(
      await t.raw('GET', `/api/v1/datasets?limit=1&cursor=${first.nextCursor}`),
      200,
    );
    expect(second.items[0]!.id).not.toBe(first.items[0]!.id);
  });
});

describe('dataset exports', () => {
  it('exports COCO that CVAT and Label Studio import: every rule checked on annotations.json as exported', async () => {
    const files = await exportOf('hard@1', 'coco');
    const doc = JSON.parse(files.get('annotations.json')!.toString('utf8')) as CocoDocument;
    expect(cocoProblems(doc)).toEqual([]);
    expect(doc.images).toHaveLength(12);
    expect(doc.annotations).toHaveLength(24);
    expect(doc.categories.map((c) => c.name).sort()).toEqual(['logo', 'text']);
    for (const image of doc.images) {
      const bytes = files.get(image.file_name);
      expect(bytes).toBeDefined();
      expect(`images/${sha256Hex(bytes!)}.jpg`).toBe(image.file_name);
      expect(image).toMatchObject({
        device_id: 'cam-1',
        model_sha256: 'a'.repeat(64),
        strategy: 'near-threshold',
        width: 64,
        height: 48,
      });
      expect(typeof image.captured_at).toBe('string');
    }
    const first = doc.annotations.find((a) => a.bbox[0] === 2);
    expect(first).toMatchObject({ bbox: [2, 3, 18, 21], area: 378, iscrowd: 0 });
  });

  it('exports YOLO: one label file per image, boxes normalised into [0, 1], classes and provenance', async () => {
    const files = await exportOf('hard@1', 'yolo');
    const images = [...files.keys()].filter((name) => name.startsWith('images/'));
    const labels = [...files.keys()].filter((name) => name.startsWith('labels/'));
    expect(images).toHaveLength(12);
    expect(labels.sort()).toEqual(images.map((name) => name.replace(/^images\/(.*)\.jpg$/, 'labels/$1.txt')).sort());
    for (const name of labels) {
      const lines = files.get(name)!.toString().trim().split('\n');
      expect(lines).toHaveLength(2);
      for (const line of lines) {
        const [cls, ...box] = line.split(' ').map(Number);
        expect([0, 1]).toContain(cls);
        expect(box).toHaveLength(4);
        for (const value of box) expect(value >= 0 && value <= 1).toBe(true);
      }
    }
    expect(files.get('classes.txt')!.toString().trim().split('\n').sort()).toEqual(['logo', 'text']);
    const provenance = JSON.parse(files.get('provenance.json')!.toString()) as Record<string, unknown>[];
    expect(provenance).toHaveLength(12);
    expect(provenance[0]).toMatchObject({ device_id: 'cam-1', model_sha256: 'a'.repeat(64) });
  });
});

describe('label import', () => {
  it('turns the exported COCO, re-imported as labels, into a labelled version whose annotations match', async () => {
    const exported = JSON.parse(
      (await exportOf('hard@1', 'coco')).get('annotations.json')!.toString('utf8'),
    ) as CocoDocument;
    const labelled = await json<DatasetView>(
      await t.raw('PUT', '/api/v1/datasets/hard@1/labels', { body: exported, token: operator }),
      201,
    );
    expect(labelled).toMatchObject({ id: 'hard@3', parentId: 'hard@1', labelled: true });
    expect(labelled.counts).toMatchObject({ total: 12, annotations: 24 });

    const again = JSON.parse(
      (await exportOf('hard@3', 'coco')).get('annotations.json')!.toString('utf8'),
    ) as CocoDocument;
    expect(cocoProblems(again)).toEqual([]);
    const boxes = (doc: CocoDocument) => {
      const images = new Map(doc.images.map((image) => [image.id, image.file_name]));
      const names = new Map(doc.categories.map((c) => [c.id, c.name]));
      return doc.annotations
        .map((a) => `${images.get(a.image_id)} ${names.get(a.category_id)} ${a.bbox.join(',')}`)
        .sort();
    };
    expect(boxes(again)).toEqual(boxes(exported));
  });

  it('takes labels from a labelling tool: new boxes by file name only, other samples keep none', async () => {
    const target = samples[0]!;
    const labelled = await json<DatasetView>(
      await t.raw('PUT', '/api/v1/datasets/hard@1/labels', {
        body: CocoLabels.parse({
          images: [{ id: 1, file_name: `task-7/a1b2c3d4-${target.imageSha256}.jpg`, width: 64, height: 48 }],
          annotations: [{ id: 1, image_id: 1, category_id: 5, bbox: [4, 4, 10, 8], area: 80, iscrowd: 0 }],
          categories: [{ id: 5, name: 'plate' }],
        }),
      }),
      201,
    );
    expect(labelled.counts.annotations).toBe(1);
    expect(labelled.categories).toEqual(['plate']);
    const yolo = await exportOf(labelled.id, 'yolo');
    expect(yolo.get(`labels/${target.imageSha256}.txt`)!.toString()).toBe('0 0.140625 0.166667 0.156250 0.166667\n');
    expect(yolo.get(`labels/${samples[1]!.imageSha256}.txt`)!.toString()).toBe('');
  });

  it('refuses COCO images that name no sample of the version with unknown_image, storing nothing', async () => {
    const before = await json<DatasetList>(await t.raw('GET', '/api/v1/datasets?name=hard'), 200);
    const response = await t.raw('PUT', '/api/v1/datasets/hard@1/labels', {
      body: {
        images: [
          { id: 1, file_name: `images/${samples[0]!.imageSha256}.jpg` },
          { id: 2, file_name: `images/${'0'.repeat(64)}.jpg` },
        ],
        annotations: [{ id: 1, image_id: 2, category_id: 1, bbox: [1, 1, 5, 5] }],
        categories: [{ id: 1, name: 'text' }],
      },
    });
    expect(response.status).toBe(422);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('unknown_image');
    const after = await json<DatasetList>(await t.raw('GET', '/api/v1/datasets?name=hard'), 200);
    expect(after.items.map((item) => item.id)).toEqual(before.items.map((item) => item.id));
  });

  it('answers 404 for labels or an export of a version that does not exist', async () => {
    expect(
      (await t.raw('PUT', '/api/v1/datasets/nope@1/labels', { body: { images: [], annotations: [], categories: [] } }))
        .status,
    ).toBe(404);
    expect((await t.raw('GET', '/api/v1/datasets/nope@1/export')).status).toBe(404);
  });
});
