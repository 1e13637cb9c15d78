import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceGate } from '../../test-services.ts';
import { createEventRelay, EVENT_RELAY_CHANNEL, type EventRelay, splitParts } from '../src/event-relay.ts';
import { type BusMessage, createEventBus, type EventBus } from '../src/events.ts';
import { createMetricsRegistry, type MetricsRegistry } from '../src/metrics.ts';
import { systemTimers } from '../src/time.ts';
import { eventually, sseEvent, startTestControlPlane, type TestControlPlane } from './harness.ts';
import { admin, scratchDatabase } from './postgres-service.ts';

const postgres = serviceGate('postgres');

/*
 * SSE events across replicas through PostgreSQL LISTEN/NOTIFY (issue 11 §4): relays on a real
 * server, in a database of their own, and two whole control planes sharing one database.
 */

describe('splitParts', () => {
  it('cuts text into parts that join back, never inside a surrogate pair, each under the NOTIFY limit', () => {
    const text = `${'a'.repeat(2399)}😀${'€'.repeat(5000)}😀`;
    const parts = splitParts(text);
    expect(parts.join('')).toBe(text);
    for (const part of parts) {
      expect(part.length).toBeLessThanOrEqual(2400);
      // No lone surrogate at either end of a part.
      expect(Buffer.from(part, 'utf8').toString('utf8')).toBe(part);
      const envelope = JSON.stringify({ o: 'a'.repeat(12), s: 2 ** 40, p: 99, n: 100, d: part });
      expect(Buffer.byteLength(envelope)).toBeLessThan(8000);
    }
    expect(splitParts('')).toEqual(['']);
  });
});

const metricValue = (metrics: MetricsRegistry, line: string) => {
  const found = metrics
    .render()
    .split('\n')
    .find((l) => l.startsWith(`${line} `));
  return found ? Number(found.split(' ').at(-1)) : 0;
};

describe.skipIf(!postgres.run)('event relay over PostgreSQL LISTEN/NOTIFY', () => {
  const database = scratchDatabase('edgeloop_relay');
  const relays: EventRelay[] = [];
  type Replica = { bus: EventBus; metrics: MetricsRegistry; remote: BusMessage[]; local: BusMessage[] };

  beforeAll(async () => {
    await database.create();
  });
  afterAll(async () => {
    for (const relay of relays) await relay.stop();
    await database.drop();
  });

  const replica = async (replicaId: string): Promise<Replica> => {
    const bus = createEventBus({ clock: { now: () => Date.now() } });
    const metrics = createMetricsRegistry();
    const remote: BusMessage[] = [];
    const local: BusMessage[] = [];
    bus.subscribe((message) => remote.push(message), { remote: true });
    bus.subscribe((message) => local.push(message));
    const relay = createEventRelay({
      url: database.url,
      bus,
      logger: pino({ level: 'silent' }),
      metrics,
      timers: systemTimers,
      clock: { now: () => Date.now() },
      replicaId,
      retryMs: 100,
    });
    await relay.start();
    relays.push(relay);
    return { bus, metrics, remote, local };
  };

  it("hands one replica's events to the other's SSE listeners only, once, large ones whole", async () => {
    const a = await replica('replica-a');
    const b = await replica('replica-b');
    a.bus.publish('device.online', { deviceId: 'cam-1', bootId: 'boot-1', cause: 'birth' });
    // 20,000 device ids: about 300 kB of JSON, over a hundred NOTIFY parts.
    const deviceIds = Array.from({ length: 20_000 }, (_, i) => `cam-${String(i).padStart(5, '0')}-é`);
    a.bus.publish('rollout.assigned', { rolloutId: 'r1', stage: 'canary', stageIndex: 0, mode: 'active', deviceIds });
    await eventually(async () => b.remote.length === 2);
    expect(b.remote.map((m) => m.type)).toEqual(['device.online', 'rollout.assigned']);
    expect(b.remote[0]!.data).toEqual({ deviceId: 'cam-1', bootId: 'boot-1', cause: 'birth' });
    expect((b.remote[1]!.data as unknown as { deviceIds: string[] }).deviceIds).toEqual(deviceIds);
    // The components inside replica b never see a's events; a never gets its own back.
    expect(b.local).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(a.remote.map((m) => m.type)).toEqual(['device.online', 'rollout.assigned']);
    expect(a.local).toHaveLength(2);
    expect(metricValue(a.metrics, 'edgeloop_event_relay_sent_total')).toBe(2);
    expect(metricValue(b.metrics, 'edgeloop_event_relay_received_total')).toBe(2);
  });

  it('counts and drops what does not parse or names no event, and keeps relaying', async () => {
    const a = await replica('replica-c');
    const b = await replica('replica-d');
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      for (const payload of [
        'not json',
        JSON.stringify({ o: 'x', s: 1, p: 0, n: 1, d: '{"type":"device.exploded","at":1,"data":{}}' }),
        JSON.stringify({ o: 'x', s: 2, p: 0, n: 1, d: '{"type":"device.online"' }),
        JSON.stringify({ o: 'x', s: 3, p: 5, n: 2, d: '' }),
      ])
        await client.query('SELECT pg_notify($1, $2)', [EVENT_RELAY_CHANNEL, payload]);
    } finally {
      await client.end();
    }
    a.bus.publish('device.offline', { deviceId: 'cam-2', bootId: null, cause: 'silence' });
    await eventually(async () => b.remote.some((m) => m.type === 'device.offline'));
    expect(b.remote.filter((m) => m.type === 'device.offline')).toHaveLength(1);
    expect(metricValue(b.metrics, 'edgeloop_event_relay_dropped_total{cause="malformed"}')).toBe(3);
    expect(metricValue(b.metrics, 'edgeloop_event_relay_dropped_total{cause="unknown-type"}')).toBe(1);
  });

  it('reconnects when its session is killed, and sends what was published meanwhile', async () => {
    const a = await replica('replica-e');
    const b = await replica('replica-f');
    // Only a's session: NOTIFY keeps nothing for a replica that is not listening, so b stays on.
    await admin(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${database.name}' AND application_name = 'edgeloop-events:replica-e'`,
    );
    a.bus.publish('device.online', { deviceId: 'cam-3', bootId: 'boot-3', cause: 'connect' });
    await eventually(async () => b.remote.some((m) => m.type === 'device.online'), 10_000);
    expect(b.remote.find((m) => m.type === 'device.online')!.data).toMatchObject({ deviceId: 'cam-3' });
  });
});

describe.skipIf(!postgres.run)('two control planes on one PostgreSQL database', () => {
  const database = scratchDatabase('edgeloop_replicas');
  let one: TestControlPlane;
  let two: TestControlPlane;

  beforeAll(async () => {
    await database.create();
    one = await startTestControlPlane({ databaseUrl: database.url });
    // Replicas share what the data dir holds besides the database: the pepper that hashes tokens
    // and device secrets (and the blobs), so a token or a device is good on either.
    two = await startTestControlPlane({ databaseUrl: database.url, dataDir: one.dataDir, adminToken: one.adminToken });
  });
  afterAll(async () => {
    await two?.stop();
    await one?.stop();
    await database.drop();
  });

  it('streams to an SSE client of replica 2 a status change replica 1 ingested, within a second', async () => {
    const controller = new AbortController();
    const response = await fetch(`${two.started.httpUrl}/api/v1/events?types=device.online`, {
      headers: { authorization: `Bearer ${one.adminToken}` },
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = decoder.decode((await reader.read()).value);
    expect(text).toContain(': connected');
    const d = await one.device('relay-cam');
    const sent = performance.now();
    await d.send('status', { state: 'online', reason: 'birth' });
    while (!text.includes('event: device.online')) text += decoder.decode((await reader.read()).value);
    const lagMs = performance.now() - sent;
    controller.abort();
    const data = sseEvent(text, 'device.online')!.data as { data: { deviceId: string } };
    expect(data.data.deviceId).toBe('relay-cam');
    expect(lagMs).toBeLessThan(1_000);
  });
});
