import { describe, expect, it } from 'vitest';
import { ApiRequestError, buildQuery, createApiClient } from './client.ts';

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

    expect(result).toEqual({ ok: false, error: { code: 'forbidden', message: 'needs operator' } });
  });

  it('names the status when an error body is not the API shape', async () => {
    const { fetch } = fakeFetch(() => new Response('bad gateway', { status: 502 }));
    const result = await createApiClient({ baseUrl: 'http://cp.test', token: null, fetch }).fleet.summary();
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toMatchObject({ code: 'internal', message: 'HTTP 502: bad gateway' });
  });

  it('refuses an answer that does not match the schema of its route', async () => {
    const { fetch } = fakeFetch(() => json({ items: [{ id: 'cam-1' }], nextCursor: null }));
    const result = await createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch }).devices.list();
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.code).toBe('bad_response');
  });

  it('turns a fetch that throws into a network failure', async () => {
    const fetch = (async () => {
      throw new TypeError('connection refused');
    }) as typeof globalThis.fetch;
    const result = await createApiClient({ baseUrl: 'http://cp.test', token: 't', fetch }).self();
    expect(result).toEqual({
      ok: false,
      error: { code: 'network', message: 'GET /api/v1/tokens/self: connection refused' },
    });
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

describe('buildQuery', () => {
  it('repeats array keys and leaves out undefined values', () => {
    expect(buildQuery({ a: 1, b: undefined, label: ['x:1', 'y:2'], on: true })).toBe(
      '?a=1&label=x%3A1&label=y%3A2&on=true',
    );
    expect(buildQuery({})).toBe('');
  });
});
