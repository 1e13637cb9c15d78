import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SQL } from 'drizzle-orm';
import { afterEach, beforeAll, beforeEach } from 'vitest';
import type { ServiceGate } from '../../test-services.ts';
import { createPostgresStore } from '../src/db/postgres/store.ts';
import type { Store } from '../src/db/repositories.ts';
import { createSqliteStore } from '../src/db/sqlite/store.ts';
import { scratchDatabase } from './postgres-service.ts';

/*
 * The storage dialects a contract-style suite runs over: SQLite (embedded default, a file in a temp
 * dir) and PostgreSQL (scale-out, a database of its own per run), both with the real migrations.
 * A new dialect joins by adding a factory here; every suite that uses these must pass unchanged.
 *
 *   const postgres = serviceGate('postgres'); // in the suite's own file: the global setup finds it there
 *   describe.each(storeDialects({ postgres, prefix: 'sites' }))('...: $name', (dialect) => { ... });
 */

export type StoreDialect = {
  readonly name: string;
  /** Skip reason when the dialect's server is not reachable outside CI; null to run. */
  readonly skip: string | null;
  /** Once per suite (creates the PostgreSQL database); does nothing when skipped. */
  setup(): Promise<void>;
  /** Once per suite (drops it); does nothing when skipped. */
  teardown(): Promise<void>;
  /** A store on the migrated schema; `dispose` closes it (and removes SQLite's dir). */
  create(): Promise<{ store: Store; dispose(): Promise<void> }>;
};

export function storeDialects(options: {
  readonly postgres: ServiceGate;
  /** Names the temp dir (`edgeloop-<prefix>-`) and the database (`edgeloop_<prefix>_…`). */
  readonly prefix: string;
  /** The PostgreSQL pool's size (default 4). */
  readonly maxConnections?: number;
  /**
   * Run on PostgreSQL before each `create` returns: its database lives for the whole suite, so a
   * suite that wants empty tables per test deletes what it writes (DELETE, not TRUNCATE: on tables
   * this small it is far faster, TRUNCATE does file work per table).
   */
  readonly clean?: SQL;
}): readonly StoreDialect[] {
  const { postgres, prefix } = options;
  const sqlite: StoreDialect = {
    name: 'sqlite (file, real migrations)',
    skip: null,
    async setup() {},
    async teardown() {},
    async create() {
      const dir = mkdtempSync(join(tmpdir(), `edgeloop-${prefix}-`));
      const store = createSqliteStore({ dataDir: dir });
      return {
        store,
        async dispose() {
          await store.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
  const database = scratchDatabase(`edgeloop_${prefix}`);
  // Outside CI an unreachable server skips the suite (the run prints why); under CI it fails the run.
  const skip = postgres.run ? null : `PostgreSQL is not reachable at ${postgres.url}: ${postgres.unreachable}`;
  const pg: StoreDialect = {
    name: 'postgres (own database, real migrations)',
    skip,
    async setup() {
      if (!skip) await database.create();
    },
    async teardown() {
      if (!skip) await database.drop();
    },
    async create() {
      const store = await createPostgresStore({
        url: database.url,
        maxConnections: options.maxConnections ?? 4,
      });
      if (options.clean) await store.db.execute(options.clean);
      return { store, dispose: () => store.close() };
    },
  };
  return [sqlite, pg];
}

/**
 * The hooks a suite over one dialect needs: the database for the whole suite, a fresh store per
 * test handed to `opened` (the suite keeps it in its own `let store`), closed after each test. A
 * skipped dialect skips each test with its reason.
 */
export function useDialectStore(dialect: StoreDialect, opened: (store: Store) => void): void {
  let dispose: () => Promise<void> = async () => {};
  beforeAll(async () => {
    if (!dialect.skip) await dialect.setup();
    return async () => {
      if (!dialect.skip) await dialect.teardown();
    };
  }, 30_000);
  beforeEach(async (context) => {
    if (dialect.skip) return context.skip(dialect.skip);
    const created = await dialect.create();
    dispose = created.dispose;
    opened(created.store);
  }, 30_000);
  afterEach(async () => {
    await dispose();
    dispose = async () => {};
  });
}
