import { fileURLToPath } from 'node:url';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';

/** The committed drizzle-kit migrations for PostgreSQL (control-plane/drizzle/postgres). */
export const POSTGRES_MIGRATIONS_FOLDER = fileURLToPath(new URL('../../../drizzle/postgres', import.meta.url));

export type PostgresDb = NodePgDatabase & { $client: pg.Pool };

/**
 * Connects a pool to `url` and applies the migrations. An idle pooled connection that the server
 * ends (a restart, a failover, an administrator's terminate) is an `error` event on the pool: without
 * a listener it would crash the process. The pool drops that client and the next query opens a new
 * one, so the error is only reported (`onIdleError`), never thrown.
 */
export async function openPostgres(
  url: string,
  options: { readonly maxConnections?: number; readonly onIdleError?: (error: Error) => void } = {},
): Promise<PostgresDb> {
  const pool = new pg.Pool({ connectionString: url, max: options.maxConnections ?? 10 });
  pool.on('error', (error) => options.onIdleError?.(error));
  const db = drizzle({ client: pool });
  try {
    await migrate(db, { migrationsFolder: POSTGRES_MIGRATIONS_FOLDER });
  } catch (error) {
    await pool.end();
    throw error;
  }
  return db;
}
