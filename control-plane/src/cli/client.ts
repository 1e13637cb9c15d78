import type { ParsedArgs } from './args.ts';
import { UsageError } from './args.ts';

/*
 * The CLI's HTTP client. Every failure names the URL and its cause: a control plane that cannot
 * be reached says why (connect ECONNREFUSED, ENOTFOUND, a TLS error), an API error shows the
 * status and the API's own code and message.
 */

export type Env = Readonly<Record<string, string | undefined>>;

/** The request could not be sent or no response came (the URL and the network's reason). */
export class UnreachableError extends Error {
  override readonly name = 'UnreachableError';
  readonly url: string;
  readonly reason: string;
  constructor(url: string, reason: string, options?: { cause?: unknown }) {
    super(`cannot reach ${url}: ${reason}`, options);
    this.url = url;
    this.reason = reason;
  }
}

/** The control plane answered with a non-2xx status. */
export class ApiRequestError extends Error {
  override readonly name = 'ApiRequestError';
  readonly status: number;
  /** The API's error code (not_found, conflict, ...), when the body carried one. */
  readonly code: string | null;
  constructor(method: string, url: string, status: number, code: string | null, detail: string) {
    super(`${method} ${url} failed with ${status}: ${code ? `${code}: ` : ''}${detail}`);
    this.status = status;
    this.code = code;
  }
}

/** The innermost useful reason of a failed fetch: undici puts it in `cause` (or an AggregateError's list). */
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

export type Client = {
  readonly baseUrl: string;
  /** A JSON request (body as JSON), or a multipart one when the body is FormData. */
  request<T>(method: string, path: string, body?: unknown): Promise<T>;
  /** An open GET whose body is read as it arrives (Server-Sent Events). */
  stream(path: string, signal: AbortSignal): Promise<ReadableStream<Uint8Array>>;
};

export function createClient(parsed: ParsedArgs, env: Env, doFetch: typeof fetch): Client {
  const baseUrl = (parsed.flags.get('url')?.[0] ?? env.EDGELOOP_URL ?? 'http://localhost:8080').replace(/\/+$/, '');
  const token = parsed.flags.get('token')?.[0] ?? env.EDGELOOP_TOKEN;
  if (!token) throw new UsageError('a token is needed: --token TOKEN or EDGELOOP_TOKEN');
  try {
    new URL(baseUrl);
  } catch {
    throw new UsageError(`--url must be an absolute URL such as http://localhost:8080, got "${baseUrl}"`);
  }
  const send = async (method: string, url: string, init: RequestInit): Promise<Response> => {
    try {
      return await doFetch(url, { ...init, method, headers: { authorization: `Bearer ${token}`, ...init.headers } });
    } catch (error) {
      if (init.signal?.aborted) throw error;
      throw new UnreachableError(url, describeFetchFailure(error), { cause: error });
    }
  };
  const failure = async (method: string, url: string, response: Response) => {
    const text = await response.text();
    try {
      const parsedError = JSON.parse(text) as { error?: { code?: string; message?: string } };
      if (parsedError.error) {
        return new ApiRequestError(
          method,
          url,
          response.status,
          parsedError.error.code ?? null,
          parsedError.error.message ?? '',
        );
      }
    } catch {
      // not JSON: shown as it is
    }
    return new ApiRequestError(method, url, response.status, null, text || response.statusText);
  };
  return {
    baseUrl,
    async request<T>(method: string, path: string, body?: unknown): Promise<T> {
      const url = `${baseUrl}${path}`;
      const response = await send(method, url, {
        headers: body !== undefined && !(body instanceof FormData) ? { 'content-type': 'application/json' } : {},
        ...(body !== undefined ? { body: body instanceof FormData ? body : JSON.stringify(body) } : {}),
      });
      if (!response.ok) throw await failure(method, url, response);
      let text: string;
      try {
        text = await response.text();
      } catch (error) {
        throw new UnreachableError(url, `the response broke off: ${describeFetchFailure(error)}`, { cause: error });
      }
      return (text.length > 0 ? JSON.parse(text) : undefined) as T;
    },
    async stream(path: string, signal: AbortSignal) {
      const url = `${baseUrl}${path}`;
      const response = await send('GET', url, { headers: { accept: 'text/event-stream' }, signal });
      if (!response.ok) throw await failure('GET', url, response);
      if (!response.body) throw new UnreachableError(url, 'the response has no body');
      return response.body;
    },
  };
}
