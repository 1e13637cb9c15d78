import { timingSafeEqual } from 'node:crypto';
import {
  ApiError as ApiErrorShape,
  BrokerAuthenticateRequest,
  BrokerAuthorizeRequest,
  BrokerHookResponse,
  type BrokerHookResult,
  isDeviceId,
  isDeviceToCloud,
  parseTopic,
} from '@edgeloop/protocol';
import type { Context } from 'hono';
import type { DeviceSecrets } from '../device-secrets.ts';
import { ApiError } from '../http/api-error.ts';
import { type AppEnv, defineRoute, type Route } from '../http/route.ts';
import type { MetricsRegistry } from '../metrics.ts';

/*
 * The HTTP authentication and authorisation hooks of an external broker (issue 11 §3 b), in the
 * shape EMQX's HTTP authenticator and HTTP authorizer call (README "Replicas on PostgreSQL" has a
 * sample EMQX configuration):
 *   - a device logs in with username = client id = its device id and its secret (the same check
 *     as the embedded broker and the device's HTTP calls: current secret, or a rotation's next);
 *   - it may publish on its own device-to-cloud topics and subscribe to its own desired and cmd
 *     topics, nothing else (no wildcards, no other device, no `$SYS`): the embedded broker's rules,
 *     from the protocol's one topic parser;
 *   - a username that is not a device id gets `ignore`, so the broker asks its next source (its own
 *     user for the control plane's client).
 * The broker proves itself with a shared secret (EDGELOOP_BROKER_HOOK_SECRET, sent as a bearer
 * token); without the setting the routes do not exist.
 */

/** Whether device `deviceId` may `action` on `topic`: its own topics, in the right direction, exactly. */
export function deviceTopicAccess(deviceId: string, topic: string, action: 'publish' | 'subscribe'): boolean {
  const parsed = parseTopic(topic);
  if (!parsed || parsed.deviceId !== deviceId) return false;
  return action === 'publish' ? isDeviceToCloud(parsed.channel) : !isDeviceToCloud(parsed.channel);
}

export type BrokerHookDeps = {
  /** The secret the broker sends as `Authorization: Bearer <secret>`. */
  readonly secret: string;
  readonly secrets: Pick<DeviceSecrets, 'check'>;
  readonly metrics: MetricsRegistry;
};

function bearerMatches(c: Context<AppEnv>, secret: string): boolean {
  const header = c.req.header('authorization') ?? '';
  const presented = Buffer.from(header.startsWith('Bearer ') ? header.slice(7) : '', 'utf8');
  const expected = Buffer.from(secret, 'utf8');
  // Compared in constant time; a length mismatch is compared against itself so it costs the same.
  const same = presented.length === expected.length;
  return timingSafeEqual(same ? presented : expected, expected) && same;
}

export function brokerHookRoutes(deps: BrokerHookDeps): Route[] {
  const answered = deps.metrics.counter(
    'edgeloop_broker_hook_answers_total',
    'External broker hook answers, by hook (authenticate, authorize) and result (allow, deny, ignore)',
  );
  const refused = deps.metrics.counter(
    'edgeloop_broker_hook_refused_total',
    'External broker hook calls refused before an answer (a wrong or missing hook secret)',
  );
  const answer = (c: Context<AppEnv>, hook: string, result: BrokerHookResult) => {
    answered.inc({ hook, result });
    return c.json({ result } satisfies BrokerHookResponse);
  };
  const guard = (c: Context<AppEnv>) => {
    if (bearerMatches(c, deps.secret)) return;
    refused.inc();
    throw new ApiError('unauthorized', 'the broker hook secret is missing or wrong');
  };
  const responses = {
    200: { description: 'the answer: allow, deny or ignore', schema: BrokerHookResponse },
    401: { description: 'missing or wrong broker hook secret', schema: ApiErrorShape },
    422: { description: 'a body that is not the documented shape', schema: ApiErrorShape },
  };
  return [
    defineRoute({
      method: 'post',
      path: '/api/v1/broker/authenticate',
      summary: "An external broker's login check of a device (EMQX HTTP authenticator)",
      tag: 'broker',
      role: null,
      customAuth: 'Authorization: Bearer <EDGELOOP_BROKER_HOOK_SECRET>',
      body: BrokerAuthenticateRequest,
      responses,
      async handle({ c, body }) {
        guard(c);
        if (!isDeviceId(body.username)) return answer(c, 'authenticate', 'ignore');
        if (body.clientid !== body.username) return answer(c, 'authenticate', 'deny');
        const checked = await deps.secrets.check(body.username, body.password);
        return answer(c, 'authenticate', checked === 'current' || checked === 'next' ? 'allow' : 'deny');
      },
    }),
    defineRoute({
      method: 'post',
      path: '/api/v1/broker/authorize',
      summary: "An external broker's publish or subscribe check of a device (EMQX HTTP authorizer)",
      tag: 'broker',
      role: null,
      customAuth: 'Authorization: Bearer <EDGELOOP_BROKER_HOOK_SECRET>',
      body: BrokerAuthorizeRequest,
      responses,
      handle({ c, body }) {
        guard(c);
        if (!isDeviceId(body.username)) return answer(c, 'authorize', 'ignore');
        const allowed = body.clientid === body.username && deviceTopicAccess(body.username, body.topic, body.action);
        return answer(c, 'authorize', allowed ? 'allow' : 'deny');
      },
    }),
  ];
}
