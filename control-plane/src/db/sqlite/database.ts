import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { type BetterSQLite3Database, drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';

/** The committed drizzle-kit migrations (control-plane/drizzle). */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../../drizzle/sqlite', import.meta.url));

export type SqliteDb = BetterSQLite3Database & { $client: Database.Database };

/**
 * Opens (creating if needed) a SQLite database and applies the migrations.
 * WAL with synchronous=NORMAL: a committed transaction survives a crash of the process (SIGKILL);
 * only a power loss can take the last few commits. busy_timeout covers another reader (a backup,
 * the sqlite3 shell) holding a lock for a moment.
 */
export function openSqlite(file: string): SqliteDb {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const client = new Database(file);
  client.pragma('journal_mode = WAL');
  client.pragma('synchronous = NORMAL');
  client.pragma('busy_timeout = 5000');
  client.pragma('foreign_keys = ON');
  const db = drizzle({ client });
  migrate(db, { migrationsFolder: MIGRATIONS_FOLDER });
  return db;
}
