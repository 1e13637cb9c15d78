import { type SQL, sql } from 'drizzle-orm';
import type { SqlDialect } from './sql-dialect.ts';

/*
 * The site view of the fleet, counted in the database: active devices grouped by their `site`
 * label, with counts by status and health per site, a page of sites at a time (keyset by site
 * name, byte order in both dialects). Devices without a site label form one group, `site: null`,
 * first. One query for both dialects; only the collation differs (SqlDialect.byteOrder).
 */

export type SiteCountsRecord = {
  readonly site: string | null;
  readonly total: number;
  readonly online: number;
  readonly offline: number;
  readonly unknown: number;
  readonly healthy: number;
  readonly degraded: number;
};

export type SiteCountsQuery = {
  /**
   * Sites after this one: `{ site: null }` is "after the group without a site" (every named site);
   * absent starts at the beginning (the group without a site first, when there is one).
   */
  readonly after?: { readonly site: string | null };
  readonly limit: number;
};

export async function querySiteCounts(dialect: SqlDialect, query: SiteCountsQuery): Promise<SiteCountsRecord[]> {
  const site = dialect.jsonText(sql.raw('labels'), 'site');
  const bySite = dialect.byteOrder(sql.raw('site'));
  const after =
    query.after === undefined
      ? sql``
      : query.after.site === null
        ? sql`AND site IS NOT NULL`
        : sql`AND ${bySite} > ${query.after.site}`;
  const count = (condition: SQL) => sql`CAST(sum(CASE WHEN ${condition} THEN 1 ELSE 0 END) AS INTEGER)`;
  const rows = await dialect.all(
    sql`SELECT site, CAST(count(*) AS INTEGER) AS "total",
          ${count(sql`status = 'online'`)} AS "online",
          ${count(sql`status = 'offline'`)} AS "offline",
          ${count(sql`status = 'unknown'`)} AS "unknown",
          ${count(sql`health = 'healthy'`)} AS "healthy",
          ${count(sql`health = 'degraded'`)} AS "degraded"
        FROM (SELECT ${site} AS site, status, health FROM devices WHERE revoked_at IS NULL) AS d
        WHERE 1 = 1 ${after}
        GROUP BY site
        ORDER BY ${bySite} ASC NULLS FIRST
        LIMIT ${query.limit}`,
  );
  return rows.map((row) => ({
    site: row.site === null || row.site === undefined ? null : String(row.site),
    total: Number(row.total),
    online: Number(row.online),
    offline: Number(row.offline),
    unknown: Number(row.unknown),
    healthy: Number(row.healthy),
    degraded: Number(row.degraded),
  }));
}
