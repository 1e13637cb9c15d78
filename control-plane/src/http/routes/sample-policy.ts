import {
  ApiError as ApiErrorShape,
  SamplePolicyList,
  SetSamplePolicyRequest,
  SetSamplePolicyResponse,
} from '@edgeloop/protocol';
import type { SamplePolicyService } from '../../samples/policies.ts';
import { defineRoute, type Route } from '../route.ts';

export type SamplePolicyRoutesDeps = { readonly service: SamplePolicyService };

const errors = {
  401: { description: 'missing or invalid token', schema: ApiErrorShape },
  403: { description: 'the token role may not do this', schema: ApiErrorShape },
} as const;

export function samplePolicyRoutes(deps: SamplePolicyRoutesDeps): Route[] {
  const { service } = deps;
  return [
    defineRoute({
      method: 'put',
      path: '/api/v1/sample-policy',
      summary:
        'Set the sample policy of every device a label selector matches (empty: the whole fleet), now and enrolled later; delivered in desired state',
      tag: 'samples',
      role: 'operator',
      body: SetSamplePolicyRequest,
      responses: {
        200: { description: 'stored and published to the matching devices', schema: SetSamplePolicyResponse },
        ...errors,
        422: {
          description: 'a malformed policy or selector (the zod issues); nothing is stored',
          schema: ApiErrorShape,
        },
      },
      async handle({ c, body, token }) {
        return c.json(await service.set(body, token?.id ?? null));
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/sample-policy',
      summary: 'The stored sample policies by label selector',
      tag: 'samples',
      role: 'viewer',
      responses: { 200: { description: 'every selector policy', schema: SamplePolicyList }, ...errors },
      async handle({ c }) {
        return c.json({ items: await service.list() });
      },
    }),
  ];
}
