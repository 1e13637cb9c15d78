import { and, eq, type SQL, sql } from 'drizzle-orm';
import type { ModelRepository } from './repositories.ts';
import { toModelRecord } from './rows.ts';
import type { SqlDialect } from './sql-dialect.ts';
import { insertRows, rowReader } from './sql-row.ts';

/* The model aggregate (immutable registered versions), written once for both dialects over SqlDialect. */

export function createModelRepository(dialect: SqlDialect): ModelRepository {
  const { models } = dialect.tables;
  const readModel = rowReader(models);
  const modelOf = (row: Record<string, unknown>) => toModelRecord(readModel(row));
  const get = async (id: string) => {
    const [row] = await dialect.all(sql`SELECT * FROM ${models} WHERE ${eq(models.id, id)}`);
    return row ? modelOf(row) : null;
  };

  return {
    async create(model) {
      const [inserted] = await dialect.all(sql`${insertRows(models, [model])} ON CONFLICT (id) DO NOTHING RETURNING *`);
      if (inserted) return { created: true, model: modelOf(inserted) };
      // Models are never deleted: a refused insert means the row is there.
      const existing = await get(model.id);
      if (!existing) throw new Error(`model ${model.id} was neither inserted nor found`);
      return { created: false, model: existing };
    },

    get,

    async list(query) {
      const id = dialect.byteOrder(models.id);
      const conditions: SQL[] = [sql`1 = 1`];
      if (query.name !== undefined) conditions.push(eq(models.name, query.name));
      if (query.afterId !== undefined) conditions.push(sql`${id} > ${query.afterId}`);
      const rows = await dialect.all(
        sql`SELECT * FROM ${models} WHERE ${and(...conditions)} ORDER BY ${id} ASC LIMIT ${query.limit}`,
      );
      return rows.map(modelOf);
    },
  };
}
