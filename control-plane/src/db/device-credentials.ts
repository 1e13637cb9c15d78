import { sql } from 'drizzle-orm';
import type { DeviceCredential, DeviceCredentialRepository } from './repositories.ts';
import type { SqlDialect } from './sql-dialect.ts';
import { num, strOrNull } from './sql-row.ts';

/*
 * Device secrets with rotation, written once for both dialects (plain SQL through SqlDialect).
 * Each write is one UPDATE, so it is atomic without a transaction: the right-hand sides of an
 * UPDATE read the row as it was (SQLite and PostgreSQL alike), which lets beginRotation promote an
 * expired pending secret and set the new one in the same statement.
 */

const COLUMNS = sql.raw('secret_hash, secret_hash_next, secret_next_deadline');

function toCredential(row: Record<string, unknown>): DeviceCredential {
  const deadline = row.secret_next_deadline;
  return {
    secretHash: String(row.secret_hash),
    secretHashNext: strOrNull(row.secret_hash_next),
    secretNextDeadline: deadline === null || deadline === undefined ? null : num(deadline),
  };
}

export function createDeviceCredentialRepository(dialect: SqlDialect): DeviceCredentialRepository {
  return {
    async get(id) {
      const [row] = await dialect.all(sql`SELECT ${COLUMNS} FROM devices WHERE id = ${id} AND revoked_at IS NULL`);
      return row ? toCredential(row) : null;
    },

    async beginRotation({ id, secretHashNext, deadline, now }) {
      const [row] = await dialect.all(sql`
        UPDATE devices SET
          secret_hash = CASE
            WHEN secret_hash_next IS NOT NULL AND secret_next_deadline IS NOT NULL AND secret_next_deadline <= ${now}
            THEN secret_hash_next ELSE secret_hash END,
          secret_hash_next = ${secretHashNext},
          secret_next_deadline = ${deadline}
        WHERE id = ${id} AND revoked_at IS NULL
        RETURNING ${COLUMNS}`);
      return row ? toCredential(row) : null;
    },

    async promote(id, secretHashNext) {
      const changed = await dialect.run(sql`
        UPDATE devices SET secret_hash = secret_hash_next, secret_hash_next = NULL, secret_next_deadline = NULL
        WHERE id = ${id} AND revoked_at IS NULL AND secret_hash_next = ${secretHashNext}`);
      return changed > 0;
    },
  };
}
