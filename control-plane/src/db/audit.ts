import { type SQL, sql } from 'drizzle-orm';
import type { SqlDialect } from './sql-dialect.ts';
import { num, strOrNull } from './sql-row.ts';

/*
 * The audit log aggregate, written once for both dialects over SqlDialect (see samples.ts). Rows
 * are appended and read; the only delete is retention by age (`pruneOlderThan`).
 */

export type NewAuditEntry = {
  readonly at: number;
  /** A token id, `device:<id>`, or `system:rollouts`. */
  readonly actor: string;
  readonly actorRole: string;
  readonly action: string;
  readonly resource: string;
  readonly target: string | null;
  readonly requestId: string | null;
  readonly source: string | null;
  readonly status: number | null;
  readonly summary: Readonly<Record<string, unknown>>;
};

export type AuditRecord = NewAuditEntry & { readonly id: number };

export type AuditQuery = {
  readonly actor?: string;
  readonly action?: string;
  readonly resource?: string;
  readonly target?: string;
  /** `at` range, inclusive. */
  readonly from?: number;
  readonly to?: number;
  /** Keyset paging, newest first: rows with ids below this one. */
  readonly beforeId?: number;
  readonly limit: number;
};

export type AuditRepository = {
  append(entries: readonly NewAuditEntry[]): Promise<void>;
  /** Newest first by id. */
  list(query: AuditQuery): Promise<AuditRecord[]>;
  /** Deletes up to `limit` of the oldest entries made before `cutoff`; returns how many. */
  pruneOlderThan(cutoff: number, limit: number): Promise<number>;
};

const COLUMNS = sql.raw('id, at, actor, actor_role, action, resource, target, request_id, source, status, summary');

export function createAuditRepository(dialect: SqlDialect): AuditRepository {
  const toRecord = (row: Record<string, unknown>): AuditRecord => ({
    id: num(row.id),
    at: num(row.at),
    actor: String(row.actor),
    actorRole: String(row.actor_role),
    action: String(row.action),
    resource: String(row.resource),
    target: strOrNull(row.target),
    requestId: strOrNull(row.request_id),
    source: strOrNull(row.source),
    status: row.status === null || row.status === undefined ? null : num(row.status),
    summary: (dialect.readJson(row.summary) ?? {}) as Record<string, unknown>,
  });
  const insert = (entry: NewAuditEntry): SQL =>
    sql`INSERT INTO audit_log (at, actor, actor_role, action, resource, target, request_id, source, status, summary)
      VALUES (${entry.at}, ${entry.actor}, ${entry.actorRole}, ${entry.action}, ${entry.resource}, ${entry.target},
        ${entry.requestId}, ${entry.source}, ${entry.status}, ${dialect.json(entry.summary)})`;
  return {
    async append(entries) {
      if (entries.length === 0) return;
      if (entries.length === 1) await dialect.run(insert(entries[0]!));
      else await dialect.batch(entries.map(insert));
    },
    async list(query) {
      const where: SQL[] = [];
      if (query.actor !== undefined) where.push(sql`actor = ${query.actor}`);
      if (query.action !== undefined) where.push(sql`action = ${query.action}`);
      if (query.resource !== undefined) where.push(sql`resource = ${query.resource}`);
      if (query.target !== undefined) where.push(sql`target = ${query.target}`);
      if (query.from !== undefined) where.push(sql`at >= ${query.from}`);
      if (query.to !== undefined) where.push(sql`at <= ${query.to}`);
      if (query.beforeId !== undefined) where.push(sql`id < ${query.beforeId}`);
      const clause = where.length > 0 ? sql`WHERE ${sql.join(where, sql` AND `)}` : sql``;
      const rows = await dialect.all(
        sql`SELECT ${COLUMNS} FROM audit_log ${clause} ORDER BY id DESC LIMIT ${query.limit}`,
      );
      return rows.map(toRecord);
    },
    async pruneOlderThan(cutoff, limit) {
      return dialect.run(sql`DELETE FROM audit_log WHERE id IN (
        SELECT id FROM audit_log WHERE at < ${cutoff} ORDER BY id LIMIT ${limit})`);
    },
  };
}
