import type { z } from 'zod';
import {
  ApiError,
  CommandResponse,
  type CreateRolloutRequest,
  DeviceDetail,
  type DeviceDetail as DeviceDetailType,
  DeviceList,
  type DeviceListQuery,
  FleetSummary,
  HealthzResponse,
  type HistoryQuery,
  MessageList,
  type MessageQuery,
  ModelList,
  type ModelListQuery,
  ModelView,
  RolloutDeviceList,
  type RolloutDeviceQuery,
  RolloutDryRun,
  RolloutEventList,
  type RolloutEventQuery,
  RolloutList,
  type RolloutListQuery,
  RolloutView,
  ServerEvent,
  type ServerEventType,
  TelemetryHistory,
  TokenSelf,
} from './api.ts';
import { describeIssues } from './codec.ts';
import type { JsonObject } from './json-value.ts';
import type { CommandName } from './messages.ts';

type CommandNameValue = z.infer<typeof CommandName>;

import { type Failure, fail, ok, type Result } from './result.ts';
import { readSse } from './sse.ts';

/*
 * The one typed client of the control plane's HTTP API. Isomorphic: it needs only `fetch`, so the
 * console, the CLI, the simulator and the tests share it. Every response is parsed with the
 * protocol schema of its route; every failure is a value `{ ok: false, error: { code, message } }`
 * with the API's own code, or one of the client's: `network` (no answer), `bad_response` (an
 * answer that does not match the schema), `aborted`.
 */

export type ClientErrorCode = 'network' | 'bad_response' | 'aborted';

/** What cursor walks and event streams throw: the failure that ended them. */
export class ApiRequestError extends Error {
  readonly code: string;
  readonly status: number | null;
  constructor(error: Failure, status: number | null) {
    super(error.message);
    this.name = 'ApiRequestError';
    this.code = error.code;
    this.status = status;
  }
}

export type ApiClientOptions = {
  /** Where the control plane answers, e.g. `http://127.0.0.1:8080`; '' for the page's own origin. */
  readonly baseUrl: string;
  /** The bearer token; null sends none. */
  readonly token: string | null;
  /** Defaults to the global fetch. */
  readonly fetch?: typeof fetch;
};

type QueryValue = string | number | boolean | readonly string[] | undefined;
type RequestOptions<S extends z.ZodType> = {
  readonly query?: Readonly<Record<string, QueryValue>>;
  readonly body?: unknown;
  readonly schema: S;
  readonly signal?: AbortSignal;
};

/** `?a=1&label=x&label=y`: arrays repeat their key, undefined values are left out. */
export function buildQuery(query: Readonly<Record<string, QueryValue>> = {}): string {
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
    message: `HTTP ${response.status}${text ? `: ${text.slice(0, 200)}` : ''}`,
  };
}

function codeOfHttpStatus(status: number): string {
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not_found';
  if (status === 409) return 'conflict';
  if (status === 422) return 'unprocessable';
  if (status === 503) return 'unavailable';
  return status >= 500 ? 'internal' : 'bad_request';
}

const enc = encodeURIComponent;

/** A page of a cursor-paged list. */
type Page<T> = { readonly items: readonly T[]; readonly nextCursor: string | null };

/** Walks every page of a cursor-paged list, item by item; throws ApiRequestError on a failed page. */
export async function* walkPages<T>(
  fetchPage: (cursor: string | undefined) => Promise<Result<Page<T>>>,
): AsyncGenerator<T, void, undefined> {
  let cursor: string | undefined;
  for (;;) {
    const page = await fetchPage(cursor);
    if (!page.ok) throw new ApiRequestError(page.error, null);
    yield* page.value.items;
    if (page.value.nextCursor === null) return;
    cursor = page.value.nextCursor;
  }
}

export type RolloutAction = 'pause' | 'resume' | 'abort' | 'promote';

export type ApiClient = ReturnType<typeof createApiClient>;

export function createApiClient(options: ApiClientOptions) {
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const doFetch = options.fetch ?? ((input: string, init?: RequestInit) => fetch(input, init));

  function headers(json: boolean): Record<string, string> {
    const result: Record<string, string> = { accept: 'application/json' };
    if (options.token !== null) result.authorization = `Bearer ${options.token}`;
    if (json) result['content-type'] = 'application/json';
    return result;
  }

  async function request<S extends z.ZodType>(
    method: string,
    path: string,
    { query, body, schema, signal }: RequestOptions<S>,
  ): Promise<Result<z.infer<S>>> {
    let response: Response;
    try {
      response = await doFetch(`${baseUrl}${path}${buildQuery(query)}`, {
        method,
        headers: headers(body !== undefined),
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      if (signal?.aborted) return fail('aborted', 'the request was aborted');
      return fail('network', `${method} ${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (!response.ok) return { ok: false, error: await failureOf(response) };
    let json: unknown;
    try {
      json = await response.json();
    } catch (error) {
      return fail('bad_response', `${method} ${path}: not JSON (${error instanceof Error ? error.message : error})`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) return fail('bad_response', `${method} ${path}: ${describeIssues(parsed.error.issues)}`);
    return ok(parsed.data);
  }

  const get = <S extends z.ZodType>(
    path: string,
    schema: S,
    query?: RequestOptions<S>['query'],
    signal?: AbortSignal,
  ) => request('GET', path, { schema, ...(query ? { query } : {}), ...(signal ? { signal } : {}) });

  const devices = {
    list: (query: Partial<DeviceListQuery> = {}, signal?: AbortSignal) =>
      get('/api/v1/devices', DeviceList, query, signal),
    /** Every device the filters match, page by page. */
    each: (query: Omit<Partial<DeviceListQuery>, 'cursor'> = {}) =>
      walkPages((cursor) => devices.list({ ...query, cursor })),
    get: (id: string, signal?: AbortSignal): Promise<Result<DeviceDetailType>> =>
      get(`/api/v1/devices/${enc(id)}`, DeviceDetail, undefined, signal),
    telemetry: (id: string, query: Partial<HistoryQuery> = {}, signal?: AbortSignal) =>
      get(`/api/v1/devices/${enc(id)}/telemetry`, TelemetryHistory, query, signal),
    messages: (id: string, query: Partial<MessageQuery> = {}, signal?: AbortSignal) =>
      get(`/api/v1/devices/${enc(id)}/messages`, MessageList, query, signal),
    command: (
      id: string,
      command: { readonly name: CommandNameValue; readonly args?: JsonObject; readonly timeoutMs?: number },
      signal?: AbortSignal,
    ) =>
      request('POST', `/api/v1/devices/${enc(id)}/commands`, {
        schema: CommandResponse,
        body: command,
        ...(signal ? { signal } : {}),
      }),
  };

  const models = {
    list: (query: Partial<ModelListQuery> = {}, signal?: AbortSignal) =>
      get('/api/v1/models', ModelList, query, signal),
    each: (query: Omit<Partial<ModelListQuery>, 'cursor'> = {}) =>
      walkPages((cursor) => models.list({ ...query, cursor })),
    get: (name: string, version: string, signal?: AbortSignal) =>
      get(`/api/v1/models/${enc(name)}/${enc(version)}`, ModelView, undefined, signal),
  };

  const rollouts = {
    list: (query: Partial<RolloutListQuery> = {}, signal?: AbortSignal) =>
      get('/api/v1/rollouts', RolloutList, query, signal),
    each: (query: Omit<Partial<RolloutListQuery>, 'cursor'> = {}) =>
      walkPages((cursor) => rollouts.list({ ...query, cursor })),
    get: (id: string, signal?: AbortSignal) => get(`/api/v1/rollouts/${enc(id)}`, RolloutView, undefined, signal),
    /** Starts a rollout. */
    create: (spec: Omit<z.input<typeof CreateRolloutRequest>, 'dryRun'>, signal?: AbortSignal) =>
      request('POST', '/api/v1/rollouts', {
        schema: RolloutView,
        body: { ...spec, dryRun: false },
        ...(signal ? { signal } : {}),
      }),
    /** What a rollout would do (`dryRun: true`): nothing is created. */
    plan: (spec: Omit<z.input<typeof CreateRolloutRequest>, 'dryRun'>, signal?: AbortSignal) =>
      request('POST', '/api/v1/rollouts', {
        schema: RolloutDryRun,
        body: { ...spec, dryRun: true },
        ...(signal ? { signal } : {}),
      }),
    act: (id: string, action: RolloutAction, reason?: string, signal?: AbortSignal) =>
      request('POST', `/api/v1/rollouts/${enc(id)}/${action}`, {
        schema: RolloutView,
        body: reason === undefined ? {} : { reason },
        ...(signal ? { signal } : {}),
      }),
    events: (id: string, query: Partial<RolloutEventQuery> = {}, signal?: AbortSignal) =>
      get(`/api/v1/rollouts/${enc(id)}/events`, RolloutEventList, query, signal),
    eachEvent: (id: string, query: Omit<Partial<RolloutEventQuery>, 'cursor'> = {}) =>
      walkPages((cursor) => rollouts.events(id, { ...query, cursor })),
    devices: (id: string, query: Partial<RolloutDeviceQuery> = {}, signal?: AbortSignal) =>
      get(`/api/v1/rollouts/${enc(id)}/devices`, RolloutDeviceList, query, signal),
    eachDevice: (id: string, query: Omit<Partial<RolloutDeviceQuery>, 'cursor'> = {}) =>
      walkPages((cursor) => rollouts.devices(id, { ...query, cursor })),
  };

  /**
   * The server's events as they happen (Server-Sent Events over fetch streaming, so the bearer
   * token travels in a header). Ends when the server ends the stream or `signal` aborts; throws
   * ApiRequestError when the stream cannot be opened or an event does not match the schema.
   */
  async function* events(
    filter: {
      readonly types?: readonly ServerEventType[];
      readonly signal?: AbortSignal;
      /** Called once the stream is open (before its first event). */
      readonly onOpen?: () => void;
    } = {},
  ): AsyncGenerator<ServerEvent, void, undefined> {
    const query = filter.types && filter.types.length > 0 ? { types: filter.types.join(',') } : {};
    let response: Response;
    try {
      response = await doFetch(`${baseUrl}/api/v1/events${buildQuery(query)}`, {
        headers: { ...headers(false), accept: 'text/event-stream' },
        ...(filter.signal ? { signal: filter.signal } : {}),
      });
    } catch (error) {
      if (filter.signal?.aborted) return;
      throw new ApiRequestError(
        { code: 'network', message: error instanceof Error ? error.message : String(error) },
        null,
      );
    }
    if (!response.ok) throw new ApiRequestError(await failureOf(response), response.status);
    if (!response.body)
      throw new ApiRequestError({ code: 'bad_response', message: 'the event stream has no body' }, null);
    filter.onOpen?.();
    try {
      for await (const message of readSse(response.body)) {
        if (message.event === 'overflow') {
          throw new ApiRequestError({ code: 'overflow', message: 'the server dropped this slow stream' }, null);
        }
        let json: unknown;
        try {
          json = JSON.parse(message.data);
        } catch {
          throw new ApiRequestError({ code: 'bad_response', message: 'an event is not JSON' }, null);
        }
        const parsed = ServerEvent.safeParse(json);
        if (!parsed.success) {
          throw new ApiRequestError({ code: 'bad_response', message: describeIssues(parsed.error.issues) }, null);
        }
        yield parsed.data;
      }
    } catch (error) {
      if (filter.signal?.aborted) return;
      if (error instanceof ApiRequestError) throw error;
      throw new ApiRequestError(
        { code: 'network', message: error instanceof Error ? error.message : String(error) },
        null,
      );
    }
  }

  return {
    /** The caller's own token: its id, name and role. */
    self: (signal?: AbortSignal) => get('/api/v1/tokens/self', TokenSelf, undefined, signal),
    healthz: (signal?: AbortSignal) => get('/healthz', HealthzResponse, undefined, signal),
    fleet: {
      summary: (signal?: AbortSignal) => get('/api/v1/fleet/summary', FleetSummary, undefined, signal),
    },
    devices,
    models,
    rollouts,
    events,
  };
}
