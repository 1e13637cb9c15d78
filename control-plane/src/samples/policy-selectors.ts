import type { SamplePolicyRecord } from '../db/repositories.ts';

/*
 * Which stored selector policy a device follows (pure): the most specific selector it matches
 * (most label pairs), the newest of those on a tie. `{}` matches every device.
 */

export function selectorMatches(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>) {
  for (const [key, value] of Object.entries(selector)) if (labels[key] !== value) return false;
  return true;
}

/** The policy a device with these labels follows, or null when no stored selector matches. */
export function effectivePolicy(
  records: readonly SamplePolicyRecord[],
  labels: Readonly<Record<string, string>>,
): unknown | null {
  let best: SamplePolicyRecord | null = null;
  for (const record of records) {
    if (!selectorMatches(record.selector, labels)) continue;
    if (!best) {
      best = record;
      continue;
    }
    const size = Object.keys(record.selector).length;
    const bestSize = Object.keys(best.selector).length;
    if (size > bestSize || (size === bestSize && record.updatedAt > best.updatedAt)) best = record;
  }
  return best ? best.policy : null;
}

/** JSON equality with object keys in any order (PostgreSQL jsonb reorders them). */
export function sameJson(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(value: unknown): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record)
    .filter((key) => record[key] !== undefined)
    .sort();
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonical(record[key])}`).join(',')}}`;
}
