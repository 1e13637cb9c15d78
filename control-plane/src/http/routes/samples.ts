import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import {
  ApiError as ApiErrorShape,
  SAMPLE_UPLOAD_CONTENT_TYPE,
  SAMPLE_UPLOAD_OFFSET_HEADER,
  SampleList,
  SampleListQuery,
  SamplePurgeResult,
  SampleUploadState,
  SampleView,
} from '@edgeloop/protocol';
import type { Context } from 'hono';
import type { SampleUploaderRecord } from '../../db/repositories.ts';
import type { DeviceSecrets } from '../../device-secrets.ts';
import type { Counter } from '../../metrics.ts';
import { type SampleService, toSampleView } from '../../samples/service.ts';
import type { Uploader, UploadFailure } from '../../samples/uploads.ts';
import { ApiError } from '../api-error.ts';
import { authenticateDevice } from '../auth.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { boundaryOf, MultipartError, readMultipart, readPartText } from '../multipart.ts';
import { type AppEnv, defineRoute, type Route } from '../route.ts';
import { BodyBrokeOff, bodyChunks, readWholeBody } from './samples-body.ts';
import { splitSampleForm } from './samples-form.ts';

export type SampleRoutesDeps = {
  readonly service: SampleService;
  readonly secrets: Pick<DeviceSecrets, 'check'>;
  readonly authFailures: Counter;
  readonly maxBytes: number;
};

/** Largest metadata document (predictions included) a device may post. */
const METADATA_LIMIT = 1024 * 1024;
/** One-request bodies up to this size are read whole before parsing (see POST /api/v1/samples). */
const WHOLE_BODY_BYTES = 1024 * 1024;

const DEVICE_AUTH =
  'The device credential as HTTP Basic (deviceId:secret), the same as MQTT and model downloads: a device ' +
  'uploads only its own samples (another device id is 403 forbidden).';

const errors = {
  401: { description: 'missing or invalid credentials', schema: ApiErrorShape },
  403: { description: 'the caller may not do this', schema: ApiErrorShape },
  404: { description: 'no such sample', schema: ApiErrorShape },
  422: { description: 'invalid request', schema: ApiErrorShape },
} as const;

const uploadErrors = {
  400: {
    description: 'malformed metadata (the zod issues in the message) or a wrong content type',
    schema: ApiErrorShape,
  },
  401: errors[401],
  403: { description: 'the metadata or upload belongs to another device', schema: ApiErrorShape },
  404: { description: 'no such upload (finished, discarded or never started)', schema: ApiErrorShape },
  409: {
    description: 'offset_mismatch (the Upload-Offset header has the acknowledged offset) or conflict',
    schema: ApiErrorShape,
  },
  413: { description: 'the image exceeds the size limit, or more bytes than declared', schema: ApiErrorShape },
  422: {
    description: 'hash_mismatch or unprocessable (not a JPEG of the declared size): the upload is discarded',
    schema: ApiErrorShape,
  },
} as const;

function failureResponse(c: Context<AppEnv>, failure: UploadFailure): Response {
  const status = (
    {
      bad_request: 400,
      forbidden: 403,
      not_found: 404,
      payload_too_large: 413,
      offset_mismatch: 409,
      conflict: 409,
      hash_mismatch: 422,
      unprocessable: 422,
    } as const
  )[failure.code];
  const headers: Record<string, string> = {};
  if (failure.offset !== undefined) headers[SAMPLE_UPLOAD_OFFSET_HEADER] = String(failure.offset);
  return c.json({ error: { code: failure.code, message: failure.message } }, status, headers);
}

/** A JSON answer of an upload route, handed to the audit entry as it is (see AppEnv's auditResult). */
function answer(
  c: Context<AppEnv>,
  value: SampleUploadState,
  status: 200 | 201,
  headers: Record<string, string> = {},
): Response {
  c.set('auditResult', value);
  return c.json(value, status, headers);
}

async function readJson(c: Context<AppEnv>, limit: number): Promise<unknown> {
  const declared = Number(c.req.header('content-length'));
  if (Number.isFinite(declared) && declared > limit) {
    throw new ApiError('payload_too_large', `the metadata exceeds ${limit} bytes`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of bodyChunks(c)) {
    size += chunk.byteLength;
    if (size > limit) throw new ApiError('payload_too_large', `the metadata exceeds ${limit} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ApiError('bad_request', `the body is not JSON sample metadata: ${(error as Error).message}`);
  }
}

function parseLabels(filters: readonly string[] | undefined): [string, string][] {
  return (filters ?? []).map((filter) => {
    const colon = filter.indexOf(':');
    return [filter.slice(0, colon), filter.slice(colon + 1)];
  });
}

function fileResponse(path: string, headers: Record<string, string>): Response {
  const stream = Readable.toWeb(createReadStream(path, { highWaterMark: 256 * 1024 })) as ReadableStream<Uint8Array>;
  return new Response(stream, { status: 200, headers });
}

export function sampleRoutes(deps: SampleRoutesDeps): Route[] {
  const { service } = deps;
  /**
   * The device credential checked (authenticateDevice) against the one device lookup of an upload,
   * which brings the device's enrolled labels along for the sample it stores.
   */
  const device = async (c: Context<AppEnv>): Promise<Uploader> => {
    const found: { row: SampleUploaderRecord | null } = { row: null };
    const lookup = async (id: string) => {
      found.row = await service.repository.uploaderOf(id);
      return found.row;
    };
    const id = await authenticateDevice(c, { secrets: deps.secrets, lookup, failures: deps.authFailures });
    return { id, labels: found.row?.labels ?? {} };
  };
  const requireSample = async (id: string) => {
    const sample = await service.repository.get(id);
    if (!sample) throw new ApiError('not_found', `no sample ${id}`);
    return sample;
  };

  return [
    defineRoute({
      method: 'post',
      path: '/api/v1/samples/uploads',
      summary: 'Start (or find) the resumable upload of one hard sample: its metadata as JSON',
      tag: 'samples',
      role: null,
      customAuth: DEVICE_AUTH,
      streamedBody: {
        contentType: 'application/json',
        description: 'SampleMetadata (see the protocol schema)',
        limitBytes: METADATA_LIMIT,
      },
      responses: {
        200: {
          description: 'this image is under way (resume at offset) or stored already (complete)',
          schema: SampleUploadState,
        },
        201: { description: 'a new upload, at offset 0', schema: SampleUploadState },
        ...uploadErrors,
      },
      async handle({ c }) {
        const uploader = await device(c);
        const result = await service.uploads.begin(uploader, await readJson(c, METADATA_LIMIT));
        if (!result.ok) return failureResponse(c, result.error);
        const { state, created } = result.value;
        return answer(c, state, created ? 201 : 200, { [SAMPLE_UPLOAD_OFFSET_HEADER]: String(state.offset) });
      },
    }),

    defineRoute({
      method: 'post',
      path: '/api/v1/samples',
      summary: 'Upload one hard sample in one request: metadata and image as multipart/form-data (not resumable)',
      tag: 'samples',
      role: null,
      customAuth: `${DEVICE_AUTH} For images that fit one request; larger ones or flaky links use the resumable uploads.`,
      streamedBody: {
        contentType: 'multipart/form-data',
        description: 'The parts `metadata` (SampleMetadata JSON) and then `image` (the JPEG bytes)',
        limitBytes: deps.maxBytes + METADATA_LIMIT,
      },
      responses: {
        200: { description: 'this image was stored already (idempotent)', schema: SampleUploadState },
        201: { description: 'stored', schema: SampleUploadState },
        ...uploadErrors,
      },
      async handle({ c }) {
        const uploader = await device(c);
        const boundary = boundaryOf(c.req.header('content-type'));
        const lengthHeader = c.req.header('content-length');
        const declared = lengthHeader === undefined ? Number.NaN : Number(lengthHeader);
        if (!boundary || declared === 0) {
          throw new ApiError('bad_request', 'expected multipart/form-data with the parts metadata and image');
        }
        const parseMetadata = (text: string): unknown => {
          try {
            return JSON.parse(text);
          } catch (error) {
            throw new ApiError('bad_request', `the metadata part is not JSON: ${(error as Error).message}`);
          }
        };
        // A body no larger than WHOLE_BODY_BYTES (a typical hard sample) is read in one piece, as
        // a JSON body is, and split in memory (samples-form.ts) when it has the canonical shape;
        // otherwise busboy parses that one buffer. Larger bodies stream through busboy.
        let whole: Buffer | null = null;
        if (Number.isInteger(declared) && declared > 0 && declared <= WHOLE_BODY_BYTES) {
          try {
            whole = await readWholeBody(c, declared);
          } catch (error) {
            if (error instanceof BodyBrokeOff) throw new ApiError('bad_request', `${error.message}; nothing is stored`);
            throw error;
          }
          const form = splitSampleForm(whole, boundary);
          if (form) {
            if (form.metadata.length > METADATA_LIMIT) {
              throw new ApiError('payload_too_large', `part metadata exceeds ${METADATA_LIMIT} bytes`);
            }
            const image = form.image;
            const result = await service.uploads.putWhole(
              uploader,
              parseMetadata(form.metadata.toString('utf8')),
              (async function* () {
                yield image;
              })(),
            );
            if (!result.ok) return failureResponse(c, result.error);
            return answer(c, result.value.state, result.value.created ? 201 : 200);
          }
        }
        const body = whole;
        const source: AsyncIterable<Uint8Array> = body
          ? (async function* () {
              yield body;
            })()
          : bodyChunks(c);
        let metadata: unknown;
        let seenMetadata = false;
        try {
          for await (const part of readMultipart(source, boundary, {
            maxBytes: deps.maxBytes + METADATA_LIMIT,
          })) {
            if (part.name === 'metadata' && !seenMetadata) {
              seenMetadata = true;
              metadata = parseMetadata(await readPartText(part.body, METADATA_LIMIT, 'metadata'));
              continue;
            }
            if (part.name === 'image' && seenMetadata) {
              const result = await service.uploads.putWhole(uploader, metadata, part.body);
              if (!result.ok) return failureResponse(c, result.error);
              return answer(c, result.value.state, result.value.created ? 201 : 200);
            }
            throw new ApiError('bad_request', `unexpected part "${part.name}": send metadata, then image`);
          }
        } catch (error) {
          if (error instanceof MultipartError) throw new ApiError(error.code, error.message);
          throw error;
        }
        throw new ApiError('bad_request', `missing the ${seenMetadata ? 'image' : 'metadata'} part`);
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/samples/uploads/:id',
      summary: 'Where an upload stands; HEAD answers 204 with the Upload-Offset header only',
      tag: 'samples',
      role: null,
      customAuth: DEVICE_AUTH,
      responses: {
        200: { description: 'the upload state (Upload-Offset header too)', schema: SampleUploadState },
        401: uploadErrors[401],
        403: uploadErrors[403],
        404: uploadErrors[404],
      },
      async handle({ c, params }) {
        const result = await service.uploads.state(await device(c), params.id!);
        if (!result.ok) return failureResponse(c, result.error);
        const headers = { [SAMPLE_UPLOAD_OFFSET_HEADER]: String(result.value.offset), 'cache-control': 'no-store' };
        if (c.req.method === 'HEAD') return new Response(null, { status: 204, headers });
        return c.json(result.value, 200, headers);
      },
    }),

    defineRoute({
      method: 'patch',
      path: '/api/v1/samples/uploads/:id',
      summary: 'Append bytes at the acknowledged offset (Upload-Offset header); the last byte stores the sample',
      tag: 'samples',
      role: null,
      customAuth: DEVICE_AUTH,
      streamedBody: {
        contentType: SAMPLE_UPLOAD_CONTENT_TYPE,
        description: 'The image bytes from Upload-Offset on (all or some of the rest)',
        limitBytes: deps.maxBytes,
      },
      responses: {
        201: { description: 'the last byte arrived, the sha256 held: the sample is stored', schema: SampleUploadState },
        204: { description: 'appended durably and acknowledged; the Upload-Offset header has the new offset' },
        ...uploadErrors,
      },
      async handle({ c, params }) {
        const uploader = await device(c);
        const contentType = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
        if (contentType !== SAMPLE_UPLOAD_CONTENT_TYPE) {
          throw new ApiError('bad_request', `chunks are sent as ${SAMPLE_UPLOAD_CONTENT_TYPE}, not "${contentType}"`);
        }
        const offsetHeader = c.req.header(SAMPLE_UPLOAD_OFFSET_HEADER) ?? '';
        if (!/^\d{1,15}$/.test(offsetHeader)) {
          throw new ApiError('bad_request', 'the Upload-Offset header (a byte offset) is required');
        }
        const declared = Number(c.req.header('content-length'));
        const body = bodyChunks(c);
        const result = await service.uploads.append(
          uploader,
          params.id!,
          Number(offsetHeader),
          body,
          Number.isFinite(declared) && c.req.header('content-length') !== undefined ? declared : null,
        );
        if (!result.ok) return failureResponse(c, result.error);
        const headers = { [SAMPLE_UPLOAD_OFFSET_HEADER]: String(result.value.offset) };
        if (!result.value.complete) return new Response(null, { status: 204, headers });
        const { interrupted: _interrupted, ...state } = result.value;
        return answer(c, state, 201, headers);
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/samples',
      summary: 'List hard samples, newest first, filtered by device, site, labels, model, strategy, time and labels',
      tag: 'samples',
      role: 'viewer',
      query: SampleListQuery,
      arrayQuery: ['label'],
      responses: { 200: { description: 'a page of samples', schema: SampleList }, ...errors },
      async handle({ c, query }) {
        const before = query.cursor ? decodeCursor(query.cursor, { r: 'number', i: 'string' }) : undefined;
        const rows = await service.repository.list({
          ...(query.deviceId !== undefined ? { deviceId: query.deviceId } : {}),
          ...(query.site !== undefined ? { site: query.site } : {}),
          ...(query.label ? { labels: parseLabels(query.label) } : {}),
          ...(query.modelId !== undefined ? { modelId: query.modelId } : {}),
          ...(query.modelSha256 !== undefined ? { modelSha256: query.modelSha256 } : {}),
          ...(query.strategy !== undefined ? { strategy: query.strategy } : {}),
          ...(query.from !== undefined ? { from: query.from } : {}),
          ...(query.to !== undefined ? { to: query.to } : {}),
          ...(query.hasLabels !== undefined ? { hasLabels: query.hasLabels } : {}),
          ...(before ? { before: { receivedAt: before.r as number, id: before.i as string } } : {}),
          limit: query.limit + 1,
        });
        const page = rows.slice(0, query.limit);
        const last = page[page.length - 1];
        const nextCursor = rows.length > query.limit && last ? encodeCursor({ r: last.receivedAt, i: last.id }) : null;
        return c.json({ items: page.map(toSampleView), nextCursor });
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/samples/:id',
      summary: 'One sample: metadata, predictions (pre-annotations) and provenance',
      tag: 'samples',
      role: 'viewer',
      responses: { 200: { description: 'the sample', schema: SampleView }, ...errors },
      async handle({ c, params }) {
        return c.json(toSampleView(await requireSample(params.id!)));
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/samples/:id/image',
      summary: 'The stored (redacted) JPEG; the ETag is its sha256',
      tag: 'samples',
      role: 'viewer',
      responses: {
        200: { description: 'the image', contentType: 'image/jpeg' },
        304: { description: 'not modified (If-None-Match held the ETag)' },
        ...errors,
      },
      async handle({ c, params }) {
        const sample = await requireSample(params.id!);
        const etag = `"${sample.imageSha256}"`;
        const cache = { etag, 'cache-control': 'private, max-age=31536000, immutable' };
        if (c.req.header('if-none-match') === etag) return new Response(null, { status: 304, headers: cache });
        if (service.blobs.sizeOf(sample.imageSha256) !== sample.bytes) {
          throw new ApiError('internal', `the image of sample ${sample.id} is missing from the blob store`);
        }
        return fileResponse(service.imagePath(sample), {
          ...cache,
          'content-type': 'image/jpeg',
          'content-length': String(sample.bytes),
        });
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/samples/:id/thumbnail',
      summary: 'A small JPEG of the sample (made once with sharp, then cached)',
      tag: 'samples',
      role: 'viewer',
      responses: { 200: { description: 'the thumbnail', contentType: 'image/jpeg' }, ...errors },
      async handle({ params }) {
        const sample = await requireSample(params.id!);
        const thumbnail = await service.thumbnail(sample);
        if (!thumbnail) throw new ApiError('internal', `the image of sample ${sample.id} cannot be decoded`);
        return fileResponse(thumbnail.path, {
          etag: `"${thumbnail.sha256}"`,
          'content-type': 'image/jpeg',
          'cache-control': 'private, max-age=31536000, immutable',
        });
      },
    }),

    defineRoute({
      method: 'delete',
      path: '/api/v1/devices/:id/samples',
      summary: 'Purge every sample of a device (deleting a device keeps them), with their dataset memberships',
      tag: 'samples',
      role: 'admin',
      responses: { 200: { description: 'what was purged', schema: SamplePurgeResult }, ...errors },
      async handle({ c, params }) {
        return c.json(await service.purgeDevice(params.id!));
      },
    }),
  ];
}
