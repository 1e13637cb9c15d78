import { ApiError as ApiErrorShape, HealthzResponse, ReadyzResponse } from '@edgeloop/protocol';
import type { DeviceRepository } from '../../db/repositories.ts';
import type { Gauge, MetricsRegistry } from '../../metrics.ts';
import { defineRoute, type Route } from '../route.ts';

export type SystemRoutesDeps = {
  readonly devices: DeviceRepository;
  readonly metrics: MetricsRegistry;
  readonly version: string;
  readonly startedAt: number;
  readonly clock: { now(): number };
  readonly status: () => { connectedClients: number; queueDepth: number };
  /** The readiness checks (readiness.ts); GET /readyz is served only with them. */
  readonly readiness?: () => Promise<ReadyzResponse>;
};

export function systemRoutes(deps: SystemRoutesDeps): Route[] {
  const byStatus: Gauge = deps.metrics.gauge('edgeloop_devices_by_status', 'Active devices by status');
  const byHealth: Gauge = deps.metrics.gauge('edgeloop_devices_by_health', 'Active devices by health');
  return [
    defineRoute({
      method: 'get',
      path: '/healthz',
      summary: 'Liveness: the HTTP server answers',
      tag: 'system',
      role: null,
      responses: { 200: { description: 'up', schema: HealthzResponse } },
      handle({ c }) {
        const status = deps.status();
        return c.json({
          status: 'ok',
          version: deps.version,
          uptimeS: Math.round((deps.clock.now() - deps.startedAt) / 1000),
          mqtt: { connectedClients: status.connectedClients },
          ingest: { queueDepth: status.queueDepth },
        });
      },
    }),
    ...(deps.readiness ? [readyzRoute(deps.readiness)] : []),
    defineRoute({
      method: 'get',
      path: '/metrics',
      summary: 'Prometheus metrics (text format)',
      tag: 'system',
      role: 'viewer',
      responses: {
        200: { description: 'metrics', contentType: 'text/plain; version=0.0.4' },
        401: { description: 'missing or invalid token', schema: ApiErrorShape },
      },
      async handle({ c }) {
        const counts = await deps.devices.counts();
        for (const status of ['online', 'offline', 'unknown']) byStatus.set(counts.byStatus[status] ?? 0, { status });
        for (const health of ['healthy', 'degraded', 'offline', 'unknown']) {
          byHealth.set(counts.byHealth[health] ?? 0, { health });
        }
        return c.text(deps.metrics.render(), 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      },
    }),
  ];
}

/** Readiness: 200 only when every check passes, else 503 naming each failing check (no token, like /healthz). */
function readyzRoute(readiness: () => Promise<ReadyzResponse>): Route {
  return defineRoute({
    method: 'get',
    path: '/readyz',
    summary: 'Readiness: the database is writable, free disk is above the watermark, MQTT listens, ingest commits',
    tag: 'system',
    role: null,
    responses: {
      200: { description: 'ready: every check passes', schema: ReadyzResponse },
      503: { description: 'not ready: `failing` names each failing check, `checks` says why', schema: ReadyzResponse },
    },
    async handle({ c }) {
      const { ok, failing, checks, error } = await readiness();
      const body: ReadyzResponse = { ok, failing, checks, ...(error ? { error } : {}) };
      return c.json(body, ok ? 200 : 503, { 'cache-control': 'no-store' });
    },
  });
}
