import type { CocoLabels } from '@edgeloop/protocol';
import { boxesOf, clampBox, type DatasetBox, type DatasetMember, imageFileName, provenanceOf } from './members.ts';

/*
 * COCO detection JSON, as CVAT and Label Studio import it: `images`, `annotations`, `categories`,
 * integer ids from 1, every image_id and category_id resolving, `bbox` [x, y, w, h] in pixels
 * inside the image, `area`, `iscrowd` 0. Images carry their provenance as extra fields.
 *
 * The document is written in one pass over the members, as two lists of text (images and
 * annotations) that a streamed export spools apart, so its size never has to fit in memory.
 */

const round = (value: number) => Math.round(value * 100) / 100;

/** Category ids by class name: the fixed list first (labelled versions), then names as they come. */
export function createCategoryIds(fixed: readonly string[] = []) {
  const ids = new Map<string, number>();
  for (const name of fixed) if (!ids.has(name)) ids.set(name, ids.size + 1);
  return {
    idOf(name: string): number {
      let id = ids.get(name);
      if (id === undefined) {
        id = ids.size + 1;
        ids.set(name, id);
      }
      return id;
    },
    /** Names by id, id 1 first. */
    names(): string[] {
      return [...ids.keys()];
    },
  };
}

export type CocoExportOptions = {
  /** True for a labelled version: its imported boxes are written, not the predictions. */
  readonly labelled: boolean;
  /** Class names known up front (a labelled version's categories). */
  readonly categories?: readonly string[];
  readonly description?: string;
  readonly now?: number;
};

/** The text of one image of the document: its `images` entry and its `annotations` entries. */
export type CocoImageParts = {
  readonly image: string;
  /** Empty text for an image without boxes. */
  readonly annotations: string;
};

/**
 * The annotations.json text, written in one pass over the members: `head`, then each image's
 * `image` text (in order), `middle`, each image's `annotations` text (in the same order), `tail`.
 * The caller keeps the two lists apart (a streamed export spools them to two files), so the
 * document never has to fit in memory and the members are read once. Two samples with the same
 * image bytes are one image (the first one wins; `add` gives null for the others).
 */
export function createCocoWriter(options: CocoExportOptions) {
  const categories = createCategoryIds(options.categories);
  const imageIds = new Set<string>();
  let annotationId = 0;
  return {
    head(): string {
      return `{"info":${JSON.stringify({
        description: options.description ?? 'edgeloop dataset',
        version: '1.0',
        date_created: new Date(options.now ?? Date.now()).toISOString(),
      })},"licenses":[],"images":[`;
    },

    add(member: DatasetMember): CocoImageParts | null {
      const sha = member.metadata.image.sha256;
      if (imageIds.has(sha)) return null;
      imageIds.add(sha);
      const imageId = imageIds.size;
      const { width, height } = member.metadata.image;
      const image = `${imageId > 1 ? ',' : ''}${JSON.stringify({
        id: imageId,
        file_name: imageFileName(member),
        width,
        height,
        ...provenanceOf(member),
      })}`;
      let annotations = '';
      for (const box of boxesOf(member, options.labelled)) {
        const clamped = clampBox(box.box, width, height);
        if (!clamped) continue;
        const [x1, y1, x2, y2] = clamped;
        const w = round(x2 - x1);
        const h = round(y2 - y1);
        if (w <= 0 || h <= 0) continue;
        annotationId++;
        annotations += `${annotationId > 1 ? ',' : ''}${JSON.stringify({
          id: annotationId,
          image_id: imageId,
          category_id: categories.idOf(box.label),
          bbox: [round(x1), round(y1), w, h],
          area: round(w * h),
          iscrowd: 0,
          segmentation: [],
          ...(box.score !== undefined ? { score: round(box.score * 100) / 100 } : {}),
        })}`;
      }
      return { image, annotations };
    },

    middle(): string {
      return '],"annotations":[';
    },

    /** The categories (known only once every box has been seen) and the document's end. */
    tail(): string {
      return `],"categories":${JSON.stringify(
        categories.names().map((name, i) => ({ id: i + 1, name, supercategory: 'object' })),
      )}}`;
    },
  };
}

/** The whole annotations.json text of `members`, in memory (for small sets: tests, previews). */
export function cocoJsonText(members: Iterable<DatasetMember>, options: CocoExportOptions): string {
  const writer = createCocoWriter(options);
  const images: string[] = [];
  const annotations: string[] = [];
  for (const member of members) {
    const parts = writer.add(member);
    if (!parts) continue;
    images.push(parts.image);
    annotations.push(parts.annotations);
  }
  return `${writer.head()}${images.join('')}${writer.middle()}${annotations.join('')}${writer.tail()}`;
}

/* ------------------------------------------- import ------------------------------------------- */

/** What the import needs to know of each sample of the version being labelled. */
export type LabelTarget = {
  readonly sampleId: string;
  readonly sha256: string;
  readonly width: number;
  readonly height: number;
};

export type LabelImportError = {
  readonly code: 'unknown_image' | 'unknown_category' | 'unprocessable';
  readonly message: string;
};

export type LabelImport = {
  /** Boxes per sample id, for every sample the file names (an image without boxes: empty). */
  readonly annotations: ReadonlyMap<string, readonly DatasetBox[]>;
  /** Class names, in the file's category order. */
  readonly categories: readonly string[];
  readonly annotationCount: number;
};

const SHA256_IN_NAME = /[0-9a-f]{64}/g;

function listSome(values: readonly unknown[]): string {
  const shown = values.slice(0, 5).map((v) => JSON.stringify(v));
  return `${shown.join(', ')}${values.length > 5 ? ` and ${values.length - 5} more` : ''}`;
}

/** The sample an image entry names: its `sample_id`, else the last sha256 in its file name. */
function resolveImage(
  image: CocoLabels['images'][number],
  bySampleId: ReadonlyMap<string, LabelTarget>,
  bySha: ReadonlyMap<string, LabelTarget>,
): LabelTarget | null {
  if (typeof image.sample_id === 'string') {
    const byId = bySampleId.get(image.sample_id);
    if (byId) return byId;
  }
  const base = image.file_name.split(/[\\/]/).pop() ?? '';
  const hashes = base.toLowerCase().match(SHA256_IN_NAME) ?? [];
  for (const sha of hashes.reverse()) {
    const found = bySha.get(sha);
    if (found) return found;
  }
  return null;
}

/**
 * Checks COCO labels against the samples of a version and turns them into boxes per sample.
 * Every image must name a sample of the version, every annotation a listed image and category,
 * ids must be unique, boxes must have a size. A box reaching past the image is clamped into it.
 * Nothing is returned unless the whole file holds.
 */
export function parseCocoLabels(
  labels: CocoLabels,
  targets: Iterable<LabelTarget>,
): { ok: true; value: LabelImport } | { ok: false; error: LabelImportError } {
  const bySampleId = new Map<string, LabelTarget>();
  const bySha = new Map<string, LabelTarget>();
  for (const target of targets) {
    bySampleId.set(target.sampleId, target);
    if (!bySha.has(target.sha256)) bySha.set(target.sha256, target);
  }
  const fail = (code: LabelImportError['code'], message: string) => ({ ok: false as const, error: { code, message } });

  const categories = new Map<string | number, string>();
  const duplicateCategories: unknown[] = [];
  for (const category of labels.categories) {
    if (categories.has(category.id)) duplicateCategories.push(category.id);
    categories.set(category.id, category.name);
  }
  if (duplicateCategories.length > 0) {
    return fail('unprocessable', `category ids appear twice: ${listSome(duplicateCategories)}`);
  }

  const images = new Map<string | number, LabelTarget>();
  const unknown: string[] = [];
  const duplicateImages: unknown[] = [];
  for (const image of labels.images) {
    if (images.has(image.id)) duplicateImages.push(image.id);
    const target = resolveImage(image, bySampleId, bySha);
    if (!target) unknown.push(image.file_name);
    else images.set(image.id, target);
  }
  if (duplicateImages.length > 0) return fail('unprocessable', `image ids appear twice: ${listSome(duplicateImages)}`);
  if (unknown.length > 0) {
    return fail(
      'unknown_image',
      `${unknown.length} image(s) name no sample of this version (by sample_id or the image sha256 in file_name): ${listSome(unknown)}`,
    );
  }

  const annotations = new Map<string, DatasetBox[]>();
  for (const target of images.values()) annotations.set(target.sampleId, []);
  const seenIds = new Set<string | number>();
  const duplicateAnnotations: unknown[] = [];
  const unknownImageIds: unknown[] = [];
  const unknownCategoryIds: unknown[] = [];
  const badBoxes: unknown[] = [];
  let count = 0;
  for (const annotation of labels.annotations) {
    if (seenIds.has(annotation.id)) duplicateAnnotations.push(annotation.id);
    seenIds.add(annotation.id);
    const target = images.get(annotation.image_id);
    if (!target) {
      unknownImageIds.push(annotation.image_id);
      continue;
    }
    const label = categories.get(annotation.category_id);
    if (label === undefined) {
      unknownCategoryIds.push(annotation.category_id);
      continue;
    }
    const [x, y, w, h] = annotation.bbox;
    if (!(w > 0) || !(h > 0) || !Number.isFinite(x) || !Number.isFinite(y)) {
      badBoxes.push(annotation.id);
      continue;
    }
    const clamped = clampBox([x, y, x + w, y + h], target.width, target.height);
    if (!clamped) {
      badBoxes.push(annotation.id);
      continue;
    }
    annotations.get(target.sampleId)!.push({ box: clamped, label });
    count++;
  }
  if (unknownImageIds.length > 0) {
    return fail('unknown_image', `annotations name image ids the file does not list: ${listSome(unknownImageIds)}`);
  }
  if (unknownCategoryIds.length > 0) {
    return fail(
      'unknown_category',
      `annotations name category ids the file does not list: ${listSome(unknownCategoryIds)}`,
    );
  }
  if (duplicateAnnotations.length > 0) {
    return fail('unprocessable', `annotation ids appear twice: ${listSome(duplicateAnnotations)}`);
  }
  if (badBoxes.length > 0) {
    return fail('unprocessable', `annotations with an empty box or one outside the image: ${listSome(badBoxes)}`);
  }
  return {
    ok: true,
    value: { annotations, categories: [...new Set(labels.categories.map((c) => c.name))], annotationCount: count },
  };
}
