import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { jsonSchemas } from './json-schema.ts';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'schemas');

describe('JSON Schema export', () => {
  it('covers every channel and the committed files are up to date', () => {
    const schemas = jsonSchemas();
    for (const channel of ['status', 'telemetry', 'events', 'reported', 'reply', 'desired', 'cmd']) {
      expect(schemas).toHaveProperty(`message.${channel}`);
    }
    const files = readdirSync(dir).filter((name) => name.endsWith('.json'));
    expect(files.sort()).toEqual(
      Object.keys(schemas)
        .map((name) => `${name}.json`)
        .sort(),
    );
    for (const [name, schema] of Object.entries(schemas)) {
      const committed = JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8'));
      expect(committed, `${name}.json is stale: run npm run schemas -w @edgeloop/protocol`).toEqual(schema);
    }
  });

  it('describes the envelope fields as required in telemetry', () => {
    const telemetry = jsonSchemas()['message.telemetry'] as { required: string[] };
    expect(telemetry.required).toEqual(expect.arrayContaining(['msgId', 'bootId', 'seq', 'ts', 'system']));
  });
});
