import {
  ApiError as ApiErrorShape,
  type FleetPipelineSummary,
  FleetSummary,
  SiteList,
  SiteListQuery,
} from '@edgeloop/protocol';
import type { DeviceRepository, FleetCounts } from '../../db/repositories.ts';
import { ApiError } from '../api-error.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { defineRoute, type Route } from '../route.ts';

/** The sites cursor: after a named site (`s`), or after the group without a site (`n: 1`). */
function sitesAfter(cursor: string | undefined): { site: string | null } | undefined {
  if (cursor === undefined) return undefined;
  const value = decodeCursor(cursor, {}) as Record<string, unknown>;
  if (typeof value.s === 'string') return { site: value.s };
  if (value.n === 1) return { site: null };
  throw new ApiError('bad_request', 'cursor is not one this API returned');
}

/** The fleet summary from the device counts: `total` counts enrolled, active devices. */
export function toFleetSummary(counts: FleetCounts, pipeline: FleetPipelineSummary): FleetSummary {
  return {
    total: counts.total,
    online: counts.byStatus.online ?? 0,
    offline: counts.byStatus.offline ?? 0,
    unknown: counts.byStatus.unknown ?? 0,
    healthy: counts.byHealth.healthy ?? 0,
    degraded: counts.byHealth.degraded ?? 0,
    byHealthReason: { ...counts.byHealthReason },
    pipeline,
  };
}

export function fleetRoutes(deps: {
  readonly devices: DeviceRepository;
  readonly pipeline: () => FleetPipelineSummary;
}): Route[] {
  return [
    defineRoute({
      method: 'get',
      path: '/api/v1/fleet/summary',
      summary: "Counts of devices by status, health and health reason, and the online fleet's vision pipelines",
      tag: 'fleet',
      role: 'viewer',
      responses: {
        200: { description: 'the summary', schema: FleetSummary },
        401: { description: 'missing or invalid token', schema: ApiErrorShape },
      },
      async handle({ c }) {
        return c.json(toFleetSummary(await deps.devices.counts(), deps.pipeline()));
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/fleet/sites',
      summary:
        'Devices grouped by their site label, counted by status and health per site, a page of sites at a time (counted in the database, for fleets of any size)',
      tag: 'fleet',
      role: 'viewer',
      query: SiteListQuery,
      responses: {
        200: { description: 'a page of sites', schema: SiteList },
        400: { description: 'a cursor this API did not return', schema: ApiErrorShape },
        401: { description: 'missing or invalid token', schema: ApiErrorShape },
        422: { description: 'invalid query', schema: ApiErrorShape },
      },
      async handle({ c, query }) {
        const after = sitesAfter(query.cursor);
        const rows = await deps.devices.sites({ ...(after ? { after } : {}), limit: query.limit + 1 });
        const items = rows.slice(0, query.limit);
        const last = items.at(-1);
        const nextCursor =
          rows.length > query.limit && last ? encodeCursor(last.site === null ? { n: 1 } : { s: last.site }) : null;
        return c.json({ items, nextCursor });
      },
    }),
  ];
}
