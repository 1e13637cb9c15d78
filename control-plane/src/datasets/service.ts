import {
  type CocoLabels,
  type CreateDatasetRequest,
  type DatasetSampleQuery,
  type DatasetSplit,
  type DatasetSplitRatios,
  type DatasetView,
  DEFAULT_SPLIT_RATIOS,
  type SampleMetadata,
  type SamplePrediction,
} from '@edgeloop/protocol';
import type {
  DatasetMemberRow,
  DatasetMembershipRow,
  DatasetRecipe,
  DatasetRecord,
  DatasetRepository,
  SampleQuery,
  SampleRecord,
  SampleRepository,
} from '../db/repositories.ts';
import type { BlobStore } from '../models/blob-store.ts';
import { parseCocoLabels } from './coco.ts';
import { type ExportFormat, exportDatasetWebStream } from './export.ts';
import type { DatasetBox, DatasetMember } from './members.ts';
import { splitOf } from './split.ts';

/*
 * Dataset versions: made from a sample query or a list of ids (membership frozen in one
 * transaction), labelled by COCO imports (a new version pointing at its parent), exported as a
 * streamed tar. Expected failures come back as values with an API error code.
 */

export type DatasetError = {
  readonly code: 'not_found' | 'unprocessable' | 'unknown_image' | 'unknown_category' | 'conflict';
  readonly message: string;
};
export type DatasetResult<T> = { ok: true; value: T } | { ok: false; error: DatasetError };

export type DatasetServiceDeps = {
  readonly datasets: DatasetRepository;
  readonly samples: Pick<SampleRepository, 'list'>;
  readonly blobs: Pick<BlobStore, 'pathOf' | 'sizeOf'>;
  readonly clock: { now(): number };
  /** Where exports spool their small files (annotations.json, ...); the OS temp dir by default. */
  readonly tmpDir?: string;
  /** Rows read per query while making or exporting a version. */
  readonly pageSize?: number;
  /** The most samples one version may hold. */
  readonly maxSamples?: number;
};

export type DatasetService = ReturnType<typeof createDatasetService>;

const fail = (code: DatasetError['code'], message: string) => ({ ok: false as const, error: { code, message } });

/** The repository filters of a dataset query. */
export function toSampleQuery(query: DatasetSampleQuery): Omit<SampleQuery, 'limit' | 'before'> {
  return {
    ...(query.deviceId !== undefined ? { deviceId: query.deviceId } : {}),
    ...(query.site !== undefined ? { site: query.site } : {}),
    ...(query.label !== undefined
      ? {
          labels: query.label.map((pair) => {
            const colon = pair.indexOf(':');
            return [pair.slice(0, colon), pair.slice(colon + 1)] as const;
          }),
        }
      : {}),
    ...(query.modelId !== undefined ? { modelId: query.modelId } : {}),
    ...(query.modelSha256 !== undefined ? { modelSha256: query.modelSha256 } : {}),
    ...(query.strategy !== undefined ? { strategy: query.strategy } : {}),
    ...(query.from !== undefined ? { from: query.from } : {}),
    ...(query.to !== undefined ? { to: query.to } : {}),
    ...(query.hasLabels !== undefined ? { hasLabels: query.hasLabels } : {}),
  };
}

/** A stored sample as the metadata its device sent. */
export function toMetadata(sample: SampleRecord): SampleMetadata {
  return {
    deviceId: sample.deviceId,
    site: sample.site,
    labels: { ...sample.labels },
    model:
      sample.modelId !== null && sample.modelSha256 !== null
        ? { id: sample.modelId, sha256: sample.modelSha256 }
        : null,
    strategy: sample.strategy as SampleMetadata['strategy'],
    reason: sample.reason,
    tags: [...sample.tags],
    predictions: (Array.isArray(sample.predictions) ? sample.predictions : []) as SamplePrediction[],
    frameTs: sample.frameTs,
    bootId: sample.bootId,
    seq: sample.seq,
    image: {
      sha256: sample.imageSha256,
      bytes: sample.bytes,
      width: sample.width,
      height: sample.height,
      contentType: 'image/jpeg',
    },
  };
}

function toMember(row: DatasetMemberRow): DatasetMember {
  return {
    sampleId: row.sampleId,
    split: row.split as DatasetSplit,
    metadata: toMetadata(row.sample),
    receivedAt: row.sample.receivedAt,
    annotations: Array.isArray(row.annotations) ? (row.annotations as DatasetBox[]) : null,
  };
}

export function createDatasetService(deps: DatasetServiceDeps) {
  const pageSize = deps.pageSize ?? 500;
  const maxSamples = deps.maxSamples ?? 100_000;

  async function view(record: DatasetRecord): Promise<DatasetView> {
    const counts = await deps.datasets.splitCounts(record.id);
    const train = counts.train ?? 0;
    const val = counts.val ?? 0;
    const test = counts.test ?? 0;
    return {
      id: record.id,
      name: record.name,
      version: record.version,
      parentId: record.parentId,
      labelled: record.recipe.source === 'labels',
      query: record.recipe.source === 'query' ? (record.recipe.query as DatasetSampleQuery) : null,
      splits: record.recipe.splits,
      counts: { total: train + val + test, train, val, test, annotations: record.recipe.annotationCount ?? 0 },
      categories: [...(record.recipe.categories ?? [])],
      createdAt: record.createdAt,
      createdBy: record.createdBy,
    };
  }

  /** Every member row of a version, page by page. */
  async function* memberRows(id: string): AsyncGenerator<DatasetMemberRow> {
    let after: string | undefined;
    for (;;) {
      const page = await deps.datasets.members(id, {
        ...(after !== undefined ? { afterSampleId: after } : {}),
        limit: pageSize,
      });
      yield* page;
      if (page.length < pageSize) return;
      after = page[page.length - 1]!.sampleId;
    }
  }

  /** Stores the next version of `name` (retrying when a concurrent create took the number). */
  async function storeVersion(
    input: { name: string; parentId: string | null; recipe: DatasetRecipe; createdBy: string | null },
    members: readonly DatasetMembershipRow[],
  ): Promise<DatasetResult<DatasetView>> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const version = (await deps.datasets.latestVersion(input.name)) + 1;
      const record: DatasetRecord = {
        id: `${input.name}@${version}`,
        name: input.name,
        version,
        parentId: input.parentId,
        recipe: input.recipe,
        sampleCount: members.length,
        createdAt: deps.clock.now(),
        createdBy: input.createdBy,
      };
      if ((await deps.datasets.create(record, members)) === 'created') return { ok: true, value: await view(record) };
    }
    return fail('conflict', `another writer keeps taking the next version of ${input.name}; try again`);
  }

  /** The ids a query matches now, newest first (at most maxSamples + 1, to tell "too many"). */
  async function idsOfQuery(query: DatasetSampleQuery): Promise<string[]> {
    const filters = toSampleQuery(query);
    const ids: string[] = [];
    let before: SampleQuery['before'];
    for (;;) {
      const page = await deps.samples.list({ ...filters, ...(before ? { before } : {}), limit: pageSize });
      for (const sample of page) ids.push(sample.id);
      if (page.length < pageSize || ids.length > maxSamples) return ids;
      const last = page[page.length - 1]!;
      before = { receivedAt: last.receivedAt, id: last.id };
    }
  }

  return {
    async create(request: CreateDatasetRequest, createdBy: string | null): Promise<DatasetResult<DatasetView>> {
      const splits: DatasetSplitRatios = request.splits ?? DEFAULT_SPLIT_RATIOS;
      let ids: string[];
      if (request.query) {
        ids = await idsOfQuery(request.query);
        if (ids.length === 0) return fail('unprocessable', 'the query matches no stored sample');
      } else {
        ids = [...new Set(request.sampleIds ?? [])];
        const found = await deps.datasets.existingSampleIds(ids);
        const missing = ids.filter((id) => !found.has(id));
        if (missing.length > 0) {
          return fail(
            'unprocessable',
            `${missing.length} sample id(s) are not stored: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`,
          );
        }
      }
      if (ids.length > maxSamples) return fail('unprocessable', `a version holds at most ${maxSamples} samples`);
      const members = ids.map((sampleId) => ({ sampleId, split: splitOf(sampleId, splits), annotations: null }));
      const recipe: DatasetRecipe = request.query
        ? { source: 'query', query: request.query, splits }
        : { source: 'ids', splits };
      return storeVersion({ name: request.name, parentId: null, recipe, createdBy }, members);
    },

    async get(id: string): Promise<DatasetView | null> {
      const record = await deps.datasets.get(id);
      return record ? view(record) : null;
    },

    async list(query: {
      readonly name?: string;
      readonly before?: { readonly createdAt: number; readonly id: string };
      readonly limit: number;
    }): Promise<DatasetView[]> {
      const records = await deps.datasets.list(query);
      return Promise.all(records.map(view));
    },

    /** A new labelled version name@N+1 of `id`'s samples, with the file's boxes (nothing stored on error). */
    async importLabels(id: string, labels: CocoLabels, createdBy: string | null): Promise<DatasetResult<DatasetView>> {
      const parent = await deps.datasets.get(id);
      if (!parent) return fail('not_found', `no dataset version ${id}`);
      const rows: DatasetMemberRow[] = [];
      for await (const row of memberRows(id)) rows.push(row);
      const parsed = parseCocoLabels(
        labels,
        rows.map((row) => ({
          sampleId: row.sampleId,
          sha256: row.sample.imageSha256,
          width: row.sample.width,
          height: row.sample.height,
        })),
      );
      if (!parsed.ok) return fail(parsed.error.code, parsed.error.message);
      const categories = [...new Set([...(parent.recipe.categories ?? []), ...parsed.value.categories])];
      let annotationCount = 0;
      const members = rows.map((row) => {
        const annotations = parsed.value.annotations.get(row.sampleId) ?? row.annotations ?? null;
        if (Array.isArray(annotations)) annotationCount += annotations.length;
        return { sampleId: row.sampleId, split: row.split, annotations };
      });
      return storeVersion(
        {
          name: parent.name,
          parentId: parent.id,
          recipe: { source: 'labels', splits: parent.recipe.splits, categories, annotationCount },
          createdBy,
        },
        members,
      );
    },

    /** The version as a streamed tar, or null when there is no such version. */
    async export(id: string, format: ExportFormat): Promise<ReadableStream<Uint8Array> | null> {
      const record = await deps.datasets.get(id);
      if (!record) return null;
      const members = async function* () {
        for await (const row of memberRows(id)) yield toMember(row);
      };
      return exportDatasetWebStream(
        {
          datasetId: id,
          format,
          labelled: record.recipe.source === 'labels',
          categories: record.recipe.categories ?? [],
          members,
        },
        { blobs: deps.blobs, ...(deps.tmpDir ? { tmpDir: deps.tmpDir } : {}), now: () => deps.clock.now() },
      );
    },
  };
}
