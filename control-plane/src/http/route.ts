import { describeIssues } from '@edgeloop/protocol';
import type { Context } from 'hono';
import type { z } from 'zod';
import type { ApiRole, ApiToken } from '../db/repositories.ts';
import { ApiError } from './api-error.ts';

/*
 * Routes are declared as data (method, path, role, schemas, responses) plus a handler, so the
 * app registers exactly what the OpenAPI document lists. Bodies and queries are validated with
 * their zod schemas before the handler runs: bad JSON is a 400, a schema mismatch a 422.
 */

/**
 * `requestId`: set by hono's request-id middleware (X-Request-Id) for every request.
 * `auditResult`: the JSON value a route answered with, when it sets it, so the audit entry reads
 * it from here instead of cloning and re-parsing the response (audit/http.ts).
 */
export type AppEnv = { Variables: { requestId: string; auditResult?: unknown } };

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

export type ResponseSpec = {
  readonly description: string;
  readonly schema?: z.ZodType;
  /** Defaults to application/json when a schema is given. */
  readonly contentType?: string;
};

export type RouteInput<B, Q> = {
  readonly c: Context<AppEnv>;
  readonly body: B;
  readonly query: Q;
  readonly params: Readonly<Record<string, string>>;
  readonly token: ApiToken | null;
};

export type Route = {
  readonly method: HttpMethod;
  /** Hono path, `:name` for parameters. */
  readonly path: string;
  readonly summary: string;
  readonly tag: string;
  /** The least role allowed; null for routes without authentication. */
  readonly role: ApiRole | null;
  readonly body?: z.ZodType;
  readonly query?: z.ZodObject;
  /** Query parameters that may repeat (collected into an array). */
  readonly arrayQuery?: readonly string[];
  readonly responses: Readonly<Record<number, ResponseSpec>>;
  /**
   * A body the handler streams itself (uploads): the app's JSON body limit does not apply; the
   * handler enforces `limitBytes`. Documented in OpenAPI under `contentType`.
   */
  readonly streamedBody?: { readonly contentType: string; readonly description: string; readonly limitBytes: number };
  /**
   * The handler authenticates the caller itself (role still documents the API-token role); the
   * app does not check a bearer token first.
   */
  readonly customAuth?: string;
  /** Set (to its OpenAPI description) on routes that honour an Idempotency-Key header (app.ts IDEMPOTENT_ROUTES). */
  readonly idempotencyKey?: string;
  readonly handle: (input: RouteInput<unknown, unknown>) => Response | Promise<Response>;
};

export function defineRoute<B extends z.ZodType | undefined = undefined, Q extends z.ZodObject | undefined = undefined>(
  spec: Omit<Route, 'body' | 'query' | 'handle'> & {
    readonly body?: B;
    readonly query?: Q;
    readonly handle: (
      input: RouteInput<B extends z.ZodType ? z.infer<B> : undefined, Q extends z.ZodObject ? z.infer<Q> : undefined>,
    ) => Response | Promise<Response>;
  },
): Route {
  return spec as unknown as Route;
}

export async function parseBody(c: Context, schema: z.ZodType): Promise<unknown> {
  const text = await c.req.text();
  let json: unknown;
  try {
    json = text.length === 0 ? undefined : JSON.parse(text);
  } catch (error) {
    throw new ApiError('bad_request', `request body is not JSON: ${(error as Error).message}`);
  }
  if (json === undefined) {
    // An empty body is fine where the schema allows none (optional bodies).
    const empty = schema.safeParse(undefined);
    if (empty.success) return empty.data;
    throw new ApiError('bad_request', 'request body is empty; JSON expected');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new ApiError('unprocessable', describeIssues(parsed.error.issues));
  return parsed.data;
}

export function parseQuery(c: Context, schema: z.ZodObject, arrayKeys: readonly string[] = []): unknown {
  const raw: Record<string, string | string[]> = {};
  for (const [key, values] of Object.entries(c.req.queries())) {
    raw[key] = arrayKeys.includes(key) ? values : (values[0] ?? '');
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new ApiError('unprocessable', describeIssues(parsed.error.issues));
  return parsed.data;
}
