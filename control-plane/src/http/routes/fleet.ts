import { ApiError as ApiErrorShape, type FleetPipelineSummary, FleetSummary } from '@edgeloop/protocol';
import type { DeviceRepository, FleetCounts } from '../../db/repositories.ts';
import { defineRoute, type Route } from '../route.ts';

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
  ];
}
