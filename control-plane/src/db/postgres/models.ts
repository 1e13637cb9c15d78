import { and, asc, eq, type SQL, sql } from 'drizzle-orm';
import type { ModelRepository } from '../repositories.ts';
import { toModelRecord } from '../rows.ts';
import type { PostgresDb } from './database.ts';
import { models } from './schema.ts';

export function createPostgresModelRepository(db: PostgresDb): ModelRepository {
  return {
    async create(model) {
      const [inserted] = await db.insert(models).values(model).onConflictDoNothing().returning();
      if (inserted) return { created: true, model: toModelRecord(inserted) };
      const [existing] = await db.select().from(models).where(eq(models.id, model.id));
      if (!existing) throw new Error(`model ${model.id} was neither inserted nor found`);
      return { created: false, model: toModelRecord(existing) };
    },

    async get(id) {
      const [row] = await db.select().from(models).where(eq(models.id, id));
      return row ? toModelRecord(row) : null;
    },

    async list(query) {
      const conditions: SQL[] = [];
      if (query.name !== undefined) conditions.push(eq(models.name, query.name));
      if (query.afterId !== undefined) conditions.push(sql`${models.id} COLLATE "C" > ${query.afterId}`);
      const rows = await db
        .select()
        .from(models)
        .where(and(...conditions))
        // Byte order, as SQLite compares, so paging agrees across dialects.
        .orderBy(asc(sql`${models.id} COLLATE "C"`))
        .limit(query.limit);
      return rows.map(toModelRecord);
    },
  };
}
