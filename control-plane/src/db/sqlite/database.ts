import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { type BetterSQLite3Database, drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { checkIntegrity, DatabaseCorruptError, type IntegrityCheck, isCorruption } from './integrity.ts';

/** The committed drizzle-kit migrations (control-plane/drizzle). */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../../drizzle/sqlite', import.meta.url));

export type SqliteDb = BetterSQLite3Database & { $client: Database.Database };

/**
 * Opens (creating if needed) a SQLite database and applies the migrations.
 * WAL with synchronous=NORMAL: a committed transaction survives a crash of the process (SIGKILL);
 * only a power loss can take the last few commits. busy_timeout covers another reader (a backup,
 * the sqlite3 shell) holding a lock for a moment.
 *
 * Before the migrations the file passes `integrityCheck` (default quick, see integrity.ts). A file
 * that fails it, or that SQLite finds damaged or not a database while opening or migrating,
 * throws a DatabaseCorruptError naming it (and nothing else is done to the file).
 */
export function openSqlite(file: string, options: { readonly integrityCheck?: IntegrityCheck } = {}): SqliteDb {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const corrupt = (error: unknown): error is Error =>
    isCorruption(error) || isCorruption((error as { cause?: unknown } | null)?.cause);
  let client: Database.Database;
  try {
    client = new Database(file);
  } catch (error) {
    if (corrupt(error)) throw new DatabaseCorruptError(file, error.message, { cause: error });
    throw error;
  }
  try {
    client.pragma('journal_mode = WAL');
    client.pragma('synchronous = NORMAL');
    client.pragma('busy_timeout = 5000');
    client.pragma('foreign_keys = ON');
    const problem = checkIntegrity(client, options.integrityCheck ?? 'quick');
    if (problem !== null) throw new DatabaseCorruptError(file, problem);
    const db = drizzle({ client });
    migrate(db, { migrationsFolder: MIGRATIONS_FOLDER });
    return db;
  } catch (error) {
    client.close();
    if (corrupt(error)) throw new DatabaseCorruptError(file, error.message, { cause: error });
    throw error;
  }
}
