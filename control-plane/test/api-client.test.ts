import { type ApiClient, createApiClient, type ServerEvent, unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SYSTEM, startTestControlPlane, type TestControlPlane } from './harness.ts';
import { createSigningKit, type SigningKit } from './model-fixtures.ts';

/*
 * The one typed client (protocol/src/client.ts) against a real control plane over real HTTP:
 * every answer it parses is the server's own, so a route and its schema drifting apart fails here.
 */

let t: TestControlPlane;
let kit: SigningKit;
let admin: ApiClient;
let viewer: ApiClient;
let modelId: string;

beforeAll(async () => {
  kit = createSigningKit();
  t = await startTestControlPlane({ trustedKeys: kit.publicKeyPath });
  // Over the real socket (the harness's own clients go through app.request).
  admin = createApiClient({ baseUrl: t.started.httpUrl, token: t.adminToken });
  viewer = createApiClient({ baseUrl: t.started.httpUrl, token: (await t.createToken('viewer', 'reader')).secret });
  for (const [i, site] of ['north', 'south', 'north'].entries()) {
    const device = await t.device(`client-cam-${i}`, { labels: { site, fleet: 'c' } });
    await device.send('status', { state: 'online', reason: 'birth', keepaliveS: 30 });
    await device.send('telemetry', { intervalS: 10, system: SYSTEM });
  }
  const bytes = kit.modelBytes(3000);
  const signed = await kit.sign(bytes, { name: 'det', version: '1.0.0', adapter: 'yolo' }, { releaseCounter: 1 });
  await unwrap(admin.models.upload({ release: JSON.stringify(signed), model: new Blob([bytes]) }));
  modelId = 'det@1.0.0';
}, 60_000);

afterAll(async () => {
  await t?.stop();
  kit?.dispose();
});

describe('the typed API client against a real control plane', () => {
  it("tells each token's own name and role", async () => {
    expect(await admin.self()).toMatchObject({ ok: true, value: { role: 'admin' } });
    expect(await viewer.self()).toMatchObject({ ok: true, value: { name: 'reader', role: 'viewer' } });
    const anonymous = await createApiClient({ baseUrl: t.started.httpUrl, token: null }).self();
    expect(anonymous).toMatchObject({ ok: false, error: { code: 'unauthorized' } });
  });

  it('reads the fleet summary, device pages, one device, its telemetry and messages', async () => {
    await expect
      .poll(async () => {
        const summary = await viewer.fleet.summary();
        return summary.ok ? summary.value.online : -1;
      })
      .toBe(3);
    const north = await viewer.devices.list({ label: ['site:north'], limit: 1 });
    expect(north.ok && north.value.items.map((d) => d.id)).toEqual(['client-cam-0']);
    const all: string[] = [];
    for await (const device of viewer.devices.each({ limit: 1 })) all.push(device.id);
    expect(all.sort()).toEqual(['client-cam-0', 'client-cam-1', 'client-cam-2']);
    await expect
      .poll(async () => {
        const detail = await viewer.devices.get('client-cam-1');
        return detail.ok && detail.value.telemetry !== null;
      })
      .toBe(true);
    const telemetry = await viewer.devices.telemetry('client-cam-1', { limit: 10 });
    expect(telemetry.ok && telemetry.value.items).toHaveLength(1);
    const messages = await viewer.devices.messages('client-cam-1', { channel: 'status' });
    expect(messages.ok && messages.value.items[0]?.channel).toBe('status');
    expect(await viewer.devices.get('nope')).toMatchObject({ ok: false, error: { code: 'not_found' } });
  });

  it('reads models and plans a rollout without creating it; a viewer may not plan one', async () => {
    const models = await viewer.models.list();
    expect(models.ok && models.value.items.map((m) => m.id)).toEqual([modelId]);
    expect(await viewer.models.get('det', '1.0.0')).toMatchObject({ ok: true, value: { id: modelId } });
    const spec = { modelId, selector: { labels: { fleet: 'c' } } };
    const plan = await admin.rollouts.plan(spec);
    expect(plan).toMatchObject({ ok: true, value: { dryRun: true, targetDevices: 3 } });
    expect(await viewer.rollouts.plan(spec)).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect(await viewer.rollouts.list()).toEqual({ ok: true, value: { items: [], nextCursor: null } });
  });

  it('creates a rollout, walks its events and devices, and aborts it', async () => {
    const created = await admin.rollouts.create({ modelId, selector: { labels: { fleet: 'c' } } });
    expect(created.ok).toBe(true);
    if (!created.ok) return;
    const id = created.value.id;
    expect((await viewer.rollouts.get(id)).ok).toBe(true);
    const types: string[] = [];
    for await (const event of viewer.rollouts.eachEvent(id, { limit: 1 })) types.push(event.type);
    expect(types[0]).toBe('created');
    const devices = await viewer.rollouts.devices(id);
    expect(devices.ok).toBe(true);
    expect(await viewer.rollouts.act(id, 'abort')).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect(await admin.rollouts.act(id, 'abort', 'client test')).toMatchObject({
      ok: true,
      value: { id, status: 'aborted' },
    });
    expect(await admin.rollouts.act(id, 'pause')).toMatchObject({ ok: false, error: { code: 'conflict' } });
  });

  it('streams server events until its signal aborts', async () => {
    const controller = new AbortController();
    const seen: ServerEvent[] = [];
    let opened!: () => void;
    const open = new Promise<void>((resolve) => {
      opened = resolve;
    });
    const reading = (async () => {
      for await (const event of viewer.events({
        types: ['device.enrolled'],
        signal: controller.signal,
        onOpen: opened,
      })) {
        seen.push(event);
        controller.abort();
      }
    })();
    await open;
    await t.enroll('client-late');
    await reading;
    expect(seen).toMatchObject([{ type: 'device.enrolled', data: { deviceId: 'client-late' } }]);
  });
});
