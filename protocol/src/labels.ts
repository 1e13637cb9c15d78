import { z } from 'zod';

/** Label keys: lowercase letters, digits, . _ -, starting with a letter or digit, at most 63 characters. */
export const LABEL_KEY_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/*
 * Label keys and values are checked on the raw object, before the record is built: JSON.parse makes
 * `__proto__` an own key, and a record schema would drop it silently. Every bad key is named.
 */

/** Keys that name a member of Object.prototype (or `prototype`): refused as label keys. */
const PROTOTYPE_NAMES: ReadonlySet<string> = new Set([...Object.getOwnPropertyNames(Object.prototype), 'prototype']);

const LABEL_KEY_RULE = 'lowercase letters, digits, . _ -, starting with a letter or digit, at most 63 characters';
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

/** Why `key` is not a label key, or null when it is one. */
export function labelKeyProblem(key: string): string | null {
  if (PROTOTYPE_NAMES.has(key)) return `label key "${key}" is a prototype name`;
  if (!LABEL_KEY_PATTERN.test(key)) return `label key "${key.slice(0, 80)}" is not valid: ${LABEL_KEY_RULE}`;
  return null;
}

/** Why `value` is not a label value, or null when it is one. */
export function labelValueProblem(key: string, value: string): string | null {
  if (value.length > 128) return `label "${key}": the value is longer than 128 characters`;
  if (CONTROL_CHARACTERS.test(value)) return `label "${key}": the value holds control characters`;
  return null;
}

/** A label map (keys checked on the raw object); `nullable` values remove a label (PATCH). */
export function labelMap<V extends z.ZodType>(value: V, maxPairs: number) {
  return z.preprocess(
    (raw, ctx) => {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
      const keys = Object.keys(raw);
      if (keys.length > maxPairs) {
        ctx.issues.push({ code: 'custom', message: `at most ${maxPairs} labels`, input: raw });
      }
      for (const key of keys) {
        const problem = labelKeyProblem(key);
        const entry = (raw as Record<string, unknown>)[key];
        const valueProblem = problem ?? (typeof entry === 'string' ? labelValueProblem(key, entry) : null);
        if (valueProblem) ctx.issues.push({ code: 'custom', message: valueProblem, input: raw, path: [key] });
      }
      return raw;
    },
    z.record(z.string().regex(LABEL_KEY_PATTERN), value),
  );
}
