import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { serviceGate } from '../../test-services.ts';

/*
 * The PostgreSQL the suites use: probed once per run by the global setup (test-services.ts). A
 * suite gates itself in its own file, where the global setup finds it:
 *   const postgres = serviceGate('postgres');
 *   describe.skipIf(!postgres.run)(...)
 * and works in a database of its own (scratchDatabase).
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

/** A database of its own on the shared server, for one suite (or one test): created and dropped here. */
export type ScratchDatabase = {
  readonly name: string;
  readonly url: string;
  create(): Promise<void>;
  /** Drops it, closing whatever sessions are still on it. */
  drop(): Promise<void>;
};

/** A scratch database named `<prefix>_<pid>_<random>`, unique to this call (several per process are fine). */
export function scratchDatabase(prefix: string): ScratchDatabase {
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`;
  return {
    name,
    url: databaseUrl(name),
    create: () => admin(`CREATE DATABASE ${name}`),
    drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}
