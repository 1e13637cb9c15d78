import { ApiError as ApiErrorShape, LineageQuery, ModelLineage, modelId } from '@edgeloop/protocol';
import type { LineageService } from '../../models/lineage.ts';
import type { ModelRegistry } from '../../models/registry.ts';
import { ApiError } from '../api-error.ts';
import { defineRoute, type Route } from '../route.ts';

export type LineageRoutesDeps = {
  readonly registry: Pick<ModelRegistry, 'getById'>;
  readonly lineage: Pick<LineageService, 'walk'>;
};

export function lineageRoutes(deps: LineageRoutesDeps): Route[] {
  return [
    defineRoute({
      method: 'get',
      path: '/api/v1/models/:name/:version/lineage',
      summary:
        "A model's lineage both ways: its dataset version's samples, the dataset (and the versions it labels), " +
        'the retraining run and the parent chain upstream; its rollouts with their gate verdicts per stage and ' +
        'final state, and its child models, downstream',
      tag: 'models',
      role: 'viewer',
      query: LineageQuery,
      responses: {
        200: { description: 'the lineage', schema: ModelLineage },
        401: { description: 'missing or invalid token', schema: ApiErrorShape },
        403: { description: 'the token role may not do this', schema: ApiErrorShape },
        404: { description: 'no such model', schema: ApiErrorShape },
        422: { description: 'a bad depth', schema: ApiErrorShape },
      },
      async handle({ c, params, query }) {
        const id = modelId(params.name!, params.version!);
        const model = await deps.registry.getById(id);
        if (!model) throw new ApiError('not_found', `no model ${id}`);
        return c.json(await deps.lineage.walk(model, query.depth));
      },
    }),
  ];
}
