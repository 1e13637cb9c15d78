import {
  ApiError as ApiErrorShape,
  CreateEvaluationRequest,
  EvaluationList,
  EvaluationListQuery,
  EvaluationView,
  modelId,
} from '@edgeloop/protocol';
import type { EvaluationService } from '../../models/evaluations.ts';
import { ApiError } from '../api-error.ts';
import { defineRoute, type Route } from '../route.ts';

export type EvaluationRoutesDeps = { readonly service: EvaluationService };

const errors = {
  401: { description: 'missing or invalid token', schema: ApiErrorShape },
  403: { description: 'the token role may not do this', schema: ApiErrorShape },
  404: { description: 'no such model (or dataset version, or baseline model)', schema: ApiErrorShape },
} as const;

export function evaluationRoutes(deps: EvaluationRoutesDeps): Route[] {
  const { service } = deps;
  return [
    defineRoute({
      method: 'post',
      path: '/api/v1/models/:name/:version/evaluations',
      summary:
        'Store an evaluation report of a model on a labelled dataset version (edgeloop-agent eval --post): ' +
        'mAP or accuracy, per class numbers, the champion measured beside it',
      tag: 'models',
      role: 'operator',
      body: CreateEvaluationRequest,
      responses: {
        201: { description: 'stored', schema: EvaluationView },
        ...errors,
        409: {
          description: "the file evaluated is not the registered model's (or the baseline's) sha256",
          schema: ApiErrorShape,
        },
        422: {
          description: 'invalid report, a dataset version without imported labels, or a baseline of another task',
          schema: ApiErrorShape,
        },
      },
      async handle({ c, body, params, token }) {
        const recorded = await service.record(modelId(params.name!, params.version!), body, token?.id ?? null);
        if (!recorded.ok) throw new ApiError(recorded.error.code, recorded.error.message);
        return c.json(recorded.value, 201);
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/models/:name/:version/evaluations',
      summary: "A model's evaluation reports, newest first, optionally on one dataset version",
      tag: 'models',
      role: 'viewer',
      query: EvaluationListQuery,
      responses: { 200: { description: 'the reports (at most 1000)', schema: EvaluationList }, ...errors },
      async handle({ c, params, query }) {
        const listed = await service.list(modelId(params.name!, params.version!), query);
        if (!listed.ok) throw new ApiError(listed.error.code, listed.error.message);
        return c.json({ items: listed.value });
      },
    }),
  ];
}
