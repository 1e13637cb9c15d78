import {
  CommandResponse,
  Desired,
  DeviceDetail,
  DeviceList,
  FleetSummary,
  MessageList,
  messageId,
  TelemetryHistory,
  topicFor,
} from '@edgeloop/protocol';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, newBootId, SYSTEM, sseEvent, startTestControlPlane, type TestControlPlane } from './harness.ts';

let t: TestControlPlane;
let viewerToken: string;
let operatorToken: string;

beforeAll(async () => {
  t = await startTestControlPlane({ http: { bodyLimitBytes: 64 * 1024 } });
  viewerToken = (await t.createToken('viewer', 'dashboard')).secret;
  operatorToken = (await t.createToken('operator', 'ops')).secret;
});

afterAll(async () => {
  await t.stop();
});

async function errorOf(response: Response) {
  const body = (await response.json()) as { error: { code: string; message: string } };
  expect(Object.keys(body)).toEqual(['error']);
  expect(typeof body.error.message).toBe('string');
  return { status: response.status, code: body.error.code };
}

describe('authentication and errors', () => {
  it('answers /healthz without a token', async () => {
    const response = await t.raw('GET', '/healthz', { token: null });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: 'ok', mqtt: { connectedClients: expect.any(Number) } });
  });

  it('refuses a missing or invalid token with 401 and a viewer write with 403', async () => {
    expect(await errorOf(await t.raw('GET', '/api/v1/devices', { token: null }))).toEqual({
      status: 401,
      code: 'unauthorized',
    });
    expect(await errorOf(await t.raw('GET', '/metrics', { token: null }))).toEqual({
      status: 401,
      code: 'unauthorized',
    });
    expect(await errorOf(await t.raw('GET', '/api/v1/devices', { token: 'elt_not-a-real-token-at-all' }))).toEqual({
      status: 401,
      code: 'unauthorized',
    });
    expect(
      await errorOf(
        await t.raw('POST', '/api/v1/devices', { token: viewerToken, body: { id: 'viewer-made', labels: {} } }),
      ),
    ).toEqual({ status: 403, code: 'forbidden' });
    expect(
      await errorOf(
        await t.raw('POST', '/api/v1/devices', { token: operatorToken, body: { id: 'ops-made', labels: {} } }),
      ),
    ).toEqual({ status: 403, code: 'forbidden' });
    expect((await t.raw('GET', '/api/v1/devices', { token: viewerToken })).status).toBe(200);
  });

  it('maps bad JSON to 400, schema errors to 422, unknown ids and routes to 404, duplicates to 409', async () => {
    expect(await errorOf(await t.raw('POST', '/api/v1/devices', { raw: '{"id": "x",' }))).toEqual({
      status: 400,
      code: 'bad_request',
    });
    expect(
      await errorOf(await t.raw('POST', '/api/v1/devices', { body: { id: 'ok-id', labels: { 'Bad Key': 'v' } } })),
    ).toEqual({
      status: 422,
      code: 'unprocessable',
    });
    expect(await errorOf(await t.raw('GET', '/api/v1/devices/no-such-device'))).toEqual({
      status: 404,
      code: 'not_found',
    });
    expect(await errorOf(await t.raw('GET', '/api/v1/nothing-here'))).toEqual({ status: 404, code: 'not_found' });
    await t.enroll('twice');
    expect(await errorOf(await t.raw('POST', '/api/v1/devices', { body: { id: 'twice', labels: {} } }))).toEqual({
      status: 409,
      code: 'conflict',
    });
  });

  it('refuses a body over the limit with 413', async () => {
    const huge = { id: 'too-big', labels: {}, padding: 'x'.repeat(70 * 1024) };
    expect(await errorOf(await t.raw('POST', '/api/v1/devices', { body: huge }))).toEqual({
      status: 413,
      code: 'payload_too_large',
    });
  });

  it('refuses bad query parameters and foreign cursors', async () => {
    expect((await errorOf(await t.raw('GET', '/api/v1/devices?limit=501'))).status).toBe(422);
    expect((await errorOf(await t.raw('GET', '/api/v1/devices?status=sleepy'))).status).toBe(422);
    expect((await errorOf(await t.raw('GET', '/api/v1/devices?cursor=bm9wZQ'))).status).toBe(400);
  });
});

describe('devices', () => {
  let camA: Awaited<ReturnType<TestControlPlane['device']>>;

  beforeAll(async () => {
    camA = await t.device('list-cam-a', { labels: { site: 'north', hw: 'orin-nano' } });
    await camA.send('status', { state: 'online', reason: 'birth', agentVersion: '0.1.0', keepaliveS: 30 });
    await camA.send('telemetry', {
      intervalS: 10,
      system: { ...SYSTEM, temperatures: { cpuC: 97, gpuC: null } },
    });
    const camB = await t.device('list-cam-b', { labels: { site: 'north', hw: 'rpi5' } });
    await camB.send('status', { state: 'online', reason: 'birth' });
    await camB.send('telemetry', { intervalS: 10, system: SYSTEM });
    await t.enroll('list-cam-c', { site: 'south' });
    for (let i = 0; i < 7; i++) await t.enroll(`page-dev-${i}`, { group: 'paging' });
  });

  it('enrolls with credentials and the MQTT endpoint, shown once', async () => {
    const response = await t.raw('POST', '/api/v1/devices', { body: { id: 'fresh-cam', labels: { site: 'east' } } });
    expect(response.status).toBe(201);
    const body = (await response.json()) as {
      device: { id: string; status: string; labels: Record<string, string> };
      credentials: { clientId: string; username: string; password: string };
      mqtt: { host: string; port: number; url: string };
    };
    expect(body.device).toMatchObject({ id: 'fresh-cam', status: 'unknown', labels: { site: 'east' } });
    expect(body.credentials).toMatchObject({ clientId: 'fresh-cam', username: 'fresh-cam' });
    expect(body.mqtt).toEqual({ host: '127.0.0.1', port: t.started.mqttPort, url: t.started.mqttUrl });
    const detail = JSON.stringify(await (await t.raw('GET', '/api/v1/devices/fresh-cam')).json());
    expect(detail).not.toContain(body.credentials.password);
  });

  it('filters by status, health and labels', async () => {
    const list = async (query: string) =>
      DeviceList.parse(await (await t.raw('GET', `/api/v1/devices?${query}`)).json()).items.map((d) => d.id);
    expect(await list('label=site:north')).toEqual(['list-cam-a', 'list-cam-b']);
    expect(await list('label=site:north&label=hw:rpi5')).toEqual(['list-cam-b']);
    expect(await list('status=online&label=site:north')).toEqual(['list-cam-a', 'list-cam-b']);
    expect(await list('health=degraded')).toEqual(['list-cam-a']);
    expect(await list('health=healthy&label=site:north')).toEqual(['list-cam-b']);
    expect(await list('status=unknown&label=site:south')).toEqual(['list-cam-c']);
    const items = DeviceList.parse(await (await t.raw('GET', '/api/v1/devices?health=degraded')).json()).items;
    expect(items[0]).toMatchObject({ healthReasons: ['high-temperature'], agentVersion: '0.1.0', bootId: camA.bootId });
  });

  it('pages with an opaque cursor without gaps or repeats', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query = `label=group:paging&limit=3${cursor ? `&cursor=${cursor}` : ''}`;
      const page: DeviceList = DeviceList.parse(await (await t.raw('GET', `/api/v1/devices?${query}`)).json());
      expect(page.items.length).toBeLessThanOrEqual(3);
      seen.push(...page.items.map((d) => d.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(Array.from({ length: 7 }, (_, i) => `page-dev-${i}`));
  });

  it('shows one device with its latest telemetry and patches its labels', async () => {
    const detail = DeviceDetail.parse(await (await t.raw('GET', '/api/v1/devices/list-cam-a')).json());
    expect(detail.device.status).toBe('online');
    expect(detail.keepaliveS).toBe(30);
    expect(detail.telemetry?.message.system.temperatures.cpuC).toBe(97);

    const patched = await t.raw('PATCH', '/api/v1/devices/list-cam-a', {
      token: operatorToken,
      body: { labels: { hw: null, room: '12' } },
    });
    expect(patched.status).toBe(200);
    expect(((await patched.json()) as { labels: Record<string, string> }).labels).toEqual({
      site: 'north',
      room: '12',
    });
    const tooMany = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, 'v']));
    expect((await t.raw('PATCH', '/api/v1/devices/list-cam-a', { body: { labels: tooMany } })).status).toBe(422);
    expect((await t.raw('PATCH', '/api/v1/devices/nobody-here', { body: { labels: {} } })).status).toBe(404);
  });

  it('serves telemetry history and messages, newest first, with paging', async () => {
    const d = await t.device('history-cam');
    for (let i = 0; i < 5; i++) await d.send('telemetry', { intervalS: 10, system: SYSTEM, ts: 1_700_000_000_000 + i });
    await d.send('events', { type: 'camera.fault', severity: 'warning', message: 'lens' });
    const first = TelemetryHistory.parse(
      await (await t.raw('GET', '/api/v1/devices/history-cam/telemetry?limit=3')).json(),
    );
    expect(first.items.map((i) => i.message.ts)).toEqual([1_700_000_000_004, 1_700_000_000_003, 1_700_000_000_002]);
    const second = TelemetryHistory.parse(
      await (await t.raw('GET', `/api/v1/devices/history-cam/telemetry?limit=3&cursor=${first.nextCursor}`)).json(),
    );
    expect(second.items.map((i) => i.message.ts)).toEqual([1_700_000_000_001, 1_700_000_000_000]);
    expect(second.nextCursor).toBeNull();
    // `before` is the control plane's receive time (the device's ts is data, not the order).
    const newest = first.items[0]!.receivedAt;
    const oldest = second.items[1]!.receivedAt;
    const beforeAll = TelemetryHistory.parse(
      await (await t.raw('GET', `/api/v1/devices/history-cam/telemetry?before=${newest + 1}`)).json(),
    );
    expect(beforeAll.items).toHaveLength(5);
    const beforeOldest = TelemetryHistory.parse(
      await (await t.raw('GET', `/api/v1/devices/history-cam/telemetry?before=${oldest}`)).json(),
    );
    expect(beforeOldest.items).toHaveLength(0);
    const events = MessageList.parse(
      await (await t.raw('GET', '/api/v1/devices/history-cam/messages?channel=events')).json(),
    );
    expect(events.items).toHaveLength(1);
    expect(events.items[0]?.body).toMatchObject({ type: 'camera.fault', message: 'lens' });
  });

  it('summarises the fleet', async () => {
    const summary = FleetSummary.parse(
      await (await t.raw('GET', '/api/v1/fleet/summary', { token: viewerToken })).json(),
    );
    const all = DeviceList.parse(await (await t.raw('GET', '/api/v1/devices?limit=500')).json()).items;
    expect(summary.total).toBe(all.length);
    expect(summary.online).toBe(all.filter((d) => d.status === 'online').length);
    expect(summary.degraded).toBe(all.filter((d) => d.health === 'degraded').length);
    expect(summary.byHealthReason['high-temperature']).toBe(1);
    expect(summary.online + summary.offline + summary.unknown).toBe(summary.total);
  });

  it("sums the online fleet's vision pipelines from their latest telemetry", async () => {
    const window = (fps: number, p95: number, provider: string, frozen: boolean) => ({
      windowS: 10,
      framesIn: fps * 10 + 5,
      framesProcessed: fps * 10,
      framesDropped: 5,
      inferenceErrors: 1,
      fps,
      latencyMs: { inference: { count: fps * 10, p50: p95 / 2, p95, p99: p95, max: p95 } },
      detectionsPer1000: { person: 2000 },
      confidenceHistogram: Array.from({ length: 20 }, () => 0),
      nearThresholdShare: 0,
      lastInferenceAt: Date.now(),
      provider: { requested: ['cuda', 'cpu'], active: provider },
      model: { id: 'det@1.0.0', name: 'det', version: '1.0.0', sha256: 'a'.repeat(64) },
      camera: { black: false, frozen, blurred: false, sceneChange: false, brightness: 100, sharpness: 300 },
    });
    const before = FleetSummary.parse(await (await t.raw('GET', '/api/v1/fleet/summary')).json()).pipeline;
    const a = await t.device('pipe-cam-a');
    const b = await t.device('pipe-cam-b');
    await a.send('telemetry', { intervalS: 10, system: SYSTEM, pipeline: window(10, 40, 'cuda', false) });
    await b.send('telemetry', { intervalS: 10, system: SYSTEM, pipeline: window(20, 80, 'cpu', true) });
    const after = FleetSummary.parse(await (await t.raw('GET', '/api/v1/fleet/summary')).json()).pipeline;
    expect(after.devicesReporting - before.devicesReporting).toBe(2);
    expect(after.framesProcessed - before.framesProcessed).toBe(300);
    expect(after.fps - before.fps).toBeCloseTo(30);
    expect(after.inferenceP95Ms.max).toBeGreaterThanOrEqual(80);
    expect((after.providers.cuda ?? 0) - (before.providers.cuda ?? 0)).toBe(1);
    expect((after.models['det@1.0.0'] ?? 0) - (before.models['det@1.0.0'] ?? 0)).toBe(2);
    expect(after.cameraFaults.frozen - before.cameraFaults.frozen).toBe(1);
    expect(after.detectionsPer1000.person).toBeGreaterThan(0);
  });
});

describe('desired state and commands', () => {
  function nextMessage(client: MqttClient, topic: string): Promise<{ payload: Buffer; retain: boolean }> {
    return new Promise((resolve) => {
      const onMessage = (received: string, payload: Buffer, packet: { retain: boolean }) => {
        if (received !== topic) return;
        client.off('message', onMessage);
        resolve({ payload, retain: packet.retain });
      };
      client.on('message', onMessage);
    });
  }

  it('stores a new desired version and delivers it retained, also to a device that subscribes later', async () => {
    const d = await t.device('desired-cam');
    const first = await t.raw('PUT', '/api/v1/devices/desired-cam/desired', {
      token: operatorToken,
      body: { telemetryIntervalS: 5 },
    });
    expect(first.status).toBe(200);
    const second = await t.raw('PUT', '/api/v1/devices/desired-cam/desired', { body: { config: { fps: 10 } } });
    const { desired } = (await second.json()) as { desired: Desired };
    expect(desired).toMatchObject({ version: 2, telemetryIntervalS: 5, config: { fps: 10 } });
    const topic = topicFor('desired-cam', 'desired');
    const delivered = nextMessage(d.client, topic);
    await d.client.subscribeAsync(topic, { qos: 1 });
    const message = await delivered;
    expect(message.retain).toBe(true);
    expect(Desired.parse(JSON.parse(message.payload.toString()))).toEqual(desired);
    const detail = DeviceDetail.parse(await (await t.raw('GET', '/api/v1/devices/desired-cam')).json());
    expect(detail.desired).toEqual(desired);
    expect((await t.raw('PUT', '/api/v1/devices/desired-cam/desired', { body: { nonsense: 1 } })).status).toBe(422);
    expect((await t.raw('PUT', '/api/v1/devices/no-such/desired', { body: {} })).status).toBe(404);
  });

  it('sends a command and returns the device reply', async () => {
    const d = await t.device('command-cam');
    await d.answerCommands((command) => ({ ok: true, data: { pong: command.args } }));
    const response = await t.raw('POST', '/api/v1/devices/command-cam/commands', {
      token: operatorToken,
      body: { name: 'ping', args: { n: 1 } },
    });
    expect(response.status).toBe(200);
    const { reply } = CommandResponse.parse(await response.json());
    expect(reply).toMatchObject({ ok: true, data: { pong: { n: 1 } } });
    expect(await t.store.messages.count('command-cam', reply.msgId)).toBe(1);
  });

  it('answers 504 when the device does not reply and 409 when it is offline', async () => {
    const d = await t.device('silent-cam');
    await d.client.subscribeAsync(topicFor('silent-cam', 'cmd'), { qos: 1 });
    const late = await t.raw('POST', '/api/v1/devices/silent-cam/commands', { body: { name: 'ping', timeoutMs: 150 } });
    expect(await errorOf(late)).toEqual({ status: 504, code: 'timeout' });
    await t.enroll('never-connected');
    const offline = await t.raw('POST', '/api/v1/devices/never-connected/commands', { body: { name: 'ping' } });
    expect(await errorOf(offline)).toEqual({ status: 409, code: 'conflict' });
    const bad = await t.raw('POST', '/api/v1/devices/silent-cam/commands', { body: { name: 'Not Kebab' } });
    expect(bad.status).toBe(422);
  });
});

describe('tokens and dead letters', () => {
  it('creates, lists and revokes tokens; a revoked token stops working', async () => {
    const created = await t.raw('POST', '/api/v1/tokens', { body: { name: 'temp', role: 'viewer' } });
    expect(created.status).toBe(201);
    const { token, secret } = (await created.json()) as { token: { id: string; role: string }; secret: string };
    expect(secret).toMatch(/^elt_/);
    expect((await t.raw('GET', '/api/v1/fleet/summary', { token: secret })).status).toBe(200);
    const listText = await (await t.raw('GET', '/api/v1/tokens')).text();
    expect(listText).toContain(token.id);
    expect(listText).not.toContain(secret);
    expect(listText).not.toMatch(/hash/i);
    expect((await t.raw('GET', '/api/v1/tokens', { token: secret })).status).toBe(403);
    expect((await t.raw('DELETE', `/api/v1/tokens/${token.id}`)).status).toBe(204);
    expect((await t.raw('GET', '/api/v1/fleet/summary', { token: secret })).status).toBe(401);
    expect((await t.raw('DELETE', `/api/v1/tokens/${token.id}`)).status).toBe(404);
    expect((await t.raw('POST', '/api/v1/tokens', { body: { name: 'root2', role: 'admin' } })).status).toBe(422);
  });

  it('refuses to revoke the last admin token', async () => {
    const list = (await (await t.raw('GET', '/api/v1/tokens')).json()) as {
      items: { id: string; role: string; revokedAt: number | null }[];
    };
    const admin = list.items.find((token) => token.role === 'admin' && token.revokedAt === null)!;
    expect(await errorOf(await t.raw('DELETE', `/api/v1/tokens/${admin.id}`))).toEqual({
      status: 409,
      code: 'conflict',
    });
  });

  it('lists dead letters for admins only, newest first with paging', async () => {
    const d = await t.device('dead-letter-cam');
    for (let i = 0; i < 3; i++)
      await d.client.publishAsync(topicFor('dead-letter-cam', 'events'), `nope ${i}`, { qos: 1 });
    expect((await t.raw('GET', '/api/v1/dead-letters', { token: operatorToken })).status).toBe(403);
    const page = (await (await t.raw('GET', '/api/v1/dead-letters?deviceId=dead-letter-cam&limit=2')).json()) as {
      items: { id: number; reason: string }[];
      nextCursor: string | null;
    };
    expect(page.items).toHaveLength(2);
    expect(page.items[0]!.id).toBeGreaterThan(page.items[1]!.id);
    const rest = (await (
      await t.raw('GET', `/api/v1/dead-letters?deviceId=dead-letter-cam&cursor=${page.nextCursor}`)
    ).json()) as {
      items: unknown[];
      nextCursor: string | null;
    };
    expect(rest.items).toHaveLength(1);
    expect(rest.nextCursor).toBeNull();
  });
});

describe('events and OpenAPI', () => {
  it('streams device.online over Server-Sent Events when a device connects', async () => {
    const controller = new AbortController();
    const response = await fetch(`${t.started.httpUrl}/api/v1/events?types=device.online,device.offline`, {
      headers: { authorization: `Bearer ${viewerToken}` },
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    await reader.read().then(({ value }) => {
      text += decoder.decode(value);
    });
    expect(text).toContain(': connected');
    const d = await t.device('sse-cam');
    await d.send('status', { state: 'online', reason: 'birth' });
    await eventually(async () => {
      const { value } = await reader.read();
      text += decoder.decode(value);
      return text.includes('event: device.online');
    });
    const { block, data } = sseEvent(text, 'device.online')!;
    expect(data).toMatchObject({ type: 'device.online', data: { deviceId: 'sse-cam', cause: 'connect' } });
    expect(block).toMatch(/\nid: \d+/);
    controller.abort();
  });

  it('refuses unknown event types', async () => {
    expect((await t.raw('GET', '/api/v1/events?types=device.exploded')).status).toBe(422);
  });

  it('publishes an OpenAPI 3.1 document listing every route with schemas', async () => {
    const response = await t.raw('GET', '/api/v1/openapi.json', { token: null });
    expect(response.status).toBe(200);
    const doc = (await response.json()) as {
      openapi: string;
      paths: Record<
        string,
        Record<string, { requestBody?: unknown; responses: Record<string, unknown>; parameters?: { name: string }[] }>
      >;
    };
    expect(doc.openapi).toBe('3.1.0');
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(operations.sort()).toEqual(
      [
        'GET /healthz',
        'GET /readyz',
        'GET /metrics',
        'POST /api/v1/devices',
        'GET /api/v1/devices',
        'GET /api/v1/devices/{id}',
        'PATCH /api/v1/devices/{id}',
        'DELETE /api/v1/devices/{id}',
        'GET /api/v1/devices/{id}/telemetry',
        'GET /api/v1/devices/{id}/messages',
        'PUT /api/v1/devices/{id}/desired',
        'POST /api/v1/devices/{id}/commands',
        'POST /api/v1/devices/{id}/credentials/rotate',
        'GET /api/v1/fleet/sites',
        'GET /api/v1/fleet/summary',
        'GET /api/v1/events',
        'GET /api/v1/dead-letters',
        'POST /api/v1/tokens',
        'GET /api/v1/tokens',
        'GET /api/v1/tokens/self',
        'DELETE /api/v1/tokens/{id}',
        'GET /api/v1/openapi.json',
        'POST /api/v1/models',
        'GET /api/v1/models',
        'GET /api/v1/models/{name}/{version}',
        'GET /api/v1/models/{name}/{version}/file',
        'GET /api/v1/models/{name}/{version}/lineage',
        'POST /api/v1/models/{name}/{version}/evaluations',
        'GET /api/v1/models/{name}/{version}/evaluations',
        'POST /api/v1/rollouts',
        'GET /api/v1/rollouts',
        'GET /api/v1/rollouts/{id}',
        'GET /api/v1/rollouts/{id}/events',
        'GET /api/v1/rollouts/{id}/devices',
        'POST /api/v1/rollouts/{id}/pause',
        'POST /api/v1/rollouts/{id}/resume',
        'POST /api/v1/rollouts/{id}/abort',
        'POST /api/v1/rollouts/{id}/promote',
        'POST /api/v1/samples',
        'POST /api/v1/samples/uploads',
        'GET /api/v1/samples/uploads/{id}',
        'PATCH /api/v1/samples/uploads/{id}',
        'GET /api/v1/samples',
        'GET /api/v1/samples/{id}',
        'GET /api/v1/samples/{id}/image',
        'GET /api/v1/samples/{id}/thumbnail',
        'DELETE /api/v1/devices/{id}/samples',
        'POST /api/v1/datasets',
        'GET /api/v1/audit',
        'GET /api/v1/datasets',
        'GET /api/v1/datasets/{id}',
        'PUT /api/v1/datasets/{id}/labels',
        'GET /api/v1/datasets/{id}/export',
        'PUT /api/v1/sample-policy',
        'GET /api/v1/sample-policy',
        'GET /api/v1/drift',
        'PUT /api/v1/drift/reference',
        'PUT /api/v1/retraining/policies/{modelName}',
        'GET /api/v1/retraining/policies/{modelName}',
        'GET /api/v1/retraining/policies',
        'GET /api/v1/retraining/runs',
        'POST /api/v1/retraining/runs',
        'GET /api/v1/retraining/runs/{runId}',
        'POST /api/v1/retraining/runs/{runId}/claim',
        'POST /api/v1/retraining/runs/{runId}/complete',
      ].sort(),
    );
    const enroll = doc.paths['/api/v1/devices']!.post!;
    expect(JSON.stringify(enroll.requestBody)).toContain('labels');
    expect(Object.keys(enroll.responses)).toEqual(
      expect.arrayContaining(['201', '400', '401', '403', '409', '413', '422']),
    );
    expect(doc.paths['/api/v1/devices']!.get!.parameters!.map((p) => p.name)).toEqual(
      expect.arrayContaining(['status', 'health', 'label', 'limit', 'cursor']),
    );
  });
});

describe('metrics', () => {
  it('exposes ingest, broker, auth and device gauges', async () => {
    const d = await t.device('metrics-cam');
    const bootId = newBootId();
    await d.send('telemetry', { intervalS: 10, system: SYSTEM, bootId, msgId: messageId(bootId, 1), seq: 1 });
    const text = await (await t.raw('GET', '/metrics', { token: viewerToken })).text();
    for (const name of [
      'edgeloop_ingest_accepted_total{channel="telemetry"}',
      'edgeloop_ingest_queue_depth',
      'edgeloop_ingest_flush_max_seconds',
      'edgeloop_event_loop_delay_p99_seconds',
      'edgeloop_event_loop_delay_max_seconds',
      'edgeloop_mqtt_connected_clients',
      'edgeloop_http_auth_failures_total{reason="missing"}',
      'edgeloop_devices_by_status{status="online"}',
      'edgeloop_devices_by_health{health="degraded"}',
    ]) {
      expect(text, name).toMatch(new RegExp(`^${name.replace(/[{}".]/g, '\\$&')} [0-9.e+-]+$`, 'm'));
    }
  });
});
