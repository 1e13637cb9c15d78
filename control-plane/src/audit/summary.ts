/*
 * The `summary` of an audit entry: a small digest of a request body (and of what the response
 * created), with anything that looks like a secret replaced. Bounded in depth, breadth and size so
 * a large body never makes a large row.
 */

/** Keys whose values are never stored: passwords, secrets, tokens, keys, credentials. */
const SECRET_KEY =
  /(pass(word|wd|phrase)?|secret|token|credential|authori[sz]ation|api[-_]?key|private[-_]?key|^key$|pepper|cookie)/i;

export const REDACTED = '[redacted]';

const MAX_STRING = 120;
const MAX_KEYS = 24;
const MAX_ITEMS = 8;
const MAX_DEPTH = 3;
/** A digest larger than this (as JSON) keeps only its top-level keys. */
const MAX_SUMMARY_CHARS = 2_048;

function digestValue(value: unknown, depth: number): unknown {
  if (value === null || typeof value === 'boolean') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'string') return value.length > MAX_STRING ? `${value.slice(0, MAX_STRING)}…` : value;
  if (Array.isArray(value)) {
    if (depth >= MAX_DEPTH) return `[${value.length} items]`;
    const items = value.slice(0, MAX_ITEMS).map((item) => digestValue(item, depth + 1));
    if (value.length > MAX_ITEMS) items.push(`+${value.length - MAX_ITEMS} more`);
    return items;
  }
  if (typeof value === 'object') {
    const keys = Object.keys(value);
    if (depth >= MAX_DEPTH) return `{${keys.length} keys}`;
    const out: Record<string, unknown> = {};
    for (const key of keys.slice(0, MAX_KEYS)) {
      out[key] = SECRET_KEY.test(key) ? REDACTED : digestValue((value as Record<string, unknown>)[key], depth + 1);
    }
    if (keys.length > MAX_KEYS) out['…'] = `+${keys.length - MAX_KEYS} more keys`;
    return out;
  }
  return String(value);
}

/** A redacted, bounded digest of a JSON value (a request body). */
export function digest(value: unknown): unknown {
  const out = digestValue(value, 0);
  if (JSON.stringify(out ?? null).length <= MAX_SUMMARY_CHARS) return out;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    return { truncated: true, keys: Object.keys(value).slice(0, MAX_KEYS) };
  }
  return { truncated: true };
}

/** Fields of a response worth naming in the log (what was created): scalars only, never secrets. */
const RESULT_FIELDS = ['id', 'name', 'version', 'status', 'role', 'stageIndex', 'requestId', 'sampleCount'] as const;

const NESTED = ['device', 'token', 'rollout', 'model', 'dataset'] as const;

/** The identifying scalars of a JSON response (`{ id, name, status, ... }`, or those of `device`). */
export function resultOf(response: unknown): Record<string, unknown> | null {
  if (typeof response !== 'object' || response === null || Array.isArray(response)) return null;
  const record = response as Record<string, unknown>;
  // `{ device: {...}, credentials }`, `{ token: {...}, secret }`: the named thing inside.
  const nested = NESTED.map((key) => record[key]).find((value) => typeof value === 'object' && value !== null);
  const source = record.id === undefined && nested ? (nested as Record<string, unknown>) : record;
  const out: Record<string, unknown> = {};
  for (const field of RESULT_FIELDS) {
    const value = source[field];
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
      out[field] = typeof value === 'string' ? digestValue(value, 0) : value;
    }
  }
  return Object.keys(out).length > 0 ? out : null;
}
