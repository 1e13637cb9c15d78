import { sql } from 'drizzle-orm';
import type { SqlDialect } from './sql-dialect.ts';
import { num, strOrNull } from './sql-row.ts';

/*
 * Idempotency-Key records over SqlDialect (one implementation for both dialects). A key is taken
 * with one conditional INSERT (ON CONFLICT DO NOTHING), so two replicas racing for one key see
 * exactly one winner; the loser reads the row and answers 409 (in flight) or replays it.
 */

export type IdempotencyRecord = {
  readonly actor: string;
  readonly keyHash: string;
  readonly state: 'in-flight' | 'done';
  readonly requestHash: string | null;
  readonly status: number | null;
  /** The stored response (opaque to the repository: ciphertext). */
  readonly response: string | null;
  readonly createdAt: number;
  readonly expiresAt: number;
};

export type IdempotencyBegin = {
  readonly actor: string;
  readonly keyHash: string;
  readonly requestHash: string | null;
  readonly now: number;
  readonly expiresAt: number;
  /** An in-flight record created before this (its request died with its process) is taken over. */
  readonly staleBefore: number;
};

export type IdempotencyRepository = {
  /** Takes the key (`started`), or returns the live record that holds it. */
  begin(
    input: IdempotencyBegin,
  ): Promise<{ readonly started: true } | { readonly started: false; readonly record: IdempotencyRecord }>;
  /** Stores the response of an in-flight key. */
  complete(input: {
    readonly actor: string;
    readonly keyHash: string;
    readonly requestHash: string;
    readonly status: number;
    readonly response: string;
  }): Promise<void>;
  /** Gives the key up (the request failed in a way a retry may mend). */
  release(actor: string, keyHash: string): Promise<void>;
  /** Deletes up to `limit` expired records; returns how many. */
  pruneExpired(now: number, limit: number): Promise<number>;
};

export function createIdempotencyRepository(dialect: SqlDialect): IdempotencyRepository {
  const toRecord = (row: Record<string, unknown>): IdempotencyRecord => ({
    actor: String(row.actor),
    keyHash: String(row.key_hash),
    state: row.state === 'done' ? 'done' : 'in-flight',
    requestHash: strOrNull(row.request_hash),
    status: row.status === null || row.status === undefined ? null : num(row.status),
    response: strOrNull(row.response),
    createdAt: num(row.created_at),
    expiresAt: num(row.expires_at),
  });
  const begin: IdempotencyRepository['begin'] = async (input) => {
    // An expired record, or an in-flight one left by a request that never finished, frees the key.
    await dialect.run(sql`DELETE FROM idempotency_keys WHERE actor = ${input.actor} AND key_hash = ${input.keyHash}
        AND (expires_at <= ${input.now} OR (state = 'in-flight' AND created_at < ${input.staleBefore}))`);
    const inserted = await dialect.run(sql`INSERT INTO idempotency_keys
        (actor, key_hash, state, request_hash, status, response, created_at, expires_at)
        VALUES (${input.actor}, ${input.keyHash}, 'in-flight', ${input.requestHash}, NULL, NULL, ${input.now},
          ${input.expiresAt})
        ON CONFLICT (actor, key_hash) DO NOTHING`);
    if (inserted > 0) return { started: true };
    const rows = await dialect.all(sql`SELECT actor, key_hash, state, request_hash, status, response, created_at,
        expires_at FROM idempotency_keys WHERE actor = ${input.actor} AND key_hash = ${input.keyHash}`);
    const row = rows[0];
    // Deleted between the insert and the read (its request failed): the caller may try again.
    if (!row) return begin(input);
    return { started: false, record: toRecord(row) };
  };
  return {
    begin,
    async complete(input) {
      await dialect.run(sql`UPDATE idempotency_keys SET state = 'done', request_hash = ${input.requestHash},
        status = ${input.status}, response = ${input.response}
        WHERE actor = ${input.actor} AND key_hash = ${input.keyHash} AND state = 'in-flight'`);
    },
    async release(actor, keyHash) {
      await dialect.run(
        sql`DELETE FROM idempotency_keys WHERE actor = ${actor} AND key_hash = ${keyHash} AND state = 'in-flight'`,
      );
    },
    async pruneExpired(now, limit) {
      return dialect.run(sql`DELETE FROM idempotency_keys WHERE (actor, key_hash) IN (
        SELECT actor, key_hash FROM idempotency_keys WHERE expires_at <= ${now} ORDER BY expires_at LIMIT ${limit})`);
    },
  };
}
