import { and, count, eq, isNull } from 'drizzle-orm';
import type { ApiRole, ApiToken, ApiTokenRepository } from '../repositories.ts';
import { apiTokens } from '../schema.ts';
import type { SqliteDb } from './database.ts';

type TokenRow = typeof apiTokens.$inferSelect;

function toToken(row: TokenRow): ApiToken {
  return {
    id: row.id,
    name: row.name,
    role: row.role as ApiRole,
    bootstrap: row.bootstrap,
    createdAt: row.createdAt,
    revokedAt: row.revokedAt,
  };
}

export function createSqliteApiTokenRepository(db: SqliteDb): ApiTokenRepository {
  return {
    async create(token) {
      const row = db
        .insert(apiTokens)
        .values({ ...token, createdAt: token.now, bootstrap: false, revokedAt: null })
        .returning()
        .get();
      return toToken(row);
    },

    async findByHash(tokenHash) {
      const row = db
        .select()
        .from(apiTokens)
        .where(and(eq(apiTokens.tokenHash, tokenHash), isNull(apiTokens.revokedAt)))
        .get();
      return row ? { ...toToken(row), tokenHash: row.tokenHash } : null;
    },

    async list() {
      return db.select().from(apiTokens).orderBy(apiTokens.createdAt).all().map(toToken);
    },

    async revoke(id, now) {
      const result = db
        .update(apiTokens)
        .set({ revokedAt: now })
        .where(and(eq(apiTokens.id, id), isNull(apiTokens.revokedAt)))
        .run();
      return result.changes > 0;
    },

    async replaceBootstrap(token) {
      return db.transaction((tx) => {
        tx.update(apiTokens)
          .set({ revokedAt: token.now })
          .where(and(eq(apiTokens.bootstrap, true), isNull(apiTokens.revokedAt)))
          .run();
        // The same secret set again: reactivate its row rather than violate the unique hash.
        tx.delete(apiTokens).where(eq(apiTokens.tokenHash, token.tokenHash)).run();
        const row = tx
          .insert(apiTokens)
          .values({ ...token, createdAt: token.now, bootstrap: true, revokedAt: null })
          .returning()
          .get();
        return toToken(row);
      });
    },

    async activeAdminCount() {
      return (
        db
          .select({ n: count() })
          .from(apiTokens)
          .where(and(eq(apiTokens.role, 'admin'), isNull(apiTokens.revokedAt)))
          .get()?.n ?? 0
      );
    },
  };
}
