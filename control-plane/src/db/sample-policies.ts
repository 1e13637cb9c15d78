import { sql } from 'drizzle-orm';
import type { SamplePolicyRecord, SamplePolicyRepository } from './repositories.ts';
import type { SqlDialect } from './sql-dialect.ts';

/*
 * Sample policies by label selector, over the shared SQL dialect layer (see samples.ts). One row
 * per selector, keyed by the selector's canonical JSON.
 */

/** The canonical key of a label selector: its pairs sorted by key, as JSON (`{}` is the fleet). */
export function selectorKey(selector: Readonly<Record<string, string>>): string {
  const sorted: Record<string, string> = {};
  for (const key of Object.keys(selector).sort()) sorted[key] = selector[key] as string;
  return JSON.stringify(sorted);
}

export function createSamplePolicyRepository(dialect: SqlDialect): SamplePolicyRepository {
  const toRecord = (row: Record<string, unknown>): SamplePolicyRecord => ({
    selector: (dialect.readJson(row.selector) ?? {}) as Record<string, string>,
    policy: dialect.readJson(row.policy),
    updatedAt: Number(row.updated_at),
    updatedBy: row.updated_by === null || row.updated_by === undefined ? null : String(row.updated_by),
  });
  return {
    async put(record) {
      const key = selectorKey(record.selector);
      await dialect.run(sql`INSERT INTO sample_policies (selector_key, selector, policy, updated_at, updated_by)
        VALUES (${key}, ${dialect.json(record.selector)}, ${dialect.json(record.policy)}, ${record.updatedAt},
          ${record.updatedBy})
        ON CONFLICT (selector_key) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at,
          updated_by = excluded.updated_by`);
    },
    async remove(selector) {
      return (await dialect.run(sql`DELETE FROM sample_policies WHERE selector_key = ${selectorKey(selector)}`)) > 0;
    },
    async list() {
      const rows = await dialect.all(
        sql`SELECT selector, policy, updated_at, updated_by FROM sample_policies ORDER BY selector_key`,
      );
      return rows.map(toRecord);
    },
  };
}
