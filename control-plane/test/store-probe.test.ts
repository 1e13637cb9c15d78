import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceGate } from '../../test-services.ts';
import type { PostgresStore } from '../src/db/postgres/store.ts';
import type { Store } from '../src/db/repositories.ts';
import type { SqliteStore } from '../src/db/sqlite/store.ts';
import { storeDialects } from './store-dialects.ts';

/*
 * Store.probeWrite, the database check of GET /readyz: it resolves on a writable database, writes
 * nothing, and rejects when a write would be refused. Over SQLite and PostgreSQL (real migrations).
 * One connection for PostgreSQL, so a session setting applies to the probe's connection.
 */

const postgres = serviceGate('postgres');
const dialects = storeDialects({ postgres, prefix: 'probe', maxConnections: 1 });

/** Makes the store refuse writes until the returned function is called. */
function refuseWrites(store: Store): Promise<() => Promise<void>> | (() => Promise<void>) {
  if (store.dialect === 'sqlite') {
    // Another connection holds the write lock (a backup, the sqlite3 shell); a short busy timeout.
    const client = (store as SqliteStore).db.$client;
    const other = new Database(client.name);
    client.pragma('busy_timeout = 50');
    other.exec('BEGIN IMMEDIATE');
    return async () => {
      other.exec('ROLLBACK');
      other.close();
      client.pragma('busy_timeout = 5000');
    };
  }
  const pool = (store as PostgresStore).db.$client;
  return pool.query('SET default_transaction_read_only = on').then(() => async () => {
    await pool.query('SET default_transaction_read_only = off');
  });
}

describe.each(dialects)('Store.probeWrite: $name', (dialect) => {
  let store: Store;
  let dispose: () => Promise<void> = async () => {};

  beforeAll(async () => {
    if (dialect.skip) return;
    await dialect.setup();
    ({ store, dispose } = await dialect.create());
  }, 30_000);
  afterAll(async () => {
    await dispose();
    await dialect.teardown();
  });

  it.skipIf(dialect.skip !== null)('resolves on a writable database and changes nothing', async () => {
    const before = await store.devices.counts();
    await expect(store.probeWrite()).resolves.toBeUndefined();
    expect(await store.devices.counts()).toEqual(before);
  });

  it.skipIf(dialect.skip !== null)(
    'rejects while the database would refuse a write, and resolves again after',
    async () => {
      const restore = await refuseWrites(store);
      try {
        await expect(store.probeWrite()).rejects.toThrow(/database is locked|read-only transaction/);
      } finally {
        await restore();
      }
      await expect(store.probeWrite()).resolves.toBeUndefined();
    },
  );
});
