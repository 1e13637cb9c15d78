import { API_ERROR_CODES, type ApiErrorCode } from '@edgeloop/protocol';

/**
 * The one error type of the HTTP API. Thrown anywhere in a handler; `app.onError` turns it into
 * `{ "error": { "code", "message" } }` with the status of its code.
 */
export class ApiError extends Error {
  readonly code: ApiErrorCode;
  readonly status: (typeof API_ERROR_CODES)[ApiErrorCode];
  /** Response headers that come with the error (Retry-After of a 507). */
  readonly headers: Readonly<Record<string, string>>;
  constructor(
    code: ApiErrorCode,
    message: string,
    options?: { cause?: unknown; headers?: Readonly<Record<string, string>> },
  ) {
    super(message, options);
    this.name = 'ApiError';
    this.code = code;
    this.status = API_ERROR_CODES[code];
    this.headers = options?.headers ?? {};
  }
}

/** The error code of an HTTP status, for errors that arrive as a status only. */
export function codeOfStatus(status: number): ApiErrorCode {
  const found = (Object.entries(API_ERROR_CODES) as [ApiErrorCode, number][]).find(([, s]) => s === status);
  return found?.[0] ?? (status >= 500 ? 'internal' : 'bad_request');
}
