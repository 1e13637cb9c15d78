import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceGate } from '../../test-services.ts';
import { createPostgresStore, type PostgresStore } from '../src/db/postgres/store.ts';
import { createEventBus } from '../src/events.ts';
import { createMetricsRegistry } from '../src/metrics.ts';
import { createRolloutEngine, ROLLOUT_LEADER_LOCK_KEY, type RolloutEngine } from '../src/rollouts/engine.ts';
import type { Timers } from '../src/time.ts';
import { admin, scratchDatabase } from './postgres-service.ts';

const postgres = serviceGate('postgres');

/*
 * Exactly one replica drives rollouts: two engines on one PostgreSQL database (real server, a
 * database of its own), each with its own pool and its own leader connection. Skipped outside CI
 * (with a printed reason) when no PostgreSQL answers; under CI that fails the run.
 */

const manualTimers: Timers = { setInterval: () => ({}), clearInterval: () => {} };

describe.skipIf(!postgres.run)('rollout leadership on PostgreSQL', () => {
  const database = scratchDatabase('edgeloop_leader');
  const stores: PostgresStore[] = [];

  beforeAll(async () => {
    await database.create();
  });
  afterAll(async () => {
    for (const store of stores) await store.close();
    await database.drop();
  });

  const engine = async (): Promise<RolloutEngine> => {
    const store = await createPostgresStore({ url: database.url, maxConnections: 2 });
    stores.push(store);
    return createRolloutEngine({
      store,
      fleet: { setDesired: async () => null },
      bus: createEventBus({ clock: { now: () => Date.now() } }),
      clock: { now: () => Date.now() },
      timers: manualTimers,
      metrics: createMetricsRegistry(),
      logger: pino({ level: 'silent' }),
      lock: store.openLeaderLock(ROLLOUT_LEADER_LOCK_KEY),
      tickMs: 500,
      leaderRetryMs: 0,
    });
  };

  it('lets only one of two engines tick, and the other take over when the leader stops', async () => {
    const a = await engine();
    const b = await engine();
    const reports = [];
    for (let i = 0; i < 5; i++) reports.push(await a.tick(), await b.tick());
    const leaders = reports.map((report) => report.leader);
    expect(leaders).toEqual([true, false, true, false, true, false, true, false, true, false]);
    expect(a.isLeader).toBe(true);
    expect(b.isLeader).toBe(false);
    // The lock is a real PostgreSQL advisory lock held by a session of its own.
    const held = await stores[0]!.db.$client.query(
      "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted",
    );
    expect(held.rows[0].n).toBe(1);

    await a.stop();
    expect((await a.tick()).leader).toBe(false);
    expect((await b.tick()).leader).toBe(true);
    expect(b.isLeader).toBe(true);
    await b.stop();
  });

  it('gives leadership up when its session dies, so another replica can lead', async () => {
    const a = await engine();
    const b = await engine();
    expect((await a.tick()).leader).toBe(true);
    expect((await b.tick()).leader).toBe(false);
    // Kill the leader's session from outside (a network failure or a crashed replica looks alike).
    await admin(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${database.name}' AND application_name = 'edgeloop-leader' AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)`,
    );
    // The server released the lock with the session: the other replica takes it.
    let bLeads = false;
    for (let i = 0; i < 50 && !bLeads; i++) {
      bLeads = (await b.tick()).leader;
      if (!bLeads) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(bLeads).toBe(true);
    // The old leader finds its session gone, stands down, and cannot take the lock back.
    expect((await a.tick()).leader).toBe(false);
    expect(a.isLeader).toBe(false);
    expect((await a.tick()).leader).toBe(false);
    expect((await b.tick()).leader).toBe(true);
    await a.stop();
    await b.stop();
  });
});
