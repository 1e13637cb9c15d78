import { z } from 'zod';
import {
  ApiError,
  AuditList,
  type AuditQuery,
  CommandResponse,
  CreateTokenResponse,
  DeadLetterList,
  type DeadLetterQuery,
  DeviceDetail,
  type DeviceDetail as DeviceDetailType,
  DeviceList,
  type DeviceListQuery,
  DeviceView,
  EnrollDeviceResponse,
  FleetSummary,
  HealthzResponse,
  type HistoryQuery,
  MessageList,
  type MessageQuery,
  ModelList,
  type ModelListQuery,
  ModelView,
  ReadyzResponse,
  RolloutDeviceList,
  type RolloutDeviceQuery,
  RolloutDryRun,
  RolloutEventList,
  type RolloutEventQuery,
  RolloutList,
  type RolloutListQuery,
  type RolloutSpecInput,
  RolloutView,
  type RotateCredentialsRequest,
  RotateCredentialsResponse,
  ServerEvent,
  type ServerEventType,
  SetDesiredResponse,
  SiteList,
  type SiteListQuery,
  TelemetryHistory,
  TokenList,
  TokenSelf,
} from './api.ts';
import { describeIssues } from './codec.ts';
import {
  type CocoLabels,
  type CreateDatasetRequest,
  DatasetList,
  type DatasetListQuery,
  DatasetView,
} from './datasets.ts';
import { DriftList, type DriftQuery, DriftState, type SetDriftReferenceRequest } from './drift.ts';
import {
  type CreateEvaluationRequestInput,
  EvaluationList,
  type EvaluationListQuery,
  EvaluationView,
} from './evaluations.ts';
import type { JsonObject } from './json-value.ts';
import { type LineageQuery, ModelLineage } from './lineage.ts';
import type { CommandName } from './messages.ts';
import type { Failure } from './result.ts';
import {
  type ClaimRetrainingRunRequest,
  type RetrainingPolicyInput,
  RetrainingPolicyList,
  RetrainingPolicyView,
  RetrainingRun,
  RetrainingRunList,
  type RetrainingRunListQuery,
  type TriggerRetrainingRequest,
} from './retraining.ts';
import {
  SampleList,
  type SampleListQuery,
  SamplePolicyList,
  SamplePurgeResult,
  SampleView,
  type SetSamplePolicyRequest,
  SetSamplePolicyResponse,
} from './samples.ts';
import { readSse } from './sse.ts';

type CommandNameValue = z.infer<typeof CommandName>;

/*
 * The one typed client of the control plane's HTTP API. Isomorphic: it needs only `fetch`, so the
 * console, the CLI, the simulator, the demo, the benches and the tests share it. Every JSON
 * response is parsed with the protocol schema of its route; every failure is a value
 * `{ ok: false, error: { code, message, status, method, url } }` with the API's own code, or one
 * of the client's: `network` (no answer, or the answer broke off), `bad_response` (an answer that
 * does not match the schema), `aborted`. Byte routes (images, exports, model files) answer a
 * `Download` whose body is the response stream, so a caller can show progress and never buffers.
 */

export type ClientErrorCode = 'network' | 'bad_response' | 'aborted';

/** A failed call: the API's `{code, message}` plus where it went and what came back. */
export type ApiFailure = Failure & {
  /** The HTTP status; null when no answer came (network, aborted). */
  readonly status: number | null;
  readonly method: string;
  /** The full URL of the request, query included. */
  readonly url: string;
};

export type ApiResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: ApiFailure };

/** What cursor walks and event streams throw: the failure that ended them. */
export class ApiRequestError extends Error {
  readonly code: string;
  readonly status: number | null;
  readonly failure: ApiFailure;
  constructor(failure: ApiFailure) {
    super(failure.message);
    this.name = 'ApiRequestError';
    this.code = failure.code;
    this.status = failure.status;
    this.failure = failure;
  }
}

/** The value of an ok result; throws ApiRequestError with the failure otherwise. */
export async function unwrap<T>(result: ApiResult<T> | Promise<ApiResult<T>>): Promise<T> {
  const settled = await result;
  if (!settled.ok) throw new ApiRequestError(settled.error);
  return settled.value;
}

/** A byte response: its body as it arrives, with the headers a caller needs. */
export type Download = {
  readonly body: ReadableStream<Uint8Array>;
  /** Content-Length, when the server sent one (streamed exports have none). */
  readonly contentLength: number | null;
  readonly contentType: string | null;
  /** The ETag without quotes (the sha256 of sample images and model files). */
  readonly etag: string | null;
  /** The file name of Content-Disposition, when there is one. */
  readonly fileName: string | null;
};

export type ApiClientOptions = {
  /** Where the control plane answers, e.g. `http://127.0.0.1:8080`; '' for the page's own origin. */
  readonly baseUrl: string;
  /** The bearer token; null sends none. */
  readonly token: string | null;
  /** Defaults to the global fetch. */
  readonly fetch?: typeof fetch;
};

type BodyInit = NonNullable<RequestInit['body']>;
type QueryValue = string | number | boolean | readonly string[] | undefined;
type Query = Readonly<Record<string, QueryValue>>;
/** A request body: JSON (any value), multipart (FormData) or raw bytes / text sent as they are. */
type Body =
  | { readonly json: unknown }
  | { readonly form: FormData }
  | { readonly raw: BodyInit; readonly type: string };
type RequestOptions = {
  readonly query?: Query;
  readonly body?: Body;
  readonly signal?: AbortSignal | undefined;
  readonly headers?: Readonly<Record<string, string>>;
};

/** `?a=1&label=x&label=y`: arrays repeat their key, undefined values are left out. */
export function buildQuery(query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) params.append(key, item);
    else params.append(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** The API's error body as a Failure; a body that is not one becomes the status in words. */
export async function failureOf(response: Response): Promise<Failure> {
  const text = await response.text().catch(() => '');
  try {
    const parsed = ApiError.safeParse(JSON.parse(text));
    if (parsed.success) return parsed.data.error;
  } catch {
    // Not JSON: fall through to the status.
  }
  return {
    code: codeOfHttpStatus(response.status),
    message: text.slice(0, 200) || response.statusText || `HTTP ${response.status}`,
  };
}

function codeOfHttpStatus(status: number): string {
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not_found';
  if (status === 409) return 'conflict';
  if (status === 413) return 'payload_too_large';
  if (status === 422) return 'unprocessable';
  if (status === 503) return 'unavailable';
  return status >= 500 ? 'internal' : 'bad_request';
}

/**
 * The innermost useful reason of a failed fetch: undici says only "fetch failed" and puts the
 * reason (connect ECONNREFUSED, ENOTFOUND, a TLS error) in `cause`, or in an AggregateError's list.
 */
export function describeFetchFailure(error: unknown): string {
  const cause = error instanceof Error && error.cause !== undefined ? error.cause : error;
  if (cause instanceof AggregateError && cause.errors.length > 0) {
    return [...new Set(cause.errors.map((inner) => describeFetchFailure(inner)))].join('; ');
  }
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    if (cause.message) return cause.message;
    if (typeof code === 'string') return code;
    return cause.name;
  }
  return String(cause);
}

const enc = encodeURIComponent;

/** A 204 (or empty 200) answer. */
const NoContent = z.undefined();
/** Prometheus text. */
const Text = z.string();

/** A page of a cursor-paged list. */
type Page<T> = { readonly items: readonly T[]; readonly nextCursor: string | null };

/** Walks every page of a cursor-paged list, item by item; throws ApiRequestError on a failed page. */
export async function* walkPages<T>(
  fetchPage: (cursor: string | undefined) => Promise<ApiResult<Page<T>>>,
): AsyncGenerator<T, void, undefined> {
  let cursor: string | undefined;
  for (;;) {
    const page = await fetchPage(cursor);
    if (!page.ok) throw new ApiRequestError(page.error);
    yield* page.value.items;
    if (page.value.nextCursor === null) return;
    cursor = page.value.nextCursor;
  }
}

/** Up to `limit` items of an async iterable (the walk stops fetching pages once it has them). */
export async function take<T>(items: AsyncIterable<T>, limit = Number.POSITIVE_INFINITY): Promise<T[]> {
  const taken: T[] = [];
  if (limit <= 0) return taken;
  for await (const item of items) {
    taken.push(item);
    if (taken.length >= limit) break;
  }
  return taken;
}

export type RolloutAction = 'pause' | 'resume' | 'abort' | 'promote';
/** What `samples.policy.set` takes: a selector (default: the whole fleet) and a policy, or null to remove it. */
export type SetSamplePolicyInput = z.input<typeof SetSamplePolicyRequest>;
/** A command as `devices.command` takes it. */
export type CommandInput = {
  readonly name: CommandNameValue;
  readonly args?: JsonObject;
  readonly timeoutMs?: number;
};

/** Filters of a walk: every query field but the cursor. */
type WalkQuery<Q> = Omit<Partial<Q>, 'cursor'>;

export type EventFilter = {
  readonly types?: readonly ServerEventType[];
  readonly signal?: AbortSignal;
  /** Called once the stream is open (before its first event). */
  readonly onOpen?: () => void;
};

export type ApiClient = ReturnType<typeof createApiClient>;

export function createApiClient(options: ApiClientOptions) {
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const doFetch = options.fetch ?? ((input: string, init?: RequestInit) => fetch(input, init));

  const failure = (method: string, url: string, status: number | null, error: Failure): ApiFailure => ({
    code: error.code,
    message: error.message,
    status,
    method,
    url,
  });

  /** Sends one request; a failure value when no answer came or the answer is not 2xx. */
  async function send(method: string, path: string, request: RequestOptions): Promise<ApiResult<Response>> {
    const url = `${baseUrl}${path}${buildQuery(request.query)}`;
    const headers: Record<string, string> = { accept: 'application/json', ...request.headers };
    if (options.token !== null) headers.authorization = `Bearer ${options.token}`;
    let body: BodyInit | undefined;
    const given = request.body;
    if (given !== undefined) {
      if ('json' in given) {
        headers['content-type'] = 'application/json';
        body = JSON.stringify(given.json);
      } else if ('form' in given) {
        body = given.form; // fetch writes the multipart boundary
      } else {
        headers['content-type'] = given.type;
        body = given.raw;
      }
    }
    let response: Response;
    try {
      response = await doFetch(url, {
        method,
        headers,
        ...(body !== undefined ? { body } : {}),
        ...(request.signal ? { signal: request.signal } : {}),
      });
    } catch (error) {
      if (request.signal?.aborted) {
        return {
          ok: false,
          error: failure(method, url, null, { code: 'aborted', message: 'the request was aborted' }),
        };
      }
      return {
        ok: false,
        error: failure(method, url, null, { code: 'network', message: describeFetchFailure(error) }),
      };
    }
    if (!response.ok) return { ok: false, error: failure(method, url, response.status, await failureOf(response)) };
    return { ok: true, value: response };
  }

  /** A request whose answer is JSON of `schema` (or no content, for NoContent). */
  async function request<S extends z.ZodType>(
    method: string,
    path: string,
    schema: S,
    options: RequestOptions = {},
  ): Promise<ApiResult<z.infer<S>>> {
    const sent = await send(method, path, options);
    if (!sent.ok) return sent;
    const response = sent.value;
    const url = response.url || `${baseUrl}${path}${buildQuery(options.query)}`;
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      if (options.signal?.aborted) {
        return {
          ok: false,
          error: failure(method, url, null, { code: 'aborted', message: 'the request was aborted' }),
        };
      }
      const message = `the response broke off: ${describeFetchFailure(error)}`;
      return { ok: false, error: failure(method, url, response.status, { code: 'network', message }) };
    }
    let value: unknown;
    if (schema === (Text as z.ZodType)) value = text;
    else if (text.length > 0) {
      try {
        value = JSON.parse(text);
      } catch (error) {
        const message = `${method} ${path}: not JSON (${error instanceof Error ? error.message : error})`;
        return { ok: false, error: failure(method, url, response.status, { code: 'bad_response', message }) };
      }
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const message = `${method} ${path}: ${describeIssues(parsed.error.issues)}`;
      return { ok: false, error: failure(method, url, response.status, { code: 'bad_response', message }) };
    }
    return { ok: true, value: parsed.data };
  }

  /** A GET whose answer is bytes: the body stream and its headers. */
  async function download(path: string, options: RequestOptions = {}): Promise<ApiResult<Download>> {
    const sent = await send('GET', path, { ...options, headers: { accept: '*/*', ...options.headers } });
    if (!sent.ok) return sent;
    const response = sent.value;
    if (!response.body) {
      const url = `${baseUrl}${path}${buildQuery(options.query)}`;
      return {
        ok: false,
        error: failure('GET', url, response.status, { code: 'bad_response', message: 'the response has no body' }),
      };
    }
    const length = Number(response.headers.get('content-length') ?? Number.NaN);
    const disposition = response.headers.get('content-disposition');
    return {
      ok: true,
      value: {
        body: response.body,
        contentLength: Number.isInteger(length) && length >= 0 ? length : null,
        contentType: response.headers.get('content-type'),
        etag: response.headers.get('etag')?.replace(/^(W\/)?"|"$/g, '') ?? null,
        fileName: disposition ? (/filename="?([^";]+)"?/.exec(disposition)?.[1] ?? null) : null,
      },
    };
  }

  const get = <S extends z.ZodType>(path: string, schema: S, query?: Query, signal?: AbortSignal) =>
    request('GET', path, schema, { ...(query ? { query } : {}), signal });
  const post = <S extends z.ZodType>(path: string, schema: S, json: unknown, signal?: AbortSignal) =>
    request('POST', path, schema, { body: { json }, signal });

  const devices = {
    list: (query: Partial<DeviceListQuery> = {}, signal?: AbortSignal) =>
      get('/api/v1/devices', DeviceList, query, signal),
    /** Every device the filters match, page by page. */
    each: (query: WalkQuery<DeviceListQuery> = {}) => walkPages((cursor) => devices.list({ ...query, cursor })),
    get: (id: string, signal?: AbortSignal): Promise<ApiResult<DeviceDetailType>> =>
      get(`/api/v1/devices/${enc(id)}`, DeviceDetail, undefined, signal),
    /** Enrolls a device: its view and MQTT credentials (the password is shown only here). */
    enroll: (
      device: {
        readonly id: string;
        readonly labels?: Readonly<Record<string, string>>;
        /** cert: an X.509 identity signed by the fleet CA (MQTT over TLS without a password). */
        readonly auth?: 'secret' | 'cert';
      },
      signal?: AbortSignal,
    ) => post('/api/v1/devices', EnrollDeviceResponse, device, signal),
    /** Sets labels; a null value removes that label. */
    setLabels: (id: string, labels: Readonly<Record<string, string | null>>, signal?: AbortSignal) =>
      request('PATCH', `/api/v1/devices/${enc(id)}`, DeviceView, { body: { json: { labels } }, signal }),
    /** Revokes the device credential and disconnects it (its samples stay). */
    revoke: (id: string, signal?: AbortSignal) =>
      request('DELETE', `/api/v1/devices/${enc(id)}`, NoContent, { signal }),
    setDesired: (
      id: string,
      desired: { readonly telemetryIntervalS?: number; readonly config?: JsonObject },
      signal?: AbortSignal,
    ) => request('PUT', `/api/v1/devices/${enc(id)}/desired`, SetDesiredResponse, { body: { json: desired }, signal }),
    telemetry: (id: string, query: Partial<HistoryQuery> = {}, signal?: AbortSignal) =>
      get(`/api/v1/devices/${enc(id)}/telemetry`, TelemetryHistory, query, signal),
    messages: (id: string, query: Partial<MessageQuery> = {}, signal?: AbortSignal) =>
      get(`/api/v1/devices/${enc(id)}/messages`, MessageList, query, signal),
    command: (id: string, command: CommandInput, signal?: AbortSignal) =>
      post(`/api/v1/devices/${enc(id)}/commands`, CommandResponse, command, signal),
    /**
     * Rotates the device secret (operator): the new one is returned once; the old one works until
     * the device connects with the new one or the deadline passes. `deliver` (default: when the
     * device is connected) sends it to the agent. `idempotencyKey`: a retry returns the same secret.
     */
    rotateCredentials: (
      id: string,
      options: RotateCredentialsRequest & { readonly idempotencyKey?: string } = {},
      signal?: AbortSignal,
    ) => {
      const { idempotencyKey, ...json } = options;
      return request('POST', `/api/v1/devices/${enc(id)}/credentials/rotate`, RotateCredentialsResponse, {
        body: { json },
        ...(idempotencyKey !== undefined ? { headers: { 'Idempotency-Key': idempotencyKey } } : {}),
        signal,
      });
    },
    /** Deletes every sample of the device, with their dataset memberships (admin). */
    purgeSamples: (id: string, signal?: AbortSignal) =>
      request('DELETE', `/api/v1/devices/${enc(id)}/samples`, SamplePurgeResult, { signal }),
  };

  const models = {
    list: (query: Partial<ModelListQuery> = {}, signal?: AbortSignal) =>
      get('/api/v1/models', ModelList, query, signal),
    each: (query: WalkQuery<ModelListQuery> = {}) => walkPages((cursor) => models.list({ ...query, cursor })),
    get: (name: string, version: string, signal?: AbortSignal) =>
      get(`/api/v1/models/${enc(name)}/${enc(version)}`, ModelView, undefined, signal),
    /**
     * Registers a signed release with its model file (multipart: `release` then `model`). The
     * model is a Blob, so a caller can stream it from disk (`fs.openAsBlob`).
     */
    upload: (
      upload: { readonly release: string; readonly model: Blob; readonly fileName?: string },
      signal?: AbortSignal,
    ) => {
      const form = new FormData();
      form.append('release', upload.release);
      form.append('model', upload.model, upload.fileName ?? 'model.onnx');
      return request('POST', '/api/v1/models', ModelView, { body: { form }, signal });
    },
    /** The model file as a stream. */
    file: (name: string, version: string, signal?: AbortSignal) =>
      download(`/api/v1/models/${enc(name)}/${enc(version)}/file`, { signal }),
    /** Stores an evaluation report of the model (operator): what `edgeloop-agent eval --post` sends. */
    postEvaluation: (name: string, version: string, report: CreateEvaluationRequestInput, signal?: AbortSignal) =>
      post(`/api/v1/models/${enc(name)}/${enc(version)}/evaluations`, EvaluationView, report, signal),
    /** The model's evaluation reports, newest first (optionally on one dataset version). */
    evaluations: (name: string, version: string, query: Partial<EvaluationListQuery> = {}, signal?: AbortSignal) =>
      get(`/api/v1/models/${enc(name)}/${enc(version)}/evaluations`, EvaluationList, query, signal),
    /** The model's lineage both ways: samples, dataset, run, parents; rollouts, outcomes, children. */
    lineage: (name: string, version: string, query: Partial<LineageQuery> = {}, signal?: AbortSignal) =>
      get(`/api/v1/models/${enc(name)}/${enc(version)}/lineage`, ModelLineage, query, signal),
  };

  const rollouts = {
    list: (query: Partial<RolloutListQuery> = {}, signal?: AbortSignal) =>
      get('/api/v1/rollouts', RolloutList, query, signal),
    each: (query: WalkQuery<RolloutListQuery> = {}) => walkPages((cursor) => rollouts.list({ ...query, cursor })),
    get: (id: string, signal?: AbortSignal) => get(`/api/v1/rollouts/${enc(id)}`, RolloutView, undefined, signal),
    /** Starts a rollout. */
    create: (spec: RolloutSpecInput, signal?: AbortSignal) =>
      post('/api/v1/rollouts', RolloutView, { ...spec, dryRun: false }, signal),
    /** What a rollout would do (`dryRun: true`): nothing is created. */
    plan: (spec: RolloutSpecInput, signal?: AbortSignal) =>
      post('/api/v1/rollouts', RolloutDryRun, { ...spec, dryRun: true }, signal),
    act: (id: string, action: RolloutAction, reason?: string, signal?: AbortSignal) =>
      post(`/api/v1/rollouts/${enc(id)}/${action}`, RolloutView, reason === undefined ? {} : { reason }, signal),
    events: (id: string, query: Partial<RolloutEventQuery> = {}, signal?: AbortSignal) =>
      get(`/api/v1/rollouts/${enc(id)}/events`, RolloutEventList, query, signal),
    eachEvent: (id: string, query: WalkQuery<RolloutEventQuery> = {}) =>
      walkPages((cursor) => rollouts.events(id, { ...query, cursor })),
    devices: (id: string, query: Partial<RolloutDeviceQuery> = {}, signal?: AbortSignal) =>
      get(`/api/v1/rollouts/${enc(id)}/devices`, RolloutDeviceList, query, signal),
    eachDevice: (id: string, query: WalkQuery<RolloutDeviceQuery> = {}) =>
      walkPages((cursor) => rollouts.devices(id, { ...query, cursor })),
  };

  const samples = {
    /** A page of samples, newest first. */
    list: (query: Partial<SampleListQuery> = {}, signal?: AbortSignal) =>
      get('/api/v1/samples', SampleList, query, signal),
    /** Every sample the filters match, page by page (`limit` is the page size). */
    each: (query: WalkQuery<SampleListQuery> = {}) => walkPages((cursor) => samples.list({ ...query, cursor })),
    get: (id: string, signal?: AbortSignal) => get(`/api/v1/samples/${enc(id)}`, SampleView, undefined, signal),
    /** The stored (redacted) JPEG; its etag is the image sha256. */
    image: (id: string, signal?: AbortSignal) => download(`/api/v1/samples/${enc(id)}/image`, { signal }),
    /** A small JPEG of the sample. */
    thumbnail: (id: string, signal?: AbortSignal) => download(`/api/v1/samples/${enc(id)}/thumbnail`, { signal }),
    policy: {
      /** Every stored policy by label selector. */
      list: (signal?: AbortSignal) => get('/api/v1/sample-policy', SamplePolicyList, undefined, signal),
      /** Sets (or, with `policy: null`, removes) the policy of a label selector; `{}` is the whole fleet. */
      set: (body: SetSamplePolicyInput, signal?: AbortSignal) =>
        request('PUT', '/api/v1/sample-policy', SetSamplePolicyResponse, { body: { json: body }, signal }),
    },
  };

  const datasets = {
    list: (query: Partial<DatasetListQuery> = {}, signal?: AbortSignal) =>
      get('/api/v1/datasets', DatasetList, query, signal),
    each: (query: WalkQuery<DatasetListQuery> = {}) => walkPages((cursor) => datasets.list({ ...query, cursor })),
    get: (id: string, signal?: AbortSignal) => get(`/api/v1/datasets/${enc(id)}`, DatasetView, undefined, signal),
    /** Freezes the samples of a query (or the given ids) as the next version name@N. */
    create: (body: z.input<typeof CreateDatasetRequest>, signal?: AbortSignal) =>
      post('/api/v1/datasets', DatasetView, body, signal),
    /** Imports COCO annotations as a new labelled version whose parent is `id`. */
    importLabels: (id: string, labels: z.input<typeof CocoLabels>, signal?: AbortSignal) =>
      request('PUT', `/api/v1/datasets/${enc(id)}/labels`, DatasetView, { body: { json: labels }, signal }),
    /** The version as a tar (COCO or YOLO), streamed as the server writes it. */
    export: (id: string, format: 'coco' | 'yolo' = 'coco', signal?: AbortSignal) =>
      download(`/api/v1/datasets/${enc(id)}/export`, { query: { format }, signal }),
  };

  const retraining = {
    policies: {
      list: (signal?: AbortSignal) => get('/api/v1/retraining/policies', RetrainingPolicyList, undefined, signal),
      get: (modelName: string, signal?: AbortSignal) =>
        get(`/api/v1/retraining/policies/${enc(modelName)}`, RetrainingPolicyView, undefined, signal),
      /** Sets a model name's policy (operator); `webhook.secret` is write-only (absent keeps the stored one). */
      set: (modelName: string, policy: RetrainingPolicyInput, signal?: AbortSignal) =>
        request('PUT', `/api/v1/retraining/policies/${enc(modelName)}`, RetrainingPolicyView, {
          body: { json: policy },
          signal,
        }),
    },
    /** A page of runs with their delivery log, newest first; `status: 'pending'` is the pull side. */
    runs: (query: Partial<RetrainingRunListQuery> = {}, signal?: AbortSignal) =>
      get('/api/v1/retraining/runs', RetrainingRunList, query, signal),
    eachRun: (query: WalkQuery<RetrainingRunListQuery> = {}) =>
      walkPages((cursor) => retraining.runs({ ...query, cursor })),
    run: (runId: string, signal?: AbortSignal) =>
      get(`/api/v1/retraining/runs/${enc(runId)}`, RetrainingRun, undefined, signal),
    /** Fires a manual run of the model name's policy now (operator). */
    trigger: (body: TriggerRetrainingRequest, signal?: AbortSignal) =>
      post('/api/v1/retraining/runs', RetrainingRun, body, signal),
    /** A trainer takes a run, once (operator). */
    claim: (runId: string, body: ClaimRetrainingRunRequest = {}, signal?: AbortSignal) =>
      post(`/api/v1/retraining/runs/${enc(runId)}/claim`, RetrainingRun, body, signal),
    /** Links the registered model trained from the run (operator). */
    complete: (runId: string, modelId: string, signal?: AbortSignal) =>
      post(`/api/v1/retraining/runs/${enc(runId)}/complete`, RetrainingRun, { modelId }, signal),
  };

  const fleet = {
    summary: (signal?: AbortSignal) => get('/api/v1/fleet/summary', FleetSummary, undefined, signal),
    /** A page of sites (by their site label) with their devices counted by status and health. */
    sites: (query: Partial<SiteListQuery> = {}, signal?: AbortSignal) =>
      get('/api/v1/fleet/sites', SiteList, query, signal),
    eachSite: (query: WalkQuery<SiteListQuery> = {}) => walkPages((cursor) => fleet.sites({ ...query, cursor })),
  };

  const audit = {
    /** A page of the audit log, newest first (admin). */
    list: (query: Partial<AuditQuery> = {}, signal?: AbortSignal) => get('/api/v1/audit', AuditList, query, signal),
    each: (query: WalkQuery<AuditQuery> = {}) => walkPages((cursor) => audit.list({ ...query, cursor })),
  };

  const drift = {
    /** Drift states of sites and devices per model, worst band first. */
    list: (query: Partial<DriftQuery> = {}, signal?: AbortSignal) => get('/api/v1/drift', DriftList, query, signal),
    /** Sets a reference: auto (restart the default), a dataset version, or a pinned range of stored telemetry. */
    setReference: (body: SetDriftReferenceRequest, signal?: AbortSignal) =>
      request('PUT', '/api/v1/drift/reference', DriftState, { body: { json: body }, signal }),
  };

  const tokens = {
    /** Creates an operator or viewer token; the secret is in the answer only. */
    create: (token: { readonly name: string; readonly role: 'operator' | 'viewer' }, signal?: AbortSignal) =>
      post('/api/v1/tokens', CreateTokenResponse, token, signal),
    list: (signal?: AbortSignal) => get('/api/v1/tokens', TokenList, undefined, signal),
    revoke: (id: string, signal?: AbortSignal) => request('DELETE', `/api/v1/tokens/${enc(id)}`, NoContent, { signal }),
  };

  /**
   * Opens the server's event stream (Server-Sent Events over fetch streaming, so the bearer token
   * travels in a header) and answers once it is open: what happens after this resolves is in the
   * stream. The events end when the server ends the stream or `signal` aborts; reading throws
   * ApiRequestError on a broken stream, an overflow, or an event that does not match the schema.
   */
  async function openEvents(
    filter: Omit<EventFilter, 'onOpen'> = {},
  ): Promise<ApiResult<AsyncGenerator<ServerEvent, void, undefined>>> {
    const query = filter.types && filter.types.length > 0 ? { types: filter.types.join(',') } : {};
    const opened = await send('GET', '/api/v1/events', {
      query,
      headers: { accept: 'text/event-stream' },
      signal: filter.signal,
    });
    if (!opened.ok) return opened;
    const response = opened.value;
    const url = `${baseUrl}/api/v1/events${buildQuery(query)}`;
    const streamFailure = (code: string, message: string) =>
      new ApiRequestError(failure('GET', url, response.status, { code, message }));
    if (!response.body)
      return { ok: false, error: streamFailure('bad_response', 'the event stream has no body').failure };
    const body = response.body;
    async function* read(): AsyncGenerator<ServerEvent, void, undefined> {
      try {
        for await (const message of readSse(body)) {
          if (message.event === 'overflow') throw streamFailure('overflow', 'the server dropped this slow stream');
          let json: unknown;
          try {
            json = JSON.parse(message.data);
          } catch {
            throw streamFailure('bad_response', 'an event is not JSON');
          }
          const parsed = ServerEvent.safeParse(json);
          if (!parsed.success) throw streamFailure('bad_response', describeIssues(parsed.error.issues));
          yield parsed.data;
        }
      } catch (error) {
        if (filter.signal?.aborted) return;
        if (error instanceof ApiRequestError) throw error;
        throw streamFailure('network', `the event stream broke off: ${describeFetchFailure(error)}`);
      }
    }
    return { ok: true, value: read() };
  }

  /** The server's events as they happen: openEvents as one generator that throws when it cannot open. */
  async function* events(filter: EventFilter = {}): AsyncGenerator<ServerEvent, void, undefined> {
    const opened = await openEvents(filter);
    if (!opened.ok) {
      if (opened.error.code === 'aborted') return;
      throw new ApiRequestError(opened.error);
    }
    filter.onOpen?.();
    yield* opened.value;
  }

  return {
    /** Where this client sends its requests. */
    baseUrl,
    /** The caller's own token: its id, name and role. */
    self: (signal?: AbortSignal) => get('/api/v1/tokens/self', TokenSelf, undefined, signal),
    healthz: (signal?: AbortSignal) => get('/healthz', HealthzResponse, undefined, signal),
    /** Readiness: the checks when every one passes; a 503 failure naming the failing ones otherwise. */
    readyz: (signal?: AbortSignal) => get('/readyz', ReadyzResponse, undefined, signal),
    /** The Prometheus metrics text. */
    metrics: (signal?: AbortSignal) => request('GET', '/metrics', Text, { headers: { accept: 'text/plain' }, signal }),
    fleet,
    audit,
    deadLetters: {
      list: (query: Partial<DeadLetterQuery> = {}, signal?: AbortSignal) =>
        get('/api/v1/dead-letters', DeadLetterList, query, signal),
    },
    devices,
    models,
    rollouts,
    samples,
    datasets,
    drift,
    retraining,
    tokens,
    openEvents,
    events,
  };
}
