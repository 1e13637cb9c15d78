import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, SYSTEM, startTestControlPlane, type TestControlPlane } from './harness.ts';

/*
 * The whole control plane on PostgreSQL (--database-url): enrollment, MQTT ingest with dedupe,
 * live state and the API, against a database created and dropped here. Outside CI the file is
 * skipped when no PostgreSQL answers; CI starts one (.ci/run), so there it must pass.
 */

const adminUrl = process.env.EDGELOOP_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

async function reachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}

async function admin(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

const available = (await reachable()) || Boolean(process.env.CI);

describe.skipIf(!available)('control plane on PostgreSQL', () => {
  const database = `edgeloop_cp_${process.pid}_${Date.now().toString(36)}`;
  let t: TestControlPlane;

  beforeAll(async () => {
    await admin(`CREATE DATABASE ${database}`);
    const url = new URL(adminUrl);
    url.pathname = `/${database}`;
    t = await startTestControlPlane({ databaseUrl: url.toString() });
  });

  afterAll(async () => {
    await t?.stop();
    await admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  });

  it('enrolls, ingests exactly once and serves the device over the API', async () => {
    expect(t.cp.internals.store.dialect).toBe('postgres');
    const d = await t.device('pg-cam', { labels: { site: 'pg' } });
    await d.send('status', { state: 'online', reason: 'birth', keepaliveS: 30 });
    const first = await d.send('telemetry', { intervalS: 10, system: SYSTEM });
    await d.send('telemetry', { intervalS: 10, system: SYSTEM, msgId: first.msgId, seq: first.seq });
    const store = t.cp.internals.store;
    expect(await store.messages.count('pg-cam')).toBe(2);
    const response = await t.api('GET', '/api/v1/devices/pg-cam');
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      device: { status: 'online', health: 'healthy', labels: { site: 'pg' } },
      telemetry: { message: { msgId: first.msgId } },
    });
    const summary = (await (await t.api('GET', '/api/v1/fleet/summary')).json()) as { online: number };
    expect(summary.online).toBe(1);
    await d.client.endAsync();
    await eventually(async () => (await store.devices.get('pg-cam'))?.status === 'offline');
  });
});
