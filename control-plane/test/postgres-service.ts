import pg from 'pg';
import { serviceGate } from '../../test-services.ts';

/*
 * The PostgreSQL the suites use: probed once per run by the global setup (test-services.ts). A
 * suite gates itself in its own file, where the global setup finds it:
 *   const postgres = serviceGate('postgres');
 *   describe.skipIf(!postgres.run)(...)
 * and works in a database of its own.
 */

const server = () => serviceGate('postgres').url;

/** Runs one statement on the admin database (CREATE/DROP DATABASE). */
export async function admin(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: server(), connectionTimeoutMillis: 2_000 });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** The URL of database `name` on the same server. */
export function databaseUrl(name: string): string {
  const url = new URL(server());
  url.pathname = `/${name}`;
  return url.toString();
}

/** A database name unique to this process and moment, for one suite. */
export function uniqueDatabaseName(prefix: string): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}`;
}
