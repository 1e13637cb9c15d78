import { fileURLToPath } from 'node:url';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';

/** The committed drizzle-kit migrations for PostgreSQL (control-plane/drizzle/postgres). */
export const POSTGRES_MIGRATIONS_FOLDER = fileURLToPath(new URL('../../../drizzle/postgres', import.meta.url));

export type PostgresDb = NodePgDatabase & { $client: pg.Pool };

/** Connects a pool to `url` and applies the migrations. */
export async function openPostgres(
  url: string,
  options: { readonly maxConnections?: number } = {},
): Promise<PostgresDb> {
  const pool = new pg.Pool({ connectionString: url, max: options.maxConnections ?? 10 });
  const db = drizzle({ client: pool });
  try {
    await migrate(db, { migrationsFolder: POSTGRES_MIGRATIONS_FOLDER });
  } catch (error) {
    await pool.end();
    throw error;
  }
  return db;
}
