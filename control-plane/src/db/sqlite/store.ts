import { join } from 'node:path';
import type { Store } from '../repositories.ts';
import { createRepositories } from '../store.ts';
import { openSqlite, type SqliteDb } from './database.ts';
import { createSqliteIngestRepository } from './ingest.ts';
import type { IntegrityCheck } from './integrity.ts';
import { createSqliteLeaderLock } from './leader-lock.ts';
import { sqliteDialect } from './sql-dialect.ts';

export const SQLITE_FILE = 'edgeloop.db';

export type SqliteStore = Store & { readonly db: SqliteDb };

/** The embedded store: `<dataDir>/edgeloop.db` (or `:memory:`), migrated. */
export function createSqliteStore(options: {
  readonly dataDir?: string;
  readonly file?: string;
  /** The integrity check before the migrations (default quick); a damaged file throws DatabaseCorruptError. */
  readonly integrityCheck?: IntegrityCheck;
}): SqliteStore {
  const file = options.file ?? join(options.dataDir ?? '.', SQLITE_FILE);
  const db = openSqlite(file, options.integrityCheck ? { integrityCheck: options.integrityCheck } : {});
  const ingest = createSqliteIngestRepository(db);
  const dialect = sqliteDialect(db);
  return {
    dialect: 'sqlite',
    db,
    ...createRepositories(dialect),
    ingest,
    openLeaderLock: () => createSqliteLeaderLock(),
    async probeWrite() {
      const client = db.$client;
      // A transaction under way (better-sqlite3 is synchronous: only one opened by this code) writes already.
      if (client.inTransaction) return;
      client.exec('BEGIN IMMEDIATE; ROLLBACK');
    },
    async close() {
      await ingest.close();
      if (db.$client.open) db.$client.close();
    },
  };
}
