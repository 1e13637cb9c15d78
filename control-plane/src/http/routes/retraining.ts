import {
  ApiError as ApiErrorShape,
  ClaimRetrainingRunRequest,
  CompleteRetrainingRunRequest,
  ModelName,
  RetrainingPolicy,
  RetrainingPolicyList,
  RetrainingPolicyView,
  RetrainingRun,
  RetrainingRunList,
  RetrainingRunListQuery,
  TriggerRetrainingRequest,
} from '@edgeloop/protocol';
import type { RetrainingPolicyRepository } from '../../db/repositories.ts';
import { parseStoredPolicy, type RetrainingService, toPolicyView } from '../../retraining/service.ts';
import { ApiError } from '../api-error.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { defineRoute, type Route } from '../route.ts';

/*
 * Retraining (issue 9 §3): policies per model name, the runs they fired with their webhook
 * delivery log, a manual trigger, and the pull side for trainers behind a firewall (list the
 * pending runs, claim one, link the model trained from it). Every change is audited by the app
 * (the webhook secret is redacted there and never answered here: only `hasSecret`).
 */

export type RetrainingRoutesDeps = {
  readonly service: RetrainingService;
  readonly policies: Pick<RetrainingPolicyRepository, 'list'>;
};

const errors = {
  401: { description: 'missing or invalid token', schema: ApiErrorShape },
  403: { description: 'the token role may not do this', schema: ApiErrorShape },
} as const;

function modelNameParam(value: string | undefined): string {
  const parsed = ModelName.safeParse(value);
  if (!parsed.success)
    throw new ApiError('unprocessable', `model name: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}

export function retrainingRoutes(deps: RetrainingRoutesDeps): Route[] {
  const { service } = deps;
  return [
    defineRoute({
      method: 'put',
      path: '/api/v1/retraining/policies/:modelName',
      summary:
        "Set a model name's retraining policy: drift, samples and cron triggers, cooldown, the dataset a run " +
        'freezes, and the signed webhook (its secret is write-only)',
      tag: 'retraining',
      role: 'operator',
      body: RetrainingPolicy,
      responses: {
        200: { description: 'the policy as stored (hasSecret, never the secret)', schema: RetrainingPolicyView },
        ...errors,
        422: {
          description: 'invalid policy, a cron expression or time zone croner refuses, or a webhook without a secret',
          schema: ApiErrorShape,
        },
      },
      async handle({ c, body, params, token }) {
        const set = await service.setPolicy(modelNameParam(params.modelName), body, token?.id ?? null);
        if (!set.ok) throw new ApiError(set.error.code, set.error.message);
        c.set('auditResult', { id: set.value.modelName });
        return c.json(set.value);
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/retraining/policies/:modelName',
      summary: "A model name's retraining policy (the webhook secret is never shown, only hasSecret)",
      tag: 'retraining',
      role: 'viewer',
      responses: {
        200: { description: 'the policy', schema: RetrainingPolicyView },
        ...errors,
        404: { description: 'no policy for this model name', schema: ApiErrorShape },
      },
      async handle({ c, params }) {
        const modelName = modelNameParam(params.modelName);
        const policy = await service.getPolicy(modelName);
        if (!policy) throw new ApiError('not_found', `no retraining policy for model ${modelName}`);
        return c.json(policy);
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/retraining/policies',
      summary: 'Every retraining policy, by model name',
      tag: 'retraining',
      role: 'viewer',
      responses: { 200: { description: 'the policies', schema: RetrainingPolicyList }, ...errors },
      async handle({ c }) {
        const items = [];
        for (const record of await deps.policies.list()) {
          const policy = parseStoredPolicy(record);
          if (policy) items.push(toPolicyView(record, policy));
        }
        return c.json({ items });
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/retraining/runs',
      summary:
        'Retraining runs and their webhook delivery log (status, attempts, response codes), newest first; ' +
        '?status=pending is the pull side for trainers without a webhook',
      tag: 'retraining',
      role: 'viewer',
      query: RetrainingRunListQuery,
      responses: { 200: { description: 'a page of runs', schema: RetrainingRunList }, ...errors },
      async handle({ c, query }) {
        const before = query.cursor ? decodeCursor(query.cursor, { t: 'number', i: 'string' }) : undefined;
        const items = await service.listRuns({
          ...(query.status !== undefined ? { status: query.status } : {}),
          ...(query.model !== undefined ? { modelName: query.model } : {}),
          ...(before ? { before: { createdAt: before.t as number, runId: before.i as string } } : {}),
          limit: query.limit + 1,
        });
        const page = items.slice(0, query.limit);
        const last = page[page.length - 1];
        const nextCursor =
          items.length > query.limit && last ? encodeCursor({ t: last.createdAt, i: last.runId }) : null;
        return c.json({ items: page, nextCursor });
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/retraining/runs/:runId',
      summary: 'One retraining run with its delivery log',
      tag: 'retraining',
      role: 'viewer',
      responses: {
        200: { description: 'the run', schema: RetrainingRun },
        ...errors,
        404: { description: 'no such run', schema: ApiErrorShape },
      },
      async handle({ c, params }) {
        const run = await service.getRun(params.runId!);
        if (!run) throw new ApiError('not_found', `no retraining run ${params.runId}`);
        return c.json(run);
      },
    }),

    defineRoute({
      method: 'post',
      path: '/api/v1/retraining/runs',
      summary:
        "Fire a retraining run of a model name's policy now (manual; the cooldown does not apply): freezes the " +
        'dataset version and starts the webhook delivery',
      tag: 'retraining',
      role: 'operator',
      body: TriggerRetrainingRequest,
      responses: {
        201: { description: 'the run (delivering, or pending without a webhook)', schema: RetrainingRun },
        ...errors,
        404: { description: 'no policy for this model name', schema: ApiErrorShape },
        409: { description: 'concurrent dataset creates kept taking the version number', schema: ApiErrorShape },
        422: {
          description: "invalid request, or the policy's dataset query matches no stored sample",
          schema: ApiErrorShape,
        },
      },
      async handle({ c, body, token }) {
        const fired = await service.fire(
          body.modelName,
          {
            kind: 'manual',
            numbers: { by: token?.id ?? null },
            detail: body.note ? `manual: ${body.note}` : `manual run by ${token?.name ?? 'an operator'}`,
          },
          token?.id ?? null,
        );
        if (!fired.ok) throw new ApiError(fired.error.code, fired.error.message);
        c.set('auditResult', { id: fired.value.runId, status: fired.value.status });
        return c.json(fired.value, 201);
      },
    }),

    defineRoute({
      method: 'post',
      path: '/api/v1/retraining/runs/:runId/claim',
      summary:
        'A trainer takes a run (once): pending, delivering, delivered or failed runs can be claimed; retries stop',
      tag: 'retraining',
      role: 'operator',
      body: ClaimRetrainingRunRequest.optional(),
      responses: {
        200: { description: 'the claimed run', schema: RetrainingRun },
        ...errors,
        404: { description: 'no such run', schema: ApiErrorShape },
        409: { description: 'the run was claimed already (or a model is registered from it)', schema: ApiErrorShape },
      },
      async handle({ c, body, params, token }) {
        const claimed = await service.claim(params.runId!, body?.trainer ?? token?.id ?? 'unknown');
        if (!claimed.ok) throw new ApiError(claimed.error.code, claimed.error.message);
        c.set('auditResult', { id: claimed.value.runId, status: claimed.value.status });
        return c.json(claimed.value);
      },
    }),

    defineRoute({
      method: 'post',
      path: '/api/v1/retraining/runs/:runId/complete',
      summary:
        'Link the registered model trained from a run (status model-registered); a release whose lineage names ' +
        'the runId is linked at upload without this call',
      tag: 'retraining',
      role: 'operator',
      body: CompleteRetrainingRunRequest,
      responses: {
        200: { description: 'the run, linked', schema: RetrainingRun },
        ...errors,
        404: { description: 'no such run, or no such registered model', schema: ApiErrorShape },
        409: { description: 'the run is linked to another model already', schema: ApiErrorShape },
        422: { description: 'the model is of another name than the run', schema: ApiErrorShape },
      },
      async handle({ c, body, params }) {
        const linked = await service.complete(params.runId!, body.modelId);
        if (!linked.ok) throw new ApiError(linked.error.code, linked.error.message);
        c.set('auditResult', { id: linked.value.runId, status: linked.value.status });
        return c.json(linked.value);
      },
    }),
  ];
}
