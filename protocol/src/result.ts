/** An expected failure, carried as a value. `code` is stable; `message` is for people. */
export type Failure<C extends string = string> = { readonly code: C; readonly message: string };

/** The result of an operation whose failure is expected (bad input, not found, ...). */
export type Result<T, C extends string = string> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: Failure<C> };

export function ok<T>(value: T): { readonly ok: true; readonly value: T } {
  return { ok: true, value };
}

export function fail<C extends string>(code: C, message: string): { readonly ok: false; readonly error: Failure<C> } {
  return { ok: false, error: { code, message } };
}
