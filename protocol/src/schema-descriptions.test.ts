import { describe, expect, it } from 'vitest';
import { jsonSchemas } from './json-schema.ts';

/*
 * The JSON Schemas are the documentation API tools read (OpenAPI viewers, code generators,
 * editors validating a rollout spec): every document and every property carries a description.
 */

/** JSON pointers of the properties under `node` that have no description. */
function undescribed(node: unknown, path: string): string[] {
  if (Array.isArray(node)) return node.flatMap((item, i) => undescribed(item, `${path}/${i}`));
  if (node === null || typeof node !== 'object') return [];
  const object = node as Record<string, unknown>;
  const missing: string[] = [];
  if (object.properties && typeof object.properties === 'object') {
    for (const [name, schema] of Object.entries(object.properties as Record<string, { description?: unknown }>)) {
      if (typeof schema.description !== 'string' || schema.description.length === 0) {
        missing.push(`${path}/properties/${name}`);
      }
    }
  }
  for (const [key, value] of Object.entries(object)) missing.push(...undescribed(value, `${path}/${key}`));
  return missing;
}

describe('protocol JSON Schemas', () => {
  it('describe every document and every property', () => {
    const missing = Object.entries(jsonSchemas()).flatMap(([name, schema]) => [
      ...((schema as { description?: unknown }).description ? [] : [`${name}: (document)`]),
      ...undescribed(schema, '').map((pointer) => `${name}: ${pointer}`),
    ]);
    expect(missing).toEqual([]);
  });
});
