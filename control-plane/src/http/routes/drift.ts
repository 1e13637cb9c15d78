import {
  ApiError as ApiErrorShape,
  DriftList,
  DriftQuery,
  DriftState,
  SetDriftReferenceRequest,
} from '@edgeloop/protocol';
import type { DriftMonitor } from '../../drift/monitor.ts';
import { ApiError } from '../api-error.ts';
import { defineRoute, type Route } from '../route.ts';

export type DriftRoutesDeps = { readonly monitor: Pick<DriftMonitor, 'list' | 'setReference'> };

const errors = {
  401: { description: 'missing or invalid token', schema: ApiErrorShape },
  403: { description: 'the token role may not do this', schema: ApiErrorShape },
} as const;

export function driftRoutes(deps: DriftRoutesDeps): Route[] {
  const { monitor } = deps;
  return [
    defineRoute({
      method: 'get',
      path: '/api/v1/drift',
      summary:
        'Drift states of sites and devices per model (band, sustained windows, PSI numbers, reference), worst band first',
      tag: 'drift',
      role: 'viewer',
      query: DriftQuery,
      responses: {
        200: { description: 'the drift states that match', schema: DriftList },
        ...errors,
        422: { description: 'a malformed filter', schema: ApiErrorShape },
      },
      async handle({ c, query }) {
        return c.json(monitor.list(query));
      },
    }),

    defineRoute({
      method: 'put',
      path: '/api/v1/drift/reference',
      summary:
        'Set the drift reference of a site or device for one model: auto (restart the default), a dataset version, or a pinned time range of stored telemetry',
      tag: 'drift',
      role: 'operator',
      body: SetDriftReferenceRequest,
      responses: {
        200: { description: 'stored; the state starts again from stable', schema: DriftState },
        ...errors,
        404: { description: 'no such dataset version', schema: ApiErrorShape },
        422: {
          description: 'a malformed request, or a reference with too few detections (--drift-min-detections)',
          schema: ApiErrorShape,
        },
      },
      async handle({ c, body, token }) {
        const set = await monitor.setReference(body, token?.id ?? null);
        if (!set.ok) {
          throw new ApiError(set.error.code === 'not_found' ? 'not_found' : 'unprocessable', set.error.message);
        }
        return c.json(set.value);
      },
    }),
  ];
}
