import { and, asc, count, eq, isNull } from 'drizzle-orm';
import type { ApiRole, ApiToken, ApiTokenRepository } from '../repositories.ts';
import type { PostgresDb } from './database.ts';
import { apiTokens } from './schema.ts';

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

export function createPostgresApiTokenRepository(db: PostgresDb): ApiTokenRepository {
  return {
    async create(token) {
      const [row] = await db
        .insert(apiTokens)
        .values({ ...token, createdAt: token.now, bootstrap: false, revokedAt: null })
        .returning();
      return toToken(row!);
    },

    async findByHash(tokenHash) {
      const [row] = await db
        .select()
        .from(apiTokens)
        .where(and(eq(apiTokens.tokenHash, tokenHash), isNull(apiTokens.revokedAt)));
      return row ? { ...toToken(row), tokenHash: row.tokenHash } : null;
    },

    async list() {
      return (await db.select().from(apiTokens).orderBy(asc(apiTokens.createdAt))).map(toToken);
    },

    async revoke(id, now) {
      const revoked = await db
        .update(apiTokens)
        .set({ revokedAt: now })
        .where(and(eq(apiTokens.id, id), isNull(apiTokens.revokedAt)))
        .returning({ id: apiTokens.id });
      return revoked.length > 0;
    },

    async replaceBootstrap(token) {
      return db.transaction(async (tx) => {
        await tx
          .update(apiTokens)
          .set({ revokedAt: token.now })
          .where(and(eq(apiTokens.bootstrap, true), isNull(apiTokens.revokedAt)));
        await tx.delete(apiTokens).where(eq(apiTokens.tokenHash, token.tokenHash));
        const [row] = await tx
          .insert(apiTokens)
          .values({ ...token, createdAt: token.now, bootstrap: true, revokedAt: null })
          .returning();
        return toToken(row!);
      });
    },

    async activeAdminCount() {
      const [row] = await db
        .select({ n: count() })
        .from(apiTokens)
        .where(and(eq(apiTokens.role, 'admin'), isNull(apiTokens.revokedAt)));
      return row?.n ?? 0;
    },
  };
}
