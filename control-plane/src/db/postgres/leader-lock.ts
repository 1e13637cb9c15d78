import pg from 'pg';
import type { LeaderLock } from '../repositories.ts';

/**
 * Leadership across control-plane replicas through a PostgreSQL session-level advisory lock,
 * held on a dedicated connection (not the pool's: a pooled connection goes back to the pool and
 * the lock with it). The lock lives exactly as long as that session: when the process dies or the
 * connection breaks, PostgreSQL releases it and another replica's next acquire() takes over.
 *
 * acquire() while holding checks the session is alive (`SELECT 1`), so a replica that lost its
 * connection notices and stops acting as leader.
 */
export function createPostgresLeaderLock(options: {
  readonly url: string;
  readonly key: number;
  readonly connectTimeoutMs?: number;
}): LeaderLock {
  let client: pg.Client | null = null;
  let held = false;

  const drop = () => {
    const broken = client;
    client = null;
    held = false;
    broken?.end().catch(() => undefined);
  };

  const connect = async (): Promise<pg.Client> => {
    if (client) return client;
    const fresh = new pg.Client({
      connectionString: options.url,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      application_name: 'edgeloop-leader',
    });
    // A broken session loses the lock on the server; forget it here too.
    fresh.on('error', () => {
      if (client === fresh) drop();
    });
    fresh.on('end', () => {
      if (client === fresh) {
        client = null;
        held = false;
      }
    });
    await fresh.connect();
    client = fresh;
    return fresh;
  };

  return {
    async acquire() {
      try {
        const session = await connect();
        if (held) {
          await session.query('SELECT 1');
          return held;
        }
        const result = await session.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [
          options.key,
        ]);
        held = result.rows[0]?.locked === true;
        return held;
      } catch {
        drop();
        return false;
      }
    },
    get held() {
      return held;
    },
    async release() {
      const session = client;
      if (!session) return;
      try {
        if (held) await session.query('SELECT pg_advisory_unlock($1::bigint)', [options.key]);
      } catch {
        // Ending the session releases the lock anyway.
      }
      held = false;
      client = null;
      await session.end().catch(() => undefined);
    },
  };
}
