import { createReadStream } from 'node:fs';
import {
  ApiError as ApiErrorShape,
  MODEL_UPLOAD_PARTS,
  ModelList,
  ModelListQuery,
  ModelView,
  modelId,
} from '@edgeloop/protocol';
import type { Context } from 'hono';
import type { DeviceRepository, ModelRecord, RolloutRepository } from '../../db/repositories.ts';
import type { DeviceSecrets } from '../../device-secrets.ts';
import type { Counter } from '../../metrics.ts';
import type { ReceivedBlob } from '../../models/blob-store.ts';
import { type BlobStore, BlobTooLargeError } from '../../models/blob-store.ts';
import { type ModelRegistry, toModelSummary, toModelView } from '../../models/registry.ts';
import type { TokenService } from '../../tokens.ts';
import { ApiError } from '../api-error.ts';
import { authenticateDevice, authorize } from '../auth.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { boundaryOf, MultipartError, readMultipart, readPartText } from '../multipart.ts';
import { parseRange } from '../range.ts';
import { type AppEnv, defineRoute, type Route } from '../route.ts';

export type ModelRoutesDeps = {
  readonly registry: ModelRegistry;
  readonly blobs: BlobStore;
  readonly devices: Pick<DeviceRepository, 'get'>;
  readonly rollouts: Pick<RolloutRepository, 'assignedModelIds'>;
  readonly tokens: TokenService;
  readonly secrets: Pick<DeviceSecrets, 'check'>;
  readonly authFailures: Counter;
  readonly uploadLimitBytes: number;
};

const RELEASE_PART_LIMIT = 1024 * 1024;
/** Chunk size of file reads while serving a model. */
const READ_CHUNK = 256 * 1024;

const errors = {
  401: { description: 'missing or invalid credentials', schema: ApiErrorShape },
  403: { description: 'the caller may not do this', schema: ApiErrorShape },
  404: { description: 'no such model', schema: ApiErrorShape },
  422: { description: 'invalid request', schema: ApiErrorShape },
} as const;

const UPLOAD_HELP =
  'multipart/form-data with the parts `release` (the SignedModelRelease JSON that `edgeloop-image sign` writes) ' +
  'and `model` (the ONNX file)';

/**
 * Who is downloading: an API token (viewer or above), or a device with its own MQTT credential as
 * HTTP Basic (`deviceId:secret`, see `authenticateDevice`).
 */
async function authenticateDownload(
  c: Context<AppEnv>,
  deps: ModelRoutesDeps,
): Promise<{ kind: 'token' } | { kind: 'device'; deviceId: string }> {
  const header = c.req.header('authorization') ?? '';
  if (/^Bearer\s/i.test(header)) {
    await authorize(c, 'viewer', { tokens: deps.tokens, failures: deps.authFailures });
    return { kind: 'token' };
  }
  const deviceId = await authenticateDevice(
    c,
    { secrets: deps.secrets, failures: deps.authFailures },
    'a bearer token or the device credential (Authorization: Basic base64(deviceId:secret)) is required',
  );
  return { kind: 'device', deviceId };
}

/** Whether a device may fetch a model: its desired state names it, or a rollout assigned it. */
async function deviceMayDownload(deps: ModelRoutesDeps, deviceId: string, model: ModelRecord): Promise<boolean> {
  const device = await deps.devices.get(deviceId);
  if (!device) return false;
  const desired = device.desired?.model;
  if (desired && desired.model.id === model.id && desired.model.sha256 === model.sha256) return true;
  return (await deps.rollouts.assignedModelIds(deviceId)).includes(model.id);
}

/**
 * A web stream over a byte range of a file, opened on the first read (a HEAD response that is
 * never read opens nothing) and counted as one download until it ends or the client goes away.
 */
function fileStream(
  path: string,
  start: number,
  end: number,
  downloads: ModelRegistry['downloads'],
): ReadableStream<Uint8Array> {
  let iterator: AsyncIterator<Buffer> | null = null;
  let stream: ReturnType<typeof createReadStream> | null = null;
  let finish: ((outcome: 'complete' | 'aborted') => void) | null = null;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (!iterator) {
          finish = downloads.begin();
          stream = createReadStream(path, { start, end, highWaterMark: READ_CHUNK });
          iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
        }
        try {
          const next = await iterator.next();
          if (next.done) {
            finish?.('complete');
            controller.close();
            return;
          }
          downloads.served(next.value.byteLength);
          controller.enqueue(new Uint8Array(next.value.buffer, next.value.byteOffset, next.value.byteLength));
        } catch (error) {
          finish?.('aborted');
          controller.error(error);
        }
      },
      cancel() {
        stream?.destroy();
        finish?.('aborted');
      },
    },
    { highWaterMark: 0 },
  );
}

export function modelRoutes(deps: ModelRoutesDeps): Route[] {
  const { registry } = deps;

  const requireModel = async (name: string, version: string) => {
    const model = await registry.get(name, version);
    if (!model) throw new ApiError('not_found', `no model ${modelId(name, version)}`);
    return model;
  };

  return [
    defineRoute({
      method: 'post',
      path: '/api/v1/models',
      summary: 'Register a model version: a signed release and its ONNX file (multipart/form-data)',
      tag: 'models',
      role: 'operator',
      streamedBody: { contentType: 'multipart/form-data', description: UPLOAD_HELP, limitBytes: deps.uploadLimitBytes },
      responses: {
        200: { description: 'the same release and bytes were registered before (idempotent)', schema: ModelView },
        201: { description: 'registered', schema: ModelView },
        400: { description: 'not a multipart body with the two parts', schema: ApiErrorShape },
        409: { description: 'this name and version exist with other bytes or another release', schema: ApiErrorShape },
        413: { description: 'the upload exceeds the limit', schema: ApiErrorShape },
        ...errors,
        422: {
          description:
            'refused release or file: no_trusted_keys, malformed, unknown_key, bad_signature, expired, size_mismatch, hash_mismatch, invalid_model',
          schema: ApiErrorShape,
        },
      },
      async handle({ c, token }) {
        if (registry.trustedKeyIds.length === 0) {
          throw new ApiError(
            'no_trusted_keys',
            'no trusted keys are configured, so no release can be verified: start the control plane with ' +
              '--trusted-keys (EDGELOOP_TRUSTED_KEYS) naming the public key files (.pub) releases are signed with',
          );
        }
        const boundary = boundaryOf(c.req.header('content-type'));
        if (!boundary) throw new ApiError('bad_request', `expected ${UPLOAD_HELP}`);
        const declared = Number(c.req.header('content-length'));
        if (Number.isFinite(declared) && declared > deps.uploadLimitBytes) {
          throw new ApiError('payload_too_large', `the upload exceeds ${deps.uploadLimitBytes} bytes`);
        }
        const source = c.req.raw.body;
        if (!source) throw new ApiError('bad_request', `the body is empty; expected ${UPLOAD_HELP}`);

        let releaseText: string | null = null;
        let blob: ReceivedBlob | null = null;
        try {
          try {
            for await (const part of readMultipart(source as AsyncIterable<Uint8Array>, boundary, {
              maxBytes: deps.uploadLimitBytes,
            })) {
              if (!(MODEL_UPLOAD_PARTS as readonly string[]).includes(part.name)) {
                throw new ApiError('bad_request', `unexpected part "${part.name}"; expected ${UPLOAD_HELP}`);
              }
              if ((part.name === 'release' && releaseText !== null) || (part.name === 'model' && blob !== null)) {
                throw new ApiError('bad_request', `the part "${part.name}" appears twice`);
              }
              if (part.name === 'release') releaseText = await readPartText(part.body, RELEASE_PART_LIMIT, part.name);
              else blob = await deps.blobs.receive(part.body, { maxBytes: deps.uploadLimitBytes });
            }
          } catch (error) {
            if (error instanceof MultipartError) throw new ApiError(error.code, error.message);
            if (error instanceof BlobTooLargeError) throw new ApiError('payload_too_large', error.message);
            throw error;
          }
          if (releaseText === null || blob === null) {
            throw new ApiError('bad_request', `missing the ${releaseText === null ? 'release' : 'model'} part`);
          }
          const received: ReceivedBlob = blob;
          blob = null; // register() owns it now: it commits or discards it
          const registered = await registry.register({
            releaseText,
            blob: received,
            uploadedBy: token?.id ?? null,
            uploaderRole: token?.role ?? null,
          });
          if (!registered.ok) throw new ApiError(registered.error.code, registered.error.message);
          const { model, created, lineageFlags } = registered.value;
          return c.json(toModelView(model, lineageFlags), created ? 201 : 200);
        } finally {
          await (blob as ReceivedBlob | null)?.discard();
        }
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/models',
      summary: 'List registered model versions, optionally of one name, with cursor paging',
      tag: 'models',
      role: 'viewer',
      query: ModelListQuery,
      responses: { 200: { description: 'a page of models', schema: ModelList }, ...errors },
      async handle({ c, query }) {
        const afterId = query.cursor ? (decodeCursor(query.cursor, { a: 'string' }).a as string) : undefined;
        const rows = await registry.list({
          ...(query.name !== undefined ? { name: query.name } : {}),
          ...(afterId !== undefined ? { afterId } : {}),
          limit: query.limit + 1,
        });
        const page = rows.slice(0, query.limit);
        const last = page[page.length - 1];
        const nextCursor = rows.length > query.limit && last ? encodeCursor({ a: last.id }) : null;
        return c.json({ items: page.map(toModelSummary), nextCursor });
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/models/:name/:version',
      summary: 'One model version with its manifest and signed release',
      tag: 'models',
      role: 'viewer',
      responses: { 200: { description: 'the model', schema: ModelView }, ...errors },
      async handle({ c, params }) {
        const model = await requireModel(params.name!, params.version!);
        return c.json(toModelView(model, await registry.lineageFlags(model.id)));
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/models/:name/:version/file',
      summary: 'The model file, with HTTP Range (206) for resumable downloads; ETag is the sha256',
      tag: 'models',
      role: 'viewer',
      customAuth:
        'An API bearer token (viewer or above), or a device credential as HTTP Basic (deviceId:secret): a device ' +
        'may fetch only a model its desired state names or a rollout assigned to it.',
      responses: {
        200: { description: 'the whole file', contentType: 'application/octet-stream' },
        206: { description: 'the requested byte range', contentType: 'application/octet-stream' },
        416: { description: 'the range starts past the end of the file', schema: ApiErrorShape },
        ...errors,
      },
      async handle({ c, params }) {
        const caller = await authenticateDownload(c, deps);
        const model = await requireModel(params.name!, params.version!);
        if (caller.kind === 'device' && !(await deviceMayDownload(deps, caller.deviceId, model))) {
          registry.downloads.refused('not_assigned');
          throw new ApiError('forbidden', `model ${model.id} is not assigned to device ${caller.deviceId}`);
        }
        const size = deps.blobs.sizeOf(model.sha256);
        if (size === null) {
          registry.downloads.refused('missing_blob');
          throw new ApiError('internal', `the bytes of model ${model.id} are missing from the blob store`);
        }
        const etag = `"${model.sha256}"`;
        const ifRange = c.req.header('if-range');
        const range =
          ifRange !== undefined && ifRange !== etag
            ? { kind: 'full' as const }
            : parseRange(c.req.header('range'), size);
        const headers: Record<string, string> = {
          'accept-ranges': 'bytes',
          etag,
          'content-type': 'application/octet-stream',
          'cache-control': 'private, max-age=31536000, immutable',
        };
        if (range.kind === 'unsatisfiable') {
          registry.downloads.refused('range_not_satisfiable');
          return c.json({ error: { code: 'range_not_satisfiable', message: `the file has ${size} bytes` } }, 416, {
            'content-range': `bytes */${size}`,
            'accept-ranges': 'bytes',
          });
        }
        const path = registry.pathOf(model);
        if (range.kind === 'partial') {
          headers['content-range'] = `bytes ${range.start}-${range.end}/${size}`;
          headers['content-length'] = String(range.end - range.start + 1);
          return new Response(fileStream(path, range.start, range.end, registry.downloads), { status: 206, headers });
        }
        headers['content-length'] = String(size);
        if (size === 0) return new Response(null, { status: 200, headers });
        return new Response(fileStream(path, 0, size - 1, registry.downloads), { status: 200, headers });
      },
    }),
  ];
}
