import { ApiError } from './api-error.ts';

/** Opaque paging cursors: base64url JSON, checked on the way back in. */
export function encodeCursor(value: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

export function decodeCursor<K extends string>(
  cursor: string,
  shape: Readonly<Record<K, 'string' | 'number'>>,
): Record<K, string | number> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new ApiError('bad_request', 'cursor is not one this API returned');
  }
  if (typeof value !== 'object' || value === null)
    throw new ApiError('bad_request', 'cursor is not one this API returned');
  const record = value as Record<string, unknown>;
  for (const [key, type] of Object.entries(shape)) {
    if (typeof record[key] !== type) throw new ApiError('bad_request', 'cursor is not one this API returned');
  }
  return record as Record<K, string | number>;
}
