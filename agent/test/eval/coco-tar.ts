import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';

/*
 * COCO dataset exports as the control plane writes them (GET /api/v1/datasets/:id/export?format=coco):
 * a tar of annotations.json first, then images/<sha256>.jpg, for the eval tests.
 */

export type TarBox = {
  readonly label: string;
  readonly bbox: readonly [number, number, number, number];
  readonly score?: number;
};

export type TarImage = {
  readonly jpeg: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly boxes: readonly TarBox[];
  readonly split?: string;
};

export type WriteExportOptions = {
  readonly datasetId?: string | null;
  readonly categories: readonly string[];
  readonly images: readonly TarImage[];
  /** Leave these images (by index) out of the tar while listing them in annotations.json. */
  readonly omit?: readonly number[];
  /** Write no annotations.json at all. */
  readonly withoutAnnotations?: boolean;
};

export async function writeCocoExport(path: string, options: WriteExportOptions): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, createWriteStream(path));
  const names = options.images.map((image) => `images/${createHash('sha256').update(image.jpeg).digest('hex')}.jpg`);
  let annotationId = 1;
  const coco = {
    info: {
      description:
        options.datasetId === null ? 'edgeloop dataset' : `edgeloop dataset ${options.datasetId ?? 'evalset@2'}`,
    },
    images: options.images.map((image, i) => ({
      id: i + 1,
      file_name: names[i],
      width: image.width,
      height: image.height,
      ...(image.split ? { split: image.split } : {}),
    })),
    annotations: options.images.flatMap((image, i) =>
      image.boxes.map((box) => ({
        id: annotationId++,
        image_id: i + 1,
        category_id: options.categories.indexOf(box.label) + 1,
        bbox: [...box.bbox],
        area: box.bbox[2] * box.bbox[3],
        iscrowd: 0,
        ...(box.score !== undefined ? { score: box.score } : {}),
      })),
    ),
    categories: options.categories.map((name, i) => ({ id: i + 1, name })),
  };
  const add = (name: string, bytes: Uint8Array) =>
    new Promise<void>((resolve, reject) =>
      pack.entry({ name }, Buffer.from(bytes), (error) => (error ? reject(error) : resolve())),
    );
  if (!options.withoutAnnotations) await add('annotations.json', Buffer.from(JSON.stringify(coco)));
  for (const [i, image] of options.images.entries()) {
    if (options.omit?.includes(i)) continue;
    await add(names[i] as string, image.jpeg);
  }
  pack.finalize();
  await done;
}
