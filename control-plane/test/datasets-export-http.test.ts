import { unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CocoDocument, cocoProblems, storeSampleIn, untar } from './dataset-fixtures.ts';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';

/*
 * A dataset export over a real socket of a real control plane: the route writes the tar to Node's
 * response itself (http/node-response.ts), and the app's middleware still applies to it.
 */

let t: TestControlPlane;

beforeAll(async () => {
  t = await startTestControlPlane();
  for (let i = 1; i <= 6; i++) await storeSampleIn(t, i);
  await unwrap(t.client.datasets.create({ name: 'wire', query: { strategy: 'near-threshold' } }));
});

afterAll(async () => {
  await t?.stop();
});

const get = (path: string) =>
  fetch(`${t.started.httpUrl}${path}`, { headers: { authorization: `Bearer ${t.adminToken}` } });

/** The value of edgeloop_http_requests_total{status="2xx"}. */
async function answered2xx(): Promise<number> {
  const text = await (await get('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith('edgeloop_http_requests_total{status="2xx"}'));
  return Number(line?.split(' ').pop() ?? 0);
}

describe('GET /api/v1/datasets/:id/export over a socket', () => {
  it('streams the tar with its headers and X-Request-Id, and counts the answer like any other', async () => {
    const before = await answered2xx();
    const response = await get('/api/v1/datasets/wire@1/export?format=coco');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/x-tar');
    expect(response.headers.get('content-disposition')).toBe('attachment; filename="wire-1-coco.tar"');
    expect(response.headers.get('x-request-id')).toMatch(/\S/);
    const files = await untar(response.body!);
    const doc = JSON.parse(files.get('annotations.json')!.toString()) as CocoDocument;
    expect(cocoProblems(doc)).toEqual([]);
    expect(doc.images).toHaveLength(6);
    for (const image of doc.images)
      expect(files.get(image.file_name)!.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
    // The export and the first /metrics: two more 2xx answers.
    expect((await answered2xx()) - before).toBe(2);
  });

  it('still answers 404 as JSON for a version that does not exist', async () => {
    const response = await get('/api/v1/datasets/nope@1/export?format=yolo');
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: 'not_found' } });
  });
});
