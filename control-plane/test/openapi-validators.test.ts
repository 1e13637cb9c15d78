import SwaggerParser from '@apidevtools/swagger-parser';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';

/*
 * The OpenAPI document as a client downloads it from a running control plane, checked by two
 * independent validators that API tooling uses (code generators, docs, gateways).
 */

let t: TestControlPlane;
let text: string;

beforeAll(async () => {
  // With every optional route group on, the broker hooks included.
  t = await startTestControlPlane({ brokerHookSecret: 'broker-hook-secret-0123456789abcdef' });
  const response = await fetch(`${t.started.httpUrl}/api/v1/openapi.json`);
  expect(response.status).toBe(200);
  text = await response.text();
});

afterAll(async () => {
  await t?.stop();
});

describe('the served OpenAPI document', () => {
  it('passes @apidevtools/swagger-parser validation, every $ref resolving', async () => {
    // validate() dereferences in place: give it a copy.
    const api = (await SwaggerParser.validate(JSON.parse(text))) as { openapi: string; paths: object };
    expect(api.openapi).toBe('3.1.0');
    expect(Object.keys(api.paths).length).toBeGreaterThan(10);
    expect(Object.keys(api.paths)).toContain('/api/v1/broker/authorize');
  });

  it('has no errors under the Redocly recommended ruleset', async () => {
    const config = await createConfig({ extends: ['recommended'] });
    const problems = await lintFromString({ source: text, absoluteRef: 'openapi.json', config });
    const errors = problems
      .filter((problem) => problem.severity === 'error')
      .map((problem) => `${problem.ruleId}: ${problem.message} at ${problem.location[0]?.pointer}`);
    expect(errors).toEqual([]);
  });

  it('keeps no local $defs pointers: shared definitions live in components.schemas', () => {
    expect(text).not.toContain('#/$defs/');
    const doc = JSON.parse(text) as { components: { schemas: Record<string, unknown> } };
    expect(doc.components.schemas).toHaveProperty('JsonValue');
    expect(text).toContain('"$ref":"#/components/schemas/JsonValue"');
  });
});
