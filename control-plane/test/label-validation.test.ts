import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';

/*
 * Label keys and values (issue 12 §3) through the real API: enrollment, PATCH of labels, the
 * rollout selector and the sample-policy selector refuse a prototype name, a key outside the
 * character set or over 63 characters, and a bad value, with 422 naming the offending key.
 * The bodies are raw JSON text: JSON.parse makes "__proto__" an own key, as a client's would.
 */

let t: TestControlPlane;
beforeAll(async () => {
  t = await startTestControlPlane();
  await t.enroll('label-cam');
});
afterAll(async () => {
  await t.stop();
});

const BAD_KEYS: readonly [string, RegExp][] = [
  ['__proto__', /label key "__proto__" is a prototype name/],
  ['constructor', /label key "constructor" is a prototype name/],
  ['Site', /label key "Site" is not valid/],
  ['a b', /label key "a b" is not valid/],
  ['k'.repeat(64), new RegExp(`label key "${'k'.repeat(64)}" is not valid`)],
];

async function refused(method: string, path: string, json: string): Promise<string> {
  const response = await t.raw(method, path, { raw: json });
  expect(response.status).toBe(422);
  // The message and the issue details, as one text to match.
  return JSON.stringify(await response.json()).replaceAll('\\"', '"');
}

describe('label validation through the API', () => {
  it.each(BAD_KEYS)(
    'refuses the label key %s at enrollment, in a PATCH, and in both selectors',
    async (key, message) => {
      const labels = `{${JSON.stringify(key)}:"x"}`;
      expect(await refused('POST', '/api/v1/devices', `{"id":"label-new","labels":${labels}}`)).toMatch(message);
      expect(await refused('PATCH', '/api/v1/devices/label-cam', `{"labels":${labels}}`)).toMatch(message);
      expect(
        await refused(
          'POST',
          '/api/v1/rollouts',
          `{"modelId":"det@1.0.0","selector":{"labels":${labels}},"stages":[{"name":"all","kind":"percent","percent":100}]}`,
        ),
      ).toMatch(message);
      expect(await refused('PUT', '/api/v1/sample-policy', `{"selector":{"labels":${labels}},"policy":null}`)).toMatch(
        message,
      );
    },
  );

  it('refuses a label value with control characters or over 128 characters, naming its key', async () => {
    expect(await refused('POST', '/api/v1/devices', '{"id":"label-new","labels":{"site":"a\\u0007b"}}')).toMatch(
      /label "site": the value holds control characters/,
    );
    expect(await refused('PATCH', '/api/v1/devices/label-cam', `{"labels":{"site":"${'v'.repeat(129)}"}}`)).toMatch(
      /label "site": the value is longer than 128 characters/,
    );
  });

  it('stores nothing for a refused enrollment and accepts a well-formed label', async () => {
    const missing = await t.raw('GET', '/api/v1/devices/label-new');
    expect(missing.status).toBe(404);
    const ok = await t.raw('PATCH', '/api/v1/devices/label-cam', { body: { labels: { 'site.zone-1_a': 'north' } } });
    expect(ok.status).toBe(200);
  });
});
