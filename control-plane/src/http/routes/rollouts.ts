import {
  ApiError as ApiErrorShape,
  CreateRolloutRequest,
  RolloutActionRequest,
  RolloutDeviceList,
  RolloutDeviceQuery,
  RolloutDryRun,
  RolloutEventList,
  RolloutEventQuery,
  RolloutList,
  RolloutListQuery,
  RolloutView,
} from '@edgeloop/protocol';
import type { RolloutAction, RolloutService } from '../../rollouts/service.ts';
import { ApiError } from '../api-error.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { defineRoute, type Route } from '../route.ts';

export type RolloutRoutesDeps = { readonly service: RolloutService };

const errors = {
  401: { description: 'missing or invalid token', schema: ApiErrorShape },
  403: { description: 'the token lacks the role', schema: ApiErrorShape },
  404: { description: 'no such rollout', schema: ApiErrorShape },
  422: { description: 'invalid request', schema: ApiErrorShape },
} as const;

const ACTIONS: Readonly<Record<RolloutAction, string>> = {
  pause: 'Pause: no new assignments and no verdicts until resumed (devices keep what they have)',
  resume: 'Resume a paused rollout; gate evaluation starts afresh',
  abort: 'Abort: every device that got the model is sent back to its previous model',
  promote: 'Operator override: advance to the next stage now (completes after the last), recorded as an event',
};

export function rolloutRoutes(deps: RolloutRoutesDeps): Route[] {
  const { service } = deps;

  const requireRollout = async (id: string) => {
    const rollout = await service.get(id);
    if (!rollout) throw new ApiError('not_found', `no rollout ${id}`);
    return rollout;
  };

  return [
    defineRoute({
      method: 'post',
      path: '/api/v1/rollouts',
      summary: 'Start a rollout of a registered model to the devices a selector matches; dryRun returns the plan only',
      tag: 'rollouts',
      role: 'operator',
      body: CreateRolloutRequest,
      responses: {
        200: { description: 'the plan (dryRun: true); nothing was created', schema: RolloutDryRun },
        201: { description: 'the rollout, running', schema: RolloutView },
        409: { description: 'a target device is already in a running or paused rollout', schema: ApiErrorShape },
        ...errors,
      },
      async handle({ c, body, token }) {
        const created = await service.create(body, token?.id ?? null);
        if (!created.ok) throw new ApiError(created.error.code, created.error.message);
        const outcome = created.value;
        return outcome.kind === 'dry-run' ? c.json(outcome.plan, 200) : c.json(outcome.rollout, 201);
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/rollouts',
      summary: 'List rollouts, newest first, by status or model, with cursor paging',
      tag: 'rollouts',
      role: 'viewer',
      query: RolloutListQuery,
      responses: { 200: { description: 'a page of rollouts', schema: RolloutList }, ...errors },
      async handle({ c, query }) {
        let before: { createdAt: number; id: string } | undefined;
        if (query.cursor) {
          const { t, i } = decodeCursor(query.cursor, { t: 'number', i: 'string' });
          before = { createdAt: t as number, id: i as string };
        }
        const page = await service.list({
          ...(query.status ? { status: query.status } : {}),
          ...(query.modelId ? { modelId: query.modelId } : {}),
          ...(before ? { before } : {}),
          limit: query.limit,
        });
        const nextCursor = page.more && page.last ? encodeCursor({ t: page.last.createdAt, i: page.last.id }) : null;
        return c.json({ items: page.items, nextCursor });
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/rollouts/:id',
      summary: 'One rollout: status, current stage, assignments by state and the last verdict',
      tag: 'rollouts',
      role: 'viewer',
      responses: { 200: { description: 'the rollout', schema: RolloutView }, ...errors },
      async handle({ c, params }) {
        return c.json(await requireRollout(params.id!));
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/rollouts/:id/events',
      summary: 'Every transition and verdict of a rollout with the numbers behind it, oldest first',
      tag: 'rollouts',
      role: 'viewer',
      query: RolloutEventQuery,
      responses: { 200: { description: 'a page of events', schema: RolloutEventList }, ...errors },
      async handle({ c, params, query }) {
        const id = params.id!;
        await requireRollout(id);
        const afterId = query.cursor ? (decodeCursor(query.cursor, { i: 'number' }).i as number) : undefined;
        const rows = await service.events({
          rolloutId: id,
          ...(query.type ? { type: query.type } : {}),
          ...(afterId !== undefined ? { afterId } : {}),
          limit: query.limit + 1,
        });
        const page = rows.slice(0, query.limit);
        const last = page.at(-1);
        const nextCursor = rows.length > query.limit && last ? encodeCursor({ i: last.id }) : null;
        return c.json({ items: page, nextCursor });
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/rollouts/:id/devices',
      summary: 'The devices a rollout assigned: mode, state, and why one failed (the refusal reason it reported)',
      tag: 'rollouts',
      role: 'viewer',
      query: RolloutDeviceQuery,
      responses: { 200: { description: 'a page of assignments', schema: RolloutDeviceList }, ...errors },
      async handle({ c, params, query }) {
        const id = params.id!;
        await requireRollout(id);
        const afterDeviceId = query.cursor ? (decodeCursor(query.cursor, { d: 'string' }).d as string) : undefined;
        const rows = await service.devices({
          rolloutId: id,
          ...(query.state ? { state: query.state } : {}),
          ...(afterDeviceId !== undefined ? { afterDeviceId } : {}),
          limit: query.limit + 1,
        });
        const page = rows.slice(0, query.limit);
        const last = page.at(-1);
        const nextCursor = rows.length > query.limit && last ? encodeCursor({ d: last.deviceId }) : null;
        return c.json({ items: page, nextCursor });
      },
    }),

    ...(Object.entries(ACTIONS) as [RolloutAction, string][]).map(([action, summary]) =>
      defineRoute({
        method: 'post',
        path: `/api/v1/rollouts/:id/${action}`,
        summary,
        tag: 'rollouts',
        role: 'operator',
        body: RolloutActionRequest.optional(),
        responses: {
          200: { description: 'the rollout after the action', schema: RolloutView },
          409: { description: 'the rollout is not in a state this action applies to', schema: ApiErrorShape },
          ...errors,
        },
        async handle({ c, params, body, token }) {
          const result = await service.act(params.id!, action, body?.reason, token?.id ?? null);
          if (!result.ok) throw new ApiError(result.error.code, result.error.message);
          return c.json(result.value);
        },
      }),
    ),
  ];
}
