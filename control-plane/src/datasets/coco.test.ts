import { CocoLabels } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { type CocoDocument, cocoProblems, member, prediction, sampleMetadata } from '../../test/dataset-fixtures.ts';
import { cocoJsonText, createCocoWriter, type LabelTarget, parseCocoLabels } from './coco.ts';
import type { DatasetMember } from './members.ts';

const bytes = (n: number) => new Uint8Array([n, n + 1, n + 2]);

async function cocoOf(members: DatasetMember[], labelled = false, categories: string[] = []): Promise<CocoDocument> {
  return JSON.parse(cocoJsonText(members, { labelled, categories, now: 0 })) as CocoDocument;
}

const members = [
  member(
    's1',
    sampleMetadata(bytes(1), {
      predictions: [prediction([10, 20, 110, 70], 'text'), prediction([600, 400, 700, 520], 'text', 0.45)],
    }),
  ),
  member('s2', sampleMetadata(bytes(2), { predictions: [prediction([0, 0, 5, 5], 'logo')] }), { split: 'val' }),
  member('s3', sampleMetadata(bytes(3), { predictions: [] }), { split: 'test' }),
];

const targets: LabelTarget[] = members.map((m) => ({
  sampleId: m.sampleId,
  sha256: m.metadata.image.sha256,
  width: m.metadata.image.width,
  height: m.metadata.image.height,
}));

describe('createCocoWriter', () => {
  it('writes a COCO detection document with unique ids, resolving references and boxes inside the image', async () => {
    const doc = await cocoOf(members);
    expect(cocoProblems(doc)).toEqual([]);
    expect(doc.images.map((i) => i.file_name)).toEqual(members.map((m) => `images/${m.metadata.image.sha256}.jpg`));
    expect(doc.annotations).toHaveLength(3);
    expect(doc.categories.map((c) => c.name)).toEqual(['text', 'logo']);
  });

  it('turns x1,y1,x2,y2 predictions into [x, y, w, h] clamped to the image, with area', async () => {
    const doc = await cocoOf(members);
    expect(doc.annotations[0]).toMatchObject({ bbox: [10, 20, 100, 50], area: 5000, iscrowd: 0, image_id: 1 });
    // 600..700 x 400..520 in a 640x480 image keeps 600..640 x 400..480
    expect(doc.annotations[1]).toMatchObject({ bbox: [600, 400, 40, 80], area: 3200 });
  });

  it('carries the provenance of every sample on its image entry', async () => {
    const doc = await cocoOf(members);
    expect(doc.images[1]).toMatchObject({
      sample_id: 's2',
      split: 'val',
      device_id: 'cam-1',
      model_sha256: 'a'.repeat(64),
      strategy: 'near-threshold',
      captured_at: new Date(1_780_000_000_000).toISOString(),
    });
  });

  it('writes the imported labels of a labelled version instead of the predictions', async () => {
    const labelled = [member('s1', members[0]!.metadata, { annotations: [{ box: [1, 2, 11, 12], label: 'car' }] })];
    const doc = await cocoOf(labelled, true, ['person', 'car']);
    expect(doc.categories).toEqual([
      { id: 1, name: 'person', supercategory: 'object' },
      { id: 2, name: 'car', supercategory: 'object' },
    ]);
    expect(doc.annotations).toEqual([expect.objectContaining({ bbox: [1, 2, 10, 10], category_id: 2 })]);
  });

  it('gives each image its annotations when the two lists are written apart, as the export spools them', () => {
    const writer = createCocoWriter({ labelled: false, now: 0 });
    const parts = [members[2]!, members[1]!, members[0]!].map((m) => writer.add(m)!);
    const text = `${writer.head()}${parts.map((p) => p.image).join('')}${writer.middle()}${parts.map((p) => p.annotations).join('')}${writer.tail()}`;
    const doc = JSON.parse(text) as CocoDocument;
    expect(cocoProblems(doc)).toEqual([]);
    expect(doc.images.map((image) => image.sample_id)).toEqual(['s3', 's2', 's1']);
    expect(parts[0]!.annotations).toBe('');
    const s2 = doc.images.find((image) => image.sample_id === 's2')!;
    expect(doc.annotations.filter((a) => a.image_id === s2.id)).toEqual([
      expect.objectContaining({ bbox: [0, 0, 5, 5] }),
    ]);
    expect(doc.annotations.map((a) => a.id)).toEqual([1, 2, 3]);
  });

  it('writes an image once when two samples share its bytes', async () => {
    const doc = await cocoOf([members[0]!, member('s1-again', members[0]!.metadata)]);
    expect(doc.images).toHaveLength(1);
    expect(cocoProblems(doc)).toEqual([]);
  });
});

describe('parseCocoLabels', () => {
  it('reads back an export as labels that match its boxes', async () => {
    const doc = await cocoOf(members);
    const parsed = parseCocoLabels(CocoLabels.parse(doc), targets);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value.annotationCount).toBe(3);
    expect(parsed.value.annotations.get('s1')).toEqual([
      { box: [10, 20, 110, 70], label: 'text' },
      { box: [600, 400, 640, 480], label: 'text' },
    ]);
    expect(parsed.value.annotations.get('s3')).toEqual([]);
  });

  it('finds a sample by the sha256 in a file name a labelling tool prefixed, without sample_id', () => {
    const sha = targets[1]!.sha256;
    const parsed = parseCocoLabels(
      {
        images: [{ id: 7, file_name: `upload/3/a1b2c3d4-${sha}.jpg`, width: 640, height: 480 }],
        annotations: [{ id: 1, image_id: 7, category_id: 0, bbox: [1, 1, 10, 10] }],
        categories: [{ id: 0, name: 'logo' }],
      },
      targets,
    );
    expect(parsed.ok && parsed.value.annotations.get('s2')).toEqual([{ box: [1, 1, 11, 11], label: 'logo' }]);
  });

  it('refuses images that name no sample of the version with unknown_image', () => {
    const parsed = parseCocoLabels(
      { images: [{ id: 1, file_name: `images/${'f'.repeat(64)}.jpg` }], annotations: [], categories: [] },
      targets,
    );
    expect(parsed).toMatchObject({ ok: false, error: { code: 'unknown_image' } });
  });

  it('refuses annotations naming an image id the file does not list with unknown_image', () => {
    const parsed = parseCocoLabels(
      {
        images: [{ id: 1, file_name: 'x.jpg', sample_id: 's1' }],
        annotations: [{ id: 1, image_id: 2, category_id: 1, bbox: [0, 0, 1, 1] }],
        categories: [{ id: 1, name: 'a' }],
      },
      targets,
    );
    expect(parsed).toMatchObject({ ok: false, error: { code: 'unknown_image' } });
  });

  it('refuses unknown category ids, duplicate ids and empty boxes', () => {
    const base = { images: [{ id: 1, file_name: 'x.jpg', sample_id: 's1' }], categories: [{ id: 1, name: 'a' }] };
    expect(
      parseCocoLabels({ ...base, annotations: [{ id: 1, image_id: 1, category_id: 9, bbox: [0, 0, 1, 1] }] }, targets),
    ).toMatchObject({ ok: false, error: { code: 'unknown_category' } });
    expect(
      parseCocoLabels(
        {
          ...base,
          annotations: [
            { id: 1, image_id: 1, category_id: 1, bbox: [0, 0, 1, 1] },
            { id: 1, image_id: 1, category_id: 1, bbox: [0, 0, 2, 2] },
          ],
        },
        targets,
      ),
    ).toMatchObject({ ok: false, error: { code: 'unprocessable' } });
    expect(
      parseCocoLabels({ ...base, annotations: [{ id: 1, image_id: 1, category_id: 1, bbox: [5, 5, 0, 3] }] }, targets),
    ).toMatchObject({ ok: false, error: { code: 'unprocessable' } });
  });
});
