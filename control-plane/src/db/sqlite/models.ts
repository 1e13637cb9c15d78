import { and, asc, eq, gt, type SQL } from 'drizzle-orm';
import type { ModelRepository } from '../repositories.ts';
import { toModelRecord } from '../rows.ts';
import { models } from '../schema.ts';
import type { SqliteDb } from './database.ts';

export function createSqliteModelRepository(db: SqliteDb): ModelRepository {
  return {
    async create(model) {
      return db.transaction((tx) => {
        const inserted = tx.insert(models).values(model).onConflictDoNothing().returning().get();
        if (inserted) return { created: true, model: toModelRecord(inserted) };
        const existing = tx.select().from(models).where(eq(models.id, model.id)).get();
        if (!existing) throw new Error(`model ${model.id} was neither inserted nor found`);
        return { created: false, model: toModelRecord(existing) };
      });
    },

    async get(id) {
      const row = db.select().from(models).where(eq(models.id, id)).get();
      return row ? toModelRecord(row) : null;
    },

    async list(query) {
      const conditions: SQL[] = [];
      if (query.name !== undefined) conditions.push(eq(models.name, query.name));
      if (query.afterId !== undefined) conditions.push(gt(models.id, query.afterId));
      return db
        .select()
        .from(models)
        .where(and(...conditions))
        .orderBy(asc(models.id))
        .limit(query.limit)
        .all()
        .map(toModelRecord);
    },
  };
}
