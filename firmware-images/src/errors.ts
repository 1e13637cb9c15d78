/**
 * Codes of the errors the signing side throws (key files, manifests, releases, model files).
 * Verification never throws for a bad release: it returns a Result (see verify.ts).
 */
export const SIGNING_ERROR_CODES = [
  'invalid_key',
  'key_id_mismatch',
  'invalid_manifest',
  'invalid_release',
  'file_error',
] as const;
export type SigningErrorCode = (typeof SIGNING_ERROR_CODES)[number];

/** A signing-side failure with a stable `code`; the CLI prints `code: message` and exits 1. */
export class SigningError extends Error {
  readonly code: SigningErrorCode;

  constructor(code: SigningErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SigningError';
    this.code = code;
  }
}

/** One line per zod issue, `path: message`, joined with `; `. */
export function describeIssues(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)'}: ${issue.message}`)
    .join('; ');
}
