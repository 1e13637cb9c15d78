import { z } from 'zod';
import { SampleStrategyKind } from './samples.ts';

/*
 * Datasets: immutable versions (`name@N`) of hard samples, frozen at creation, split into
 * train/val/test by hashing the sample id, labelled by importing COCO annotations (a new version
 * whose parent is the one labelled), exported as COCO JSON or YOLO txt in a streamed tar.
 */

const EpochMs = z.int().min(0).describe('Milliseconds since the Unix epoch');
const NextCursor = z.string().nullable().describe('Pass as ?cursor= for the next page; null on the last page');

export const DATASET_SPLITS = ['train', 'val', 'test'] as const;
export const DatasetSplit = z.enum(DATASET_SPLITS).describe('Which split a sample belongs to');
export type DatasetSplit = z.infer<typeof DatasetSplit>;

export const DATASET_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
export const DatasetName = z
  .string()
  .regex(DATASET_NAME_PATTERN, 'dataset names are lower-case letters, digits, dot, dash and underscore')
  .describe('Dataset name; versions are name@1, name@2, ...');

export const DatasetSplitRatios = z
  .object({
    train: z.int().min(0).max(100).describe('Percent of samples in train'),
    val: z.int().min(0).max(100).describe('Percent of samples in val'),
    test: z.int().min(0).max(100).describe('Percent of samples in test'),
  })
  .refine((r) => r.train + r.val + r.test === 100, 'train + val + test must be 100')
  .describe('Split ratios in percent; a sample is placed by sha256(sample id) mod 100');
export type DatasetSplitRatios = z.infer<typeof DatasetSplitRatios>;
export const DEFAULT_SPLIT_RATIOS: DatasetSplitRatios = Object.freeze({ train: 80, val: 10, test: 10 });

export const DatasetSampleQuery = z
  .object({
    deviceId: z.string().max(128).optional().describe('Only samples of this device'),
    site: z.string().max(128).optional().describe('Only samples from this site'),
    label: z
      .array(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}:.{0,128}$/, 'label filters look like key:value'))
      .max(16)
      .optional()
      .describe('Device labels at capture, key:value; every one must match'),
    modelId: z
      .string()
      .max(128)
      .optional()
      .describe('Only samples whose predictions came from this model (name@version)'),
    modelSha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional()
      .describe('Only samples with predictions of the model with this sha256'),
    strategy: SampleStrategyKind.optional().describe('Only samples selected by this strategy'),
    from: EpochMs.optional().describe('Captured at or after this time'),
    to: EpochMs.optional().describe('Captured at or before this time'),
    hasLabels: z
      .boolean()
      .optional()
      .describe('Only samples with (true) or without (false) human labels in some dataset version'),
  })
  .strict()
  .describe('Which stored samples a dataset takes: the filters of GET /api/v1/samples');
export type DatasetSampleQuery = z.infer<typeof DatasetSampleQuery>;

export const CreateDatasetRequest = z
  .object({
    name: DatasetName,
    query: DatasetSampleQuery.optional().describe('Take every stored sample matching these filters now'),
    sampleIds: z
      .array(z.string().min(1).max(128))
      .min(1)
      .max(100_000)
      .optional()
      .describe('Take exactly these samples'),
    splits: DatasetSplitRatios.optional().describe('Split ratios; 80/10/10 when absent'),
  })
  .refine((r) => (r.query === undefined) !== (r.sampleIds === undefined), 'give exactly one of query and sampleIds')
  .describe('POST /api/v1/datasets: a new version name@N (N = previous + 1), frozen now');
export type CreateDatasetRequest = z.infer<typeof CreateDatasetRequest>;

export const DatasetView = z
  .object({
    id: z.string().describe('name@version'),
    name: DatasetName,
    version: z.int().min(1).describe('Version number within the name'),
    parentId: z.string().nullable().describe('The version this one labels; null for a version made from samples'),
    labelled: z.boolean().describe('True when annotations were imported; exports then carry them, not predictions'),
    query: DatasetSampleQuery.nullable().describe('The filters it was made from; null when made from ids or labels'),
    splits: DatasetSplitRatios,
    counts: z
      .object({
        total: z.int().min(0).describe('Samples in the version'),
        train: z.int().min(0).describe('Samples in train'),
        val: z.int().min(0).describe('Samples in val'),
        test: z.int().min(0).describe('Samples in test'),
        annotations: z.int().min(0).describe('Imported annotations (0 for an unlabelled version)'),
      })
      .describe('Sizes of the version'),
    categories: z.array(z.string()).describe('Class names of the imported labels; empty for an unlabelled version'),
    createdAt: EpochMs.describe('When the version was made'),
    createdBy: z.string().nullable().describe('The API token that made it'),
  })
  .describe('One immutable dataset version');
export type DatasetView = z.infer<typeof DatasetView>;

export const DatasetListQuery = z
  .object({
    name: DatasetName.optional().describe('Only versions of this dataset'),
    limit: z.coerce.number().int().min(1).max(500).default(100).describe('Page size'),
    cursor: z.string().max(256).optional().describe('Opaque, from the previous page nextCursor'),
  })
  .describe('Filters of GET /api/v1/datasets');
export type DatasetListQuery = z.infer<typeof DatasetListQuery>;

export const DatasetList = z
  .object({ items: z.array(DatasetView).describe('Versions of this page, newest first'), nextCursor: NextCursor })
  .describe('A page of dataset versions');
export type DatasetList = z.infer<typeof DatasetList>;

export const DATASET_EXPORT_FORMATS = ['coco', 'yolo'] as const;
export const DatasetExportQuery = z
  .object({ format: z.enum(DATASET_EXPORT_FORMATS).default('coco').describe('coco (annotations.json) or yolo (txt)') })
  .describe('Options of GET /api/v1/datasets/:id/export');
export type DatasetExportQuery = z.infer<typeof DatasetExportQuery>;

/* ---------------------------------------- COCO labels ----------------------------------------- */

/*
 * COCO detection annotations as CVAT and Label Studio export them. Extra fields are kept out of
 * the way (loose objects); an image names its sample by `sample_id` (as our export writes it) or
 * by a file name holding the image sha256 (`images/<sha256>.jpg`, with any prefix a tool adds).
 */
export const CocoImage = z
  .looseObject({
    id: z.union([z.int(), z.string().min(1)]).describe('Image id within the file'),
    file_name: z.string().max(1024).describe('Image path; its sha256 names the sample'),
    width: z.int().min(1).optional().describe('Width in pixels'),
    height: z.int().min(1).optional().describe('Height in pixels'),
    sample_id: z.string().max(128).optional().describe('The sample, as edgeloop exports write it'),
  })
  .describe('A COCO image entry');
export type CocoImage = z.infer<typeof CocoImage>;

export const CocoAnnotation = z
  .looseObject({
    id: z.union([z.int(), z.string().min(1)]).describe('Annotation id within the file'),
    image_id: z.union([z.int(), z.string().min(1)]).describe('The image it belongs to'),
    category_id: z.union([z.int(), z.string().min(1)]).describe('Its category'),
    bbox: z.tuple([z.number(), z.number(), z.number(), z.number()]).describe('[x, y, width, height] in pixels'),
    area: z.number().min(0).optional().describe('Box area in pixels'),
    iscrowd: z
      .union([z.literal(0), z.literal(1)])
      .optional()
      .describe('0 for one object'),
  })
  .describe('A COCO annotation (boxes only; segmentations are ignored)');
export type CocoAnnotation = z.infer<typeof CocoAnnotation>;

export const CocoCategory = z
  .looseObject({
    id: z.union([z.int(), z.string().min(1)]).describe('Category id within the file'),
    name: z.string().min(1).max(64).describe('Class name'),
  })
  .describe('A COCO category');
export type CocoCategory = z.infer<typeof CocoCategory>;

export const CocoLabels = z
  .looseObject({
    images: z.array(CocoImage).max(200_000).describe('Images, each naming a sample of the version'),
    annotations: z.array(CocoAnnotation).max(2_000_000).describe('Boxes'),
    categories: z.array(CocoCategory).max(10_000).describe('Classes'),
  })
  .describe('PUT /api/v1/datasets/:id/labels: COCO detection annotations for samples of the version');
export type CocoLabels = z.infer<typeof CocoLabels>;
