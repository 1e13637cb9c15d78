import { createApiClient, SiteList } from '@edgeloop/protocol';
import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { serviceGate } from '../../test-services.ts';
import type { Store } from '../src/db/repositories.ts';
import { initialLiveState } from '../src/device-state.ts';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';
import { storeDialects } from './store-dialects.ts';

/*
 * The fleet's site view counted in the database (GET /api/v1/fleet/sites) and the devices list's
 * active-model filter: one contract over SQLite and PostgreSQL, then the routes over HTTP.
 */

const postgres = serviceGate('postgres');
const T = 1_800_000_000_000;

const dialects = storeDialects({ postgres, prefix: 'sites', maxConnections: 2, clean: sql`DELETE FROM devices` });

/** Devices at sites (one without a site, one revoked), some online or degraded, two running models. */
async function seed(store: Store): Promise<void> {
  const devices: [string, Record<string, string>][] = [
    ['cam-1', { site: 'north' }],
    ['cam-2', { site: 'north' }],
    ['cam-3', { site: 'south' }],
    ['cam-4', {}],
    ['cam-5', { site: 'Zeta' }],
    ['cam-6', { site: 'north' }],
  ];
  for (const [id, labels] of devices) {
    const result = await store.devices.enroll({ id, labels, secretHash: `hash-${id}`, now: T });
    if (!result.ok) throw new Error(result.error.message);
  }
  const model = (name: string, version: string) => ({
    agentVersion: '1',
    model: { active: { id: `${name}-${version}`, name, version, sha256: 'a'.repeat(64) } },
  });
  await store.ingest.commit({
    messages: [],
    deadLetters: [],
    devices: [
      {
        state: { ...initialLiveState('cam-1', T), status: 'online', health: 'healthy' },
        reported: model('det', '1.0.0'),
      },
      {
        state: { ...initialLiveState('cam-2', T), status: 'online', health: 'degraded' },
        reported: model('det', '2.0.0'),
      },
      { state: { ...initialLiveState('cam-3', T), status: 'offline', health: 'offline' }, reported: model('ocr', '1') },
      { state: { ...initialLiveState('cam-4', T), status: 'online', health: 'healthy' } },
    ],
  });
  expect(await store.devices.revoke('cam-6', T + 1)).toBe(true);
}

describe.each(dialects)('fleet sites and the model filter: $name', (factory) => {
  let store: Store;
  let dispose: () => Promise<void>;
  beforeAll(() => factory.setup());
  afterAll(() => factory.teardown());
  beforeEach(async (context) => {
    if (factory.skip) {
      context.skip(factory.skip);
      return;
    }
    ({ store, dispose } = await factory.create());
    await seed(store);
  });
  afterEach(async () => {
    if (!factory.skip) await dispose();
  });

  it('counts active devices per site by status and health, the devices without a site first, in byte order', async () => {
    expect(await store.devices.sites({ limit: 10 })).toEqual([
      { site: null, total: 1, online: 1, offline: 0, unknown: 0, healthy: 1, degraded: 0 },
      { site: 'Zeta', total: 1, online: 0, offline: 0, unknown: 1, healthy: 0, degraded: 0 },
      { site: 'north', total: 2, online: 2, offline: 0, unknown: 0, healthy: 1, degraded: 1 },
      { site: 'south', total: 1, online: 0, offline: 1, unknown: 0, healthy: 0, degraded: 0 },
    ]);
  });

  it('pages the sites by keyset: after the group without a site, then after a named site', async () => {
    const names = async (query: Parameters<Store['devices']['sites']>[0]) =>
      (await store.devices.sites(query)).map((row) => row.site);
    expect(await names({ limit: 2 })).toEqual([null, 'Zeta']);
    expect(await names({ limit: 2, after: { site: null } })).toEqual(['Zeta', 'north']);
    expect(await names({ limit: 2, after: { site: 'Zeta' } })).toEqual(['north', 'south']);
    expect(await names({ limit: 2, after: { site: 'south' } })).toEqual([]);
  });

  it('filters devices by their reported active model, by name or by name and version', async () => {
    const ids = async (model: { name: string; version?: string }) =>
      (await store.devices.list({ limit: 10, model })).map((d) => d.id);
    expect(await ids({ name: 'det' })).toEqual(['cam-1', 'cam-2']);
    expect(await ids({ name: 'det', version: '2.0.0' })).toEqual(['cam-2']);
    expect(await ids({ name: 'ocr' })).toEqual(['cam-3']);
    expect(await ids({ name: 'none' })).toEqual([]);
  });
});

describe('GET /api/v1/fleet/sites and GET /api/v1/devices?model=', () => {
  let t: TestControlPlane;
  beforeAll(async () => {
    t = await startTestControlPlane();
    await seed(t.store);
  });
  afterAll(() => t?.stop());

  it('walks every site with the cursor and answers the schema', async () => {
    const api = createApiClient({
      baseUrl: 'http://cp.test',
      token: t.adminToken,
      fetch: async (input, init) => t.cp.internals.app.request(String(input), init),
    });
    const seen: (string | null)[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 5; page++) {
      const response = await t.raw('GET', `/api/v1/fleet/sites?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      expect(response.status).toBe(200);
      const body = SiteList.parse(await response.json());
      seen.push(...body.items.map((row) => row.site));
      if (!body.nextCursor) break;
      cursor = body.nextCursor;
    }
    expect(seen).toEqual([null, 'Zeta', 'north', 'south']);
    const devices = await api.devices.list({ model: 'det@1.0.0' });
    expect(devices.ok && devices.value.items.map((d) => d.id)).toEqual(['cam-1']);
  });

  it('refuses a cursor it did not hand out, a bad limit and a bad model filter, and needs a token', async () => {
    const bogus = Buffer.from(JSON.stringify({ x: 1 })).toString('base64url');
    expect((await t.raw('GET', `/api/v1/fleet/sites?cursor=${bogus}`)).status).toBe(400);
    expect((await t.raw('GET', '/api/v1/fleet/sites?limit=0')).status).toBe(422);
    expect((await t.raw('GET', '/api/v1/devices?model=a@b@c')).status).toBe(422);
    expect((await t.raw('GET', '/api/v1/fleet/sites', { token: null })).status).toBe(401);
  });

  it('is listed in the OpenAPI document with its query', async () => {
    const doc = (await (await t.raw('GET', '/api/v1/openapi.json')).json()) as {
      paths: Record<string, { get?: { parameters?: { name: string }[] } }>;
    };
    expect(doc.paths['/api/v1/fleet/sites']?.get?.parameters?.map((p) => p.name)).toEqual(['limit', 'cursor']);
    expect(doc.paths['/api/v1/devices']?.get?.parameters?.map((p) => p.name)).toContain('model');
  });
});
