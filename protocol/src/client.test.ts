import { describe, expect, it } from 'vitest';
import { ApiRequestError, buildQuery, createApiClient, take, unwrap } from './client.ts';

/** A fetch that answers from a table and records every request. */
function fakeFetch(answer: (url: URL, init: RequestInit) => Response | Promise<Response>) {
  const calls: { url: URL; init: RequestInit }[] = [];
  const fetch = async (input: string, init: RequestInit = {}) => {
    const url = new URL(input);
    calls.push({ url, init });
    return answer(url, init);
  };
  return { fetch: fetch as typeof globalThis.fetch, calls };
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

const device = (id: string) => ({
  id,
  labels: { site: 'north' },
  status: 'online',
  health: 'healthy',
  healthReasons: [],
  lastSeen: 1_700_000_000_000,
  enrolledAt: 1_700_000_000_000,
  bootId: 'boot1',
  agentVersion: '0.1.0',
});

describe('createApiClient', () => {
  it('sends the bearer token and the filters, and returns the parsed page', async () => {
    const { fetch, calls } = fakeFetch(() => json({ items: [device('cam-1')], nextCursor: null }));
    const client = createApiClient({ baseUrl: 'http://cp.test/', token: 't0k', fetch });

    const page = await client.devices.list({ status: 'online', label: ['site:north', 'model:x'], limit: 50 });

    expect(page).toEqual({ ok: true, value: { items: [device('cam-1')], nextCursor: null } });
    expect(calls[0]!.url.pathname).toBe('/api/v1/devices');
    expect(calls[0]!.url.searchParams.getAll('label')).toEqual(['site:north', 'model:x']);
    expect(calls[0]!.url.searchParams.get('limit')).toBe('50');
    expect((calls[0]!.init.headers as Record<string, string>).authorization).toBe('Bearer t0k');
  });

  it("returns the API's error body as a failure value with its code", async () => {
    const { fetch } = fakeFetch(() => json({ error: { code: 'forbidden', message: 'needs operator' } }, 403));
    const client = createApiClient({ baseUrl: 'http://cp.test', token: 'viewer', fetch });

    const result = await client.rollouts.act('r1', 'abort', 'test');

    expect(result).toEqual({
      ok: false,
      error: {
        code: 'forbidden',
        message: 'needs operator',
        status: 403,
        method: 'POST',
        url: 'http://cp.test/api/v1/rollouts/r1/abort',
      },
    });
  });

  it('names the status when an error body is not the API shape', async () => {
    const { fetch } = fakeFetch(() => new Response('bad gateway', { status: 502 }));
    const result = await createApiClient({ baseUrl: 'http://cp.test', token: null, fetch }).fleet.summary();
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toMatchObject({ code: 'internal', message: 'bad gateway', status: 502 });
  });

  it('refuses an answer that does not match the schema of its route', async () => {
    const { fetch } = fakeFetch(() => json({ items: [{ id: 'cam-1' }], nextCursor: null }));
    const result = await createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch }).devices.list();
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.code).toBe('bad_response');
  });

  it("turns a fetch that throws into a network failure naming the URL and undici's inner reason", async () => {
    const fetch = (async () => {
      throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:9') });
    }) as typeof globalThis.fetch;
    const result = await createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch }).self();
    expect(result).toEqual({
      ok: false,
      error: {
        code: 'network',
        message: 'connect ECONNREFUSED 127.0.0.1:9',
        status: null,
        method: 'GET',
        url: 'http://cp.test/api/v1/tokens/self',
      },
    });
  });

  it('says an answer broke off when its body cannot be read, and takes an empty 204 as no content', async () => {
    const broken = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"items":'));
        controller.error(new Error('socket hang up'));
      },
    });
    const { fetch } = fakeFetch((url) =>
      url.pathname.startsWith('/api/v1/devices/')
        ? new Response(null, { status: 204 })
        : new Response(broken, { headers: { 'content-type': 'application/json' } }),
    );
    const client = createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch });
    const listed = await client.devices.list();
    expect(listed).toMatchObject({ ok: false, error: { code: 'network', status: 200 } });
    if (!listed.ok) expect(listed.error.message).toBe('the response broke off: socket hang up');
    expect(await client.devices.revoke('cam-1')).toEqual({ ok: true, value: undefined });
  });

  it('escapes path segments and sends rollout actions with their reason as JSON', async () => {
    const { fetch, calls } = fakeFetch(() => json({ error: { code: 'not_found', message: 'no rollout' } }, 404));
    const client = createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch });
    await client.rollouts.act('a/b', 'pause', 'night');
    expect(calls[0]!.url.pathname).toBe('/api/v1/rollouts/a%2Fb/pause');
    expect(calls[0]!.init.method).toBe('POST');
    expect(JSON.parse(String(calls[0]!.init.body))).toEqual({ reason: 'night' });
  });

  it('walks every page of a cursor-paged list as one async iterator', async () => {
    const { fetch, calls } = fakeFetch((url) => {
      const cursor = url.searchParams.get('cursor');
      if (cursor === null) return json({ items: [device('a'), device('b')], nextCursor: 'c1' });
      if (cursor === 'c1') return json({ items: [device('c')], nextCursor: null });
      return json({ error: { code: 'bad_request', message: 'bad cursor' } }, 400);
    });
    const ids: string[] = [];
    for await (const item of createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch }).devices.each({
      health: 'healthy',
    })) {
      ids.push(item.id);
    }
    expect(ids).toEqual(['a', 'b', 'c']);
    expect(calls.map((call) => call.url.searchParams.get('health'))).toEqual(['healthy', 'healthy']);
  });

  it('throws the failure of a page that fails in the middle of a walk', async () => {
    const { fetch } = fakeFetch((url) =>
      url.searchParams.get('cursor') === null
        ? json({ items: [device('a')], nextCursor: 'c1' })
        : json({ error: { code: 'unavailable', message: 'restarting' } }, 503),
    );
    const walk = async () => {
      for await (const _ of createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch }).devices.each()) {
        // drain
      }
    };
    await expect(walk()).rejects.toMatchObject({ name: 'ApiRequestError', code: 'unavailable' });
  });

  it('streams server events parsed from chunks that split lines anywhere', async () => {
    const events = [
      { type: 'device.offline', at: 1, data: { deviceId: 'cam-1' } },
      { type: 'device.online', at: 2, data: { deviceId: 'cam-2' } },
    ];
    const text = `: connected\n\n${events.map((e, i) => `id: ${i}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join('')}`;
    const chunks = [text.slice(0, 7), text.slice(7, 50), text.slice(50)];
    const { fetch, calls } = fakeFetch(
      () =>
        new Response(
          new ReadableStream({
            start(controller) {
              for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
              controller.close();
            },
          }),
          { headers: { 'content-type': 'text/event-stream' } },
        ),
    );
    const received = [];
    for await (const event of createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch }).events({
      types: ['device.online', 'device.offline'],
    })) {
      received.push(event);
    }
    expect(received).toEqual(events);
    expect(calls[0]!.url.searchParams.get('types')).toBe('device.online,device.offline');
  });

  it('throws the refusal when the event stream cannot be opened', async () => {
    const { fetch } = fakeFetch(() => json({ error: { code: 'unauthorized', message: 'no token' } }, 401));
    const stream = createApiClient({ baseUrl: 'http://cp.test', token: null, fetch }).events();
    const error = await stream.next().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ApiRequestError);
    expect(error).toMatchObject({ code: 'unauthorized', status: 401 });
  });
});

const sample = (id: string) => ({
  id,
  deviceId: 'cam-1',
  site: 'north',
  labels: { site: 'north' },
  model: { id: 'det@1.0.0', sha256: 'a'.repeat(64) },
  strategy: 'near-threshold',
  reason: 'score 0.51 near 0.5',
  tags: [],
  predictions: [],
  frameTs: 1_700_000_000_000,
  bootId: 'boot1',
  seq: 1,
  image: { sha256: 'b'.repeat(64), bytes: 3, width: 4, height: 4, contentType: 'image/jpeg' },
  receivedAt: 1_700_000_000_001,
});

const dataset = (id: string) => ({
  id,
  name: id.split('@')[0],
  version: Number(id.split('@')[1]),
  parentId: null,
  labelled: false,
  query: { strategy: 'near-threshold' },
  splits: { train: 80, val: 10, test: 10 },
  counts: { total: 1, train: 1, val: 0, test: 0, annotations: 0 },
  categories: [],
  createdAt: 1_700_000_000_000,
  createdBy: null,
});

const bytesOf = async (body: ReadableStream<Uint8Array>) => new Uint8Array(await new Response(body).arrayBuffer());

describe('createApiClient samples and datasets', () => {
  it('walks the samples of a query page by page, the filters on every page and booleans as words', async () => {
    const { fetch, calls } = fakeFetch((url) =>
      url.searchParams.get('cursor') === null
        ? json({ items: [sample('s1'), sample('s2')], nextCursor: 'c1' })
        : json({ items: [sample('s3')], nextCursor: null }),
    );
    const client = createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch });
    const items = await take(
      client.samples.each({ deviceId: 'cam-1', label: ['site:north'], hasLabels: false, limit: 2 }),
    );
    expect(items.map((s) => s.id)).toEqual(['s1', 's2', 's3']);
    expect(calls.map((c) => c.url.search)).toEqual([
      '?deviceId=cam-1&label=site%3Anorth&hasLabels=false&limit=2',
      '?deviceId=cam-1&label=site%3Anorth&hasLabels=false&limit=2&cursor=c1',
    ]);
  });

  it('stops fetching pages once take has as many items as it asked for', async () => {
    const { fetch, calls } = fakeFetch(() => json({ items: [sample('s1'), sample('s2')], nextCursor: 'more' }));
    const items = await take(createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch }).samples.each(), 3);
    expect(items).toHaveLength(3);
    expect(calls).toHaveLength(2);
  });

  it('refuses a sample whose fields do not match SampleView', async () => {
    const { fetch } = fakeFetch(() => json({ ...sample('s1'), strategy: 'whatever' }));
    const result = await createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch }).samples.get('s1');
    expect(result).toMatchObject({ ok: false, error: { code: 'bad_response', status: 200 } });
  });

  it('answers a sample image as its body stream with length, type and the sha256 etag', async () => {
    const { fetch, calls } = fakeFetch(
      () =>
        new Response(new Uint8Array([0xff, 0xd8, 0xff]), {
          headers: { 'content-type': 'image/jpeg', 'content-length': '3', etag: `"${'b'.repeat(64)}"` },
        }),
    );
    const image = await unwrap(createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch }).samples.image('s/1'));
    expect(calls[0]!.url.pathname).toBe('/api/v1/samples/s%2F1/image');
    expect(image).toMatchObject({ contentLength: 3, contentType: 'image/jpeg', etag: 'b'.repeat(64) });
    expect([...(await bytesOf(image.body))]).toEqual([0xff, 0xd8, 0xff]);
  });

  it('gives the failure of a missing thumbnail, not a stream of its error body', async () => {
    const { fetch } = fakeFetch(() => json({ error: { code: 'not_found', message: 'no sample s9' } }, 404));
    const result = await createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch }).samples.thumbnail('s9');
    expect(result).toMatchObject({
      ok: false,
      error: {
        code: 'not_found',
        message: 'no sample s9',
        status: 404,
        url: 'http://cp.test/api/v1/samples/s9/thumbnail',
      },
    });
  });

  it('reads and sets the sample policy of a selector as JSON', async () => {
    const { fetch, calls } = fakeFetch((_url, init) =>
      init.method === 'PUT'
        ? json({ selector: { labels: { site: 'north' } }, policy: null, devices: 2, changed: 1 })
        : json({ items: [] }),
    );
    const client = createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch });
    expect(await client.samples.policy.list()).toEqual({ ok: true, value: { items: [] } });
    const set = await client.samples.policy.set({ selector: { labels: { site: 'north' } }, policy: null });
    expect(set).toMatchObject({ ok: true, value: { devices: 2, changed: 1, policy: null } });
    expect(calls[1]!.init.method).toBe('PUT');
    expect(calls[1]!.url.pathname).toBe('/api/v1/sample-policy');
    expect(JSON.parse(String(calls[1]!.init.body))).toEqual({ selector: { labels: { site: 'north' } }, policy: null });
    expect((calls[1]!.init.headers as Record<string, string>)['content-type']).toBe('application/json');
  });

  it('creates a dataset version, imports labels with PUT, and walks the versions', async () => {
    const { fetch, calls } = fakeFetch((_url, init) => {
      if (init.method === 'POST') return json(dataset('hard@1'), 201);
      if (init.method === 'PUT') return json({ ...dataset('hard@2'), parentId: 'hard@1', labelled: true }, 201);
      return json({ items: [dataset('hard@2'), dataset('hard@1')], nextCursor: null });
    });
    const client = createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch });
    const created = await unwrap(client.datasets.create({ name: 'hard', query: { strategy: 'near-threshold' } }));
    expect(created.id).toBe('hard@1');
    const labelled = await unwrap(
      client.datasets.importLabels('hard@1', { images: [], annotations: [], categories: [] }),
    );
    expect(labelled).toMatchObject({ parentId: 'hard@1', labelled: true });
    expect(calls[1]!.url.pathname).toBe('/api/v1/datasets/hard%401/labels');
    expect((await take(client.datasets.each({ name: 'hard' }))).map((d) => d.id)).toEqual(['hard@2', 'hard@1']);
    expect(calls[2]!.url.search).toBe('?name=hard');
  });

  it('streams a dataset export with its file name, and no length when the server streams it', async () => {
    const { fetch, calls } = fakeFetch(
      () =>
        new Response(
          new ReadableStream({
            start(controller) {
              controller.enqueue(new Uint8Array(512));
              controller.enqueue(new Uint8Array(512));
              controller.close();
            },
          }),
          {
            headers: {
              'content-type': 'application/x-tar',
              'content-disposition': 'attachment; filename="hard-1-yolo.tar"',
            },
          },
        ),
    );
    const exported = await unwrap(
      createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch }).datasets.export('hard@1', 'yolo'),
    );
    expect(calls[0]!.url.search).toBe('?format=yolo');
    expect(exported).toMatchObject({
      contentLength: null,
      contentType: 'application/x-tar',
      fileName: 'hard-1-yolo.tar',
    });
    expect((await bytesOf(exported.body)).byteLength).toBe(1024);
  });

  it('unwrap throws the failure as an ApiRequestError carrying status and URL', async () => {
    const { fetch } = fakeFetch(() => json({ error: { code: 'not_found', message: 'no dataset version x@1' } }, 404));
    const error = await unwrap(
      createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch }).datasets.get('x@1'),
    ).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ApiRequestError);
    expect(error).toMatchObject({
      code: 'not_found',
      status: 404,
      failure: { method: 'GET', url: 'http://cp.test/api/v1/datasets/x%401' },
    });
  });
});

describe('createApiClient fleet sites and audit log', () => {
  const site = (site: string | null) => ({
    site,
    total: 2,
    online: 1,
    offline: 1,
    unknown: 0,
    healthy: 1,
    degraded: 0,
  });
  const entry = (id: number) => ({
    id,
    at: 1_700_000_000_000 + id,
    actor: { id: 'tok_1', role: 'admin' },
    action: 'POST /api/v1/devices',
    resource: 'devices',
    target: `cam-${id}`,
    requestId: null,
    source: null,
    status: 201,
    summary: {},
  });

  it('walks the sites page by page with the page size on every page', async () => {
    const { fetch, calls } = fakeFetch((url) =>
      url.searchParams.get('cursor') === null
        ? json({ items: [site(null), site('north')], nextCursor: 'c1' })
        : json({ items: [site('south')], nextCursor: null }),
    );
    const client = createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch });
    const sites = await take(client.fleet.eachSite({ limit: 2 }));
    expect(sites.map((s) => s.site)).toEqual([null, 'north', 'south']);
    expect(calls.map((c) => `${c.url.pathname}${c.url.search}`)).toEqual([
      '/api/v1/fleet/sites?limit=2',
      '/api/v1/fleet/sites?limit=2&cursor=c1',
    ]);
  });

  it('reads the audit log with its filters, and refuses an entry that does not match AuditEntry', async () => {
    const { fetch, calls } = fakeFetch((url) =>
      url.searchParams.get('resource') === 'devices'
        ? json({ items: [entry(2), entry(1)], nextCursor: null })
        : json({ items: [{ id: 'x' }], nextCursor: null }),
    );
    const client = createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch });
    const page = await unwrap(client.audit.list({ resource: 'devices', from: 5, limit: 10 }));
    expect(page.items.map((item) => item.target)).toEqual(['cam-2', 'cam-1']);
    expect(calls[0]!.url.search).toBe('?resource=devices&from=5&limit=10');
    const bad = await client.audit.list({ resource: 'tokens' });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error.code).toBe('bad_response');
  });
});

describe('buildQuery', () => {
  it('repeats array keys and leaves out undefined values', () => {
    expect(buildQuery({ a: 1, b: undefined, label: ['x:1', 'y:2'], on: true })).toBe(
      '?a=1&label=x%3A1&label=y%3A2&on=true',
    );
    expect(buildQuery({})).toBe('');
  });
});
