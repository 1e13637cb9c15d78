import { createReadStream } from 'node:fs';
import { CocoLabels, describeIssues, fail, ok, type Result } from '@edgeloop/protocol';
import tar from 'tar-stream';
import type { GroundTruthBox } from './detection-metrics.ts';

/*
 * The control plane's COCO dataset export (GET /api/v1/datasets/:id/export?format=coco, or
 * `edgeloop datasets export`): a tar of annotations.json and images/<sha256>.jpg. It is read
 * twice, never held whole: once for annotations.json, once streaming the images one by one.
 */

export type ExportImage = {
  /** COCO image id. */
  readonly id: number | string;
  /** Entry name in the tar (images/<sha256>.jpg). */
  readonly fileName: string;
  /** From annotations.json; null when the export left it out (the JPEG header then tells). */
  readonly width: number | null;
  readonly height: number | null;
  readonly split: string | null;
};

export type CocoExport = {
  /** The dataset version (`name@N`) named in info.description, or null. */
  readonly datasetId: string | null;
  /** In annotations.json order. */
  readonly images: readonly ExportImage[];
  /** Category names by COCO id order. */
  readonly categories: readonly string[];
  /** Ground-truth boxes by file name. */
  readonly truth: ReadonlyMap<string, readonly GroundTruthBox[]>;
  readonly annotationCount: number;
  /** Annotations with a `score`: a model's predictions exported from an unlabelled version. */
  readonly scoredAnnotations: number;
};

export type ExportErrorCode = 'not_found' | 'invalid';

const ANNOTATIONS = 'annotations.json';
/** The largest annotations.json read (the control plane takes label files up to 64 MiB). */
const ANNOTATIONS_LIMIT = 256 * 1024 * 1024;

/** Calls `onEntry` for each file of the tar at `path`, in order; an entry not consumed is skipped. */
async function eachEntry(
  path: string,
  onEntry: (name: string, read: () => Promise<Buffer>) => Promise<'next' | 'stop'>,
  signal?: AbortSignal,
): Promise<void> {
  const extract = tar.extract();
  const file = createReadStream(path);
  file.on('error', (error) => extract.destroy(error));
  file.pipe(extract);
  try {
    for await (const entry of extract) {
      if (signal?.aborted) break;
      let consumed = false;
      const read = async () => {
        consumed = true;
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of entry) {
          size += (chunk as Buffer).length;
          if (size > ANNOTATIONS_LIMIT)
            throw new Error(`${entry.header.name} is larger than ${ANNOTATIONS_LIMIT} bytes`);
          chunks.push(chunk as Buffer);
        }
        return Buffer.concat(chunks);
      };
      const next = entry.header.type === 'file' ? await onEntry(entry.header.name, read) : 'next';
      if (!consumed) entry.resume();
      if (next === 'stop') break;
    }
  } finally {
    file.unpipe(extract);
    file.destroy();
    extract.destroy();
  }
}

/** Reads and checks annotations.json of the export at `path`. */
export async function readCocoExport(path: string, signal?: AbortSignal): Promise<Result<CocoExport, ExportErrorCode>> {
  let text: string | null = null;
  try {
    await eachEntry(
      path,
      async (name, read) => {
        if (name !== ANNOTATIONS) return 'next';
        text = (await read()).toString('utf8');
        return 'stop';
      },
      signal,
    );
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ENOENT') return fail('not_found', `${path}: no such file`);
    return fail('invalid', `${path} is not a readable tar: ${(error as Error).message}`);
  }
  if (text === null) return fail('invalid', `${path} has no ${ANNOTATIONS}: not a COCO dataset export`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return fail('invalid', `${ANNOTATIONS} is not JSON: ${(error as Error).message}`);
  }
  const parsed = CocoLabels.safeParse(json);
  if (!parsed.success) return fail('invalid', `${ANNOTATIONS}: ${describeIssues(parsed.error.issues)}`);
  const coco = parsed.data;
  const categoryById = new Map(coco.categories.map((c) => [c.id, c.name]));
  const images: ExportImage[] = [];
  const fileById = new Map<number | string, string>();
  const truth = new Map<string, GroundTruthBox[]>();
  for (const image of coco.images) {
    const split = (image as { split?: unknown }).split;
    images.push({
      id: image.id,
      fileName: image.file_name,
      width: image.width ?? null,
      height: image.height ?? null,
      split: typeof split === 'string' ? split : null,
    });
    fileById.set(image.id, image.file_name);
    truth.set(image.file_name, []);
  }
  let scored = 0;
  for (const annotation of coco.annotations) {
    const file = fileById.get(annotation.image_id);
    const category = categoryById.get(annotation.category_id);
    if (file === undefined || category === undefined) {
      return fail(
        'invalid',
        `${ANNOTATIONS}: annotation ${annotation.id} names an image or category that is not listed`,
      );
    }
    if (typeof (annotation as { score?: unknown }).score === 'number') scored++;
    truth.get(file)?.push({
      category,
      bbox: annotation.bbox,
      crowd: (annotation as { iscrowd?: unknown }).iscrowd === 1,
    });
  }
  const description = (coco as { info?: { description?: unknown } }).info?.description;
  const named = typeof description === 'string' ? /edgeloop dataset (\S+@\d+)/.exec(description) : null;
  return ok({
    datasetId: named?.[1] ?? null,
    images,
    categories: coco.categories.map((c) => c.name),
    truth,
    annotationCount: coco.annotations.length,
    scoredAnnotations: scored,
  });
}

/**
 * Streams the images of the export at `path` listed in `wanted`, one at a time, in tar order;
 * resolves once every one was handed over (or the tar ended). Fails on a tar that cannot be read.
 */
export async function eachExportImage(
  path: string,
  wanted: ReadonlySet<string>,
  onImage: (fileName: string, bytes: Buffer) => Promise<void>,
  signal?: AbortSignal,
): Promise<{ readonly found: number }> {
  let found = 0;
  await eachEntry(
    path,
    async (name, read) => {
      if (!wanted.has(name)) return 'next';
      found++;
      await onImage(name, await read());
      return found >= wanted.size ? 'stop' : 'next';
    },
    signal,
  );
  return { found };
}
