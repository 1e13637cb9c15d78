import {
  ApiError as ApiErrorShape,
  CocoLabels,
  CreateDatasetRequest,
  DatasetExportQuery,
  DatasetList,
  DatasetListQuery,
  DatasetView,
  describeIssues,
} from '@edgeloop/protocol';
import type { DatasetService } from '../../datasets/service.ts';
import { ApiError } from '../api-error.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { defineRoute, type Route } from '../route.ts';

export type DatasetRoutesDeps = {
  readonly service: DatasetService;
  /** The largest COCO file PUT /labels takes (larger than the JSON body limit: label files grow with the data). */
  readonly labelsLimitBytes: number;
};

export const DEFAULT_LABELS_LIMIT_BYTES = 64 * 1024 * 1024;

/** Reads a COCO labels body up to `limit` bytes and checks it against the schema. */
async function readLabels(source: ReadableStream<Uint8Array> | null, limit: number): Promise<CocoLabels> {
  if (!source) throw new ApiError('bad_request', 'the body is empty; COCO JSON expected');
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of source as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > limit) throw new ApiError('payload_too_large', `the labels exceed ${limit} bytes`);
    chunks.push(chunk);
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (error) {
    throw new ApiError('bad_request', `the body is not JSON: ${(error as Error).message}`);
  }
  const parsed = CocoLabels.safeParse(json);
  if (!parsed.success) throw new ApiError('unprocessable', describeIssues(parsed.error.issues));
  return parsed.data;
}

const errors = {
  401: { description: 'missing or invalid token', schema: ApiErrorShape },
  403: { description: 'the token role may not do this', schema: ApiErrorShape },
  404: { description: 'no such dataset version', schema: ApiErrorShape },
} as const;

export function datasetRoutes(deps: DatasetRoutesDeps): Route[] {
  const { service } = deps;
  return [
    defineRoute({
      method: 'post',
      path: '/api/v1/datasets',
      summary: 'Make a dataset version name@N from a sample query or a list of sample ids, frozen now',
      tag: 'datasets',
      role: 'operator',
      body: CreateDatasetRequest,
      responses: {
        201: { description: 'the new version', schema: DatasetView },
        ...errors,
        409: { description: 'concurrent creates kept taking the version number', schema: ApiErrorShape },
        422: { description: 'invalid request, no matching sample, or sample ids not stored', schema: ApiErrorShape },
      },
      async handle({ c, body, token }) {
        const created = await service.create(body, token?.id ?? null);
        if (!created.ok) throw new ApiError(created.error.code, created.error.message);
        return c.json(created.value, 201);
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/datasets',
      summary: 'List dataset versions, newest first, with cursor paging',
      tag: 'datasets',
      role: 'viewer',
      query: DatasetListQuery,
      responses: { 200: { description: 'a page of versions', schema: DatasetList }, ...errors },
      async handle({ c, query }) {
        const before = query.cursor ? decodeCursor(query.cursor, { t: 'number', i: 'string' }) : undefined;
        const items = await service.list({
          ...(query.name !== undefined ? { name: query.name } : {}),
          ...(before ? { before: { createdAt: before.t as number, id: before.i as string } } : {}),
          limit: query.limit + 1,
        });
        const page = items.slice(0, query.limit);
        const last = page[page.length - 1];
        const nextCursor = items.length > query.limit && last ? encodeCursor({ t: last.createdAt, i: last.id }) : null;
        return c.json({ items: page, nextCursor });
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/datasets/:id',
      summary: 'One dataset version: counts per split, parent, query, categories',
      tag: 'datasets',
      role: 'viewer',
      responses: { 200: { description: 'the version', schema: DatasetView }, ...errors },
      async handle({ c, params }) {
        const found = await service.get(params.id!);
        if (!found) throw new ApiError('not_found', `no dataset version ${params.id}`);
        return c.json(found);
      },
    }),

    defineRoute({
      method: 'put',
      path: '/api/v1/datasets/:id/labels',
      summary: 'Import COCO annotations (CVAT, Label Studio) as a new labelled version whose parent is :id',
      tag: 'datasets',
      role: 'operator',
      streamedBody: {
        contentType: 'application/json',
        description: 'COCO detection JSON (images, annotations, categories), as CVAT and Label Studio export it',
        limitBytes: deps.labelsLimitBytes,
      },
      responses: {
        201: { description: 'the new labelled version', schema: DatasetView },
        413: { description: 'the file exceeds the labels limit', schema: ApiErrorShape },
        ...errors,
        422: {
          description:
            'refused labels, nothing stored: unknown_image (an image names no sample of the version), ' +
            'unknown_category, unprocessable (duplicate ids, empty boxes)',
          schema: ApiErrorShape,
        },
      },
      async handle({ c, params, token }) {
        const body = await readLabels(c.req.raw.body, deps.labelsLimitBytes);
        const imported = await service.importLabels(params.id!, body, token?.id ?? null);
        if (!imported.ok) throw new ApiError(imported.error.code, imported.error.message);
        return c.json(imported.value, 201);
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/datasets/:id/export',
      summary: 'The version as a streamed tar: COCO (annotations.json + images/) or YOLO (images/, labels/, data.yaml)',
      tag: 'datasets',
      role: 'viewer',
      query: DatasetExportQuery,
      responses: { 200: { description: 'the tar, streamed', contentType: 'application/x-tar' }, ...errors },
      async handle({ params, query }) {
        const stream = await service.export(params.id!, query.format);
        if (!stream) throw new ApiError('not_found', `no dataset version ${params.id}`);
        const file = `${params.id!.replace('@', '-')}-${query.format}.tar`;
        return new Response(stream, {
          status: 200,
          headers: { 'content-type': 'application/x-tar', 'content-disposition': `attachment; filename="${file}"` },
        });
      },
    }),
  ];
}
