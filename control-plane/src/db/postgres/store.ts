import type { Store } from '../repositories.ts';
import { createRepositories } from '../store.ts';
import { openPostgres, type PostgresDb } from './database.ts';
import { createPostgresIngestRepository } from './ingest.ts';
import { createPostgresLeaderLock } from './leader-lock.ts';
import { postgresDialect } from './sql-dialect.ts';

export type PostgresStore = Store & { readonly db: PostgresDb };

/**
 * The PostgreSQL store (scale-out path): same repositories, same contract suite. The live-state
 * cache of the ingest writer still assumes one writing control plane per database.
 */
export async function createPostgresStore(options: {
  readonly url: string;
  readonly maxConnections?: number;
}): Promise<PostgresStore> {
  const db = await openPostgres(options.url, options);
  const dialect = postgresDialect(db);
  let closed = false;
  return {
    dialect: 'postgres',
    db,
    ...createRepositories(dialect),
    ingest: createPostgresIngestRepository(db),
    openLeaderLock: (key) => createPostgresLeaderLock({ url: options.url, key }),
    async probeWrite() {
      // Refused in a read-only transaction and on a standby although it changes nothing.
      await db.$client.query('UPDATE devices SET id = id WHERE false');
    },
    async close() {
      if (closed) return;
      closed = true;
      await db.$client.end();
    },
  };
}
