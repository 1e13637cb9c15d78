import { and, eq, isNull, sql } from 'drizzle-orm';
import type { ApiRole, ApiToken, ApiTokenRepository } from './repositories.ts';
import { changesOf, rowsOf, type SqlDialect } from './sql-dialect.ts';
import { insertRows, rowReader, setColumns } from './sql-row.ts';

/* The API token aggregate, written once for both dialects over SqlDialect (tokens are stored as keyed hashes). */

export function createApiTokenRepository(dialect: SqlDialect): ApiTokenRepository {
  const { apiTokens } = dialect.tables;
  const live = isNull(apiTokens.revokedAt);
  const rowOf = rowReader(apiTokens);
  const toToken = (row: Record<string, unknown>): ApiToken => {
    const token = rowOf(row);
    return {
      id: token.id,
      name: token.name,
      role: token.role as ApiRole,
      bootstrap: token.bootstrap,
      createdAt: token.createdAt,
      revokedAt: token.revokedAt,
    };
  };
  const insert = (token: Parameters<ApiTokenRepository['create']>[0], bootstrap: boolean) => {
    const { now, ...fields } = token;
    return sql`${insertRows(apiTokens, [{ ...fields, createdAt: now, bootstrap, revokedAt: null }])} RETURNING *`;
  };

  return {
    async create(token) {
      const [row] = await dialect.all(insert(token, false));
      return toToken(row!);
    },

    async findByHash(tokenHash) {
      const [row] = await dialect.all(
        sql`SELECT * FROM ${apiTokens} WHERE ${and(eq(apiTokens.tokenHash, tokenHash), live)}`,
      );
      return row ? { ...toToken(row), tokenHash: rowOf(row).tokenHash } : null;
    },

    async list() {
      const rows = await dialect.all(sql`SELECT * FROM ${apiTokens} ORDER BY ${apiTokens.createdAt} ASC`);
      return rows.map(toToken);
    },

    async revoke(id, now) {
      const changed = await dialect.run(
        sql`UPDATE ${apiTokens} SET ${setColumns(apiTokens, { revokedAt: now })} WHERE ${and(eq(apiTokens.id, id), live)}`,
      );
      return changed > 0;
    },

    async replaceBootstrap(token) {
      return dialect.transaction(function* () {
        yield* changesOf(
          sql`UPDATE ${apiTokens} SET ${setColumns(apiTokens, { revokedAt: token.now })}
              WHERE ${and(eq(apiTokens.bootstrap, true), live)}`,
        );
        // The same secret set again: reactivate its row rather than violate the unique hash.
        yield* changesOf(sql`DELETE FROM ${apiTokens} WHERE ${eq(apiTokens.tokenHash, token.tokenHash)}`);
        const [row] = yield* rowsOf(insert(token, true));
        return toToken(row!);
      });
    },

    async activeAdminCount() {
      const [row] = await dialect.all(
        sql`SELECT count(*) AS n FROM ${apiTokens} WHERE ${and(eq(apiTokens.role, 'admin'), live)}`,
      );
      return Number(row?.n ?? 0);
    },
  };
}
