import { ApiError as ApiErrorShape, type FleetPipelineSummary, type ReadyzResponse } from '@edgeloop/protocol';
import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { requestId } from 'hono/request-id';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit.ts';
import { auditOfRequest } from '../audit/http.ts';
import type { Config } from '../config.ts';
import type { DatasetService } from '../datasets/service.ts';
import type { AuditRepository } from '../db/audit.ts';
import type { Store } from '../db/repositories.ts';
import type { DeviceSecrets } from '../device-secrets.ts';
import type { EventBus } from '../events.ts';
import { brokerHookRoutes } from '../external-broker/http-hooks.ts';
import type { Fleet } from '../fleet.ts';
import type { MetricsRegistry } from '../metrics.ts';
import type { BlobStore } from '../models/blob-store.ts';
import type { EvaluationService } from '../models/evaluations.ts';
import type { LineageService } from '../models/lineage.ts';
import type { ModelRegistry } from '../models/registry.ts';
import type { RetrainingService } from '../retraining/service.ts';
import type { RolloutService } from '../rollouts/service.ts';
import type { SamplePolicyService } from '../samples/policies.ts';
import type { SampleService } from '../samples/service.ts';
import type { TokenService } from '../tokens.ts';
import { ApiError, codeOfStatus } from './api-error.ts';
import { authorize } from './auth.ts';
import { consoleHandler } from './console-static.ts';
import { IDEMPOTENCY_KEY_HEADER, type Idempotency } from './idempotency.ts';
import { buildOpenApi } from './openapi.ts';
import { type AppEnv, defineRoute, parseBody, parseQuery, type Route } from './route.ts';
import { auditRoutes } from './routes/audit.ts';
import { credentialRoutes } from './routes/credentials.ts';
import { datasetRoutes } from './routes/datasets.ts';
import { deadLetterRoutes } from './routes/dead-letters.ts';
import { deviceRoutes } from './routes/devices.ts';
import { type DriftRoutesDeps, driftRoutes } from './routes/drift.ts';
import { evaluationRoutes } from './routes/evaluations.ts';
import { eventRoutes } from './routes/events.ts';
import { fleetRoutes } from './routes/fleet.ts';
import { lineageRoutes } from './routes/lineage.ts';
import { modelRoutes } from './routes/models.ts';
import { retrainingRoutes } from './routes/retraining.ts';
import { rolloutRoutes } from './routes/rollouts.ts';
import { samplePolicyRoutes } from './routes/sample-policy.ts';
import { sampleRoutes } from './routes/samples.ts';
import { systemRoutes } from './routes/system.ts';
import { tokenRoutes } from './routes/tokens.ts';
import {
  guardsStorage,
  INSUFFICIENT_STORAGE_DESCRIPTION,
  type StorageGate,
  storageFailure,
  storageGuard,
} from './storage-guard.ts';

export type AppDeps = {
  readonly store: Pick<Store, 'devices' | 'messages' | 'deadLetters'>;
  readonly fleet: Fleet;
  readonly tokens: TokenService;
  /** Device secrets: HTTP device authentication (model downloads, sample uploads) and rotation. */
  readonly deviceSecrets: DeviceSecrets;
  /** Whether a device has a live MQTT session (a rotation delivers its secret then). */
  readonly isConnected: (deviceId: string) => boolean;
  readonly bus: EventBus;
  readonly metrics: MetricsRegistry;
  readonly config: Pick<Config, 'http' | 'commands'> & Partial<Pick<Config, 'brokerHookSecret'>>;
  readonly clock: { now(): number };
  readonly logger: Logger;
  readonly version: string;
  readonly status: () => { connectedClients: number; queueDepth: number };
  /** Fleet-wide pipeline numbers (the ingest writer's live view of the latest telemetry). */
  readonly fleetPipeline: () => FleetPipelineSummary;
  /** Aborted when the server stops (ends SSE streams). */
  readonly signal?: AbortSignal;
  /** The model registry routes (upload, list, get, file download with device credentials). */
  readonly models?: {
    readonly registry: ModelRegistry;
    readonly blobs: BlobStore;
    readonly rollouts: Pick<Store['rollouts'], 'assignedModelIds'>;
    readonly uploadLimitBytes: number;
  };
  /** The rollout routes. */
  readonly rollouts?: RolloutService;
  /** The hard-sample routes (device uploads, reads, purge). */
  readonly samples?: { readonly service: SampleService; readonly maxBytes: number };
  /** The dataset routes (versions, label import, export). */
  readonly datasets?: { readonly service: DatasetService; readonly labelsLimitBytes: number };
  /** POST/GET /api/v1/models/:name/:version/evaluations (evaluation reports). */
  readonly evaluations?: EvaluationService;
  /** GET /api/v1/models/:name/:version/lineage (the lineage walk). */
  readonly lineage?: LineageService;
  /** Drift states and references (GET /api/v1/drift, PUT /api/v1/drift/reference). */
  readonly drift?: DriftRoutesDeps['monitor'];
  /** PUT/GET /api/v1/sample-policy (sample policies by label selector). */
  readonly samplePolicies?: SamplePolicyService;
  /** /api/v1/retraining/... (retraining policies, runs and their webhook delivery log). */
  readonly retraining?: {
    readonly service: RetrainingService;
    readonly policies: Pick<Store['retrainingPolicies'], 'list'>;
  };
  /** More routes added by later parts. */
  readonly extraRoutes?: readonly Route[];
  /**
   * The audit log: every non-GET route that succeeds appends an entry (actor, action, target,
   * request id, source, redacted summary); GET /api/v1/audit reads it.
   */
  readonly audit: { readonly log: AuditLog; readonly repo: Pick<AuditRepository, 'list'> };
  /** Idempotency-Key on IDEMPOTENT_ROUTES; without it the header is ignored. */
  readonly idempotency?: Idempotency;
  /** The disk watermark: guarded writes answer 507 below it (storage-guard.ts); none without it. */
  readonly storage?: StorageGate;
  /** GET /readyz (readiness.ts); without it the route is not served. */
  readonly readiness?: () => Promise<ReadyzResponse>;
};

/** The POSTs that create things, where an Idempotency-Key is honoured (method and path template). */
export const IDEMPOTENT_ROUTES: ReadonlySet<string> = new Set([
  'POST /api/v1/devices',
  'POST /api/v1/models',
  'POST /api/v1/rollouts',
  'POST /api/v1/devices/:id/commands',
  'POST /api/v1/devices/:id/credentials/rotate',
  'POST /api/v1/retraining/runs',
]);

/** What IDEMPOTENT_ROUTES add to their OpenAPI responses. */
const IDEMPOTENCY_RESPONSES = {
  400: { description: 'bad request (a malformed Idempotency-Key among them)', schema: ApiErrorShape },
  409: {
    description: 'conflict; or idempotency_key_in_flight: a request with this Idempotency-Key is still running',
    schema: ApiErrorShape,
  },
  422: {
    description: 'invalid request; or idempotency_key_reused: the Idempotency-Key was used with another request',
    schema: ApiErrorShape,
  },
} as const;

/** A route as registered: idempotent ones document the Idempotency-Key's answers. */
function withGovernance(route: Route): Route {
  if (!IDEMPOTENT_ROUTES.has(`${route.method.toUpperCase()} ${route.path}`)) return route;
  const responses: Record<number, Route['responses'][number]> = { ...route.responses };
  for (const [status, spec] of Object.entries(IDEMPOTENCY_RESPONSES)) {
    const own = responses[Number(status)];
    responses[Number(status)] = own ? { ...own, description: `${own.description}; ${spec.description}` } : spec;
  }
  return {
    ...route,
    responses,
    idempotencyKey: `Optional ${IDEMPOTENCY_KEY_HEADER} (IETF draft): the same key with the same request replays the first response (Idempotent-Replayed: true) and creates nothing; keys expire after 24 h`,
  };
}

/** A guarded write documents its 507 (storage-guard.ts). */
function withStorage(route: Route): Route {
  if (!guardsStorage(route) || route.responses[507]) return route;
  return {
    ...route,
    responses: { ...route.responses, 507: { description: INSUFFICIENT_STORAGE_DESCRIPTION, schema: ApiErrorShape } },
  };
}

/**
 * The HTTP API as a Hono app. Every route is declared in routes/*.ts; this registers them with
 * their auth and validation, maps errors once (onError), and serves the OpenAPI document.
 */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const authFailures = deps.metrics.counter('edgeloop_http_auth_failures_total', 'Refused API requests, by reason');
  const requests = deps.metrics.counter('edgeloop_http_requests_total', 'API responses, by status class');
  const startedAt = deps.clock.now();

  const routes: Route[] = [
    ...systemRoutes({
      devices: deps.store.devices,
      metrics: deps.metrics,
      version: deps.version,
      startedAt,
      clock: deps.clock,
      status: deps.status,
      ...(deps.readiness ? { readiness: deps.readiness } : {}),
    }),
    ...deviceRoutes({
      devices: deps.store.devices,
      messages: deps.store.messages,
      fleet: deps.fleet,
      commands: deps.config.commands,
    }),
    ...credentialRoutes({
      devices: deps.store.devices,
      secrets: deps.deviceSecrets,
      fleet: deps.fleet,
      isConnected: deps.isConnected,
      commands: deps.config.commands,
    }),
    ...(deps.config.brokerHookSecret
      ? brokerHookRoutes({ secret: deps.config.brokerHookSecret, secrets: deps.deviceSecrets, metrics: deps.metrics })
      : []),
    ...fleetRoutes({ devices: deps.store.devices, pipeline: deps.fleetPipeline }),
    ...eventRoutes({
      bus: deps.bus,
      heartbeatMs: deps.config.http.sseHeartbeatS * 1000,
      ...(deps.signal ? { signal: deps.signal } : {}),
    }),
    ...deadLetterRoutes({ deadLetters: deps.store.deadLetters }),
    ...tokenRoutes({ tokens: deps.tokens }),
    ...(deps.models
      ? modelRoutes({
          registry: deps.models.registry,
          blobs: deps.models.blobs,
          devices: deps.store.devices,
          rollouts: deps.models.rollouts,
          tokens: deps.tokens,
          secrets: deps.deviceSecrets,
          authFailures,
          uploadLimitBytes: deps.models.uploadLimitBytes,
        })
      : []),
    ...(deps.rollouts ? rolloutRoutes({ service: deps.rollouts }) : []),
    ...(deps.samples
      ? sampleRoutes({
          service: deps.samples.service,
          secrets: deps.deviceSecrets,
          authFailures,
          maxBytes: deps.samples.maxBytes,
        })
      : []),
    ...(deps.datasets ? datasetRoutes(deps.datasets) : []),
    ...(deps.evaluations ? evaluationRoutes({ service: deps.evaluations }) : []),
    ...(deps.lineage && deps.models ? lineageRoutes({ registry: deps.models.registry, lineage: deps.lineage }) : []),
    ...(deps.drift ? driftRoutes({ monitor: deps.drift }) : []),
    ...(deps.samplePolicies ? samplePolicyRoutes({ service: deps.samplePolicies }) : []),
    ...(deps.retraining ? retrainingRoutes(deps.retraining) : []),
    ...(deps.extraRoutes ?? []),
    ...auditRoutes({ audit: deps.audit.repo }),
  ]
    .map(withGovernance)
    .map((route) => (deps.storage ? withStorage(route) : route));
  let openApi: Record<string, unknown> | null = null;
  routes.push(
    defineRoute({
      method: 'get',
      path: '/api/v1/openapi.json',
      summary: 'This OpenAPI 3.1 document',
      tag: 'system',
      role: null,
      responses: { 200: { description: 'the document', contentType: 'application/json' } },
      handle({ c }) {
        openApi ??= buildOpenApi(routes, { title: 'edgeloop control plane', version: deps.version });
        return c.json(openApi);
      },
    }),
  );

  app.use('*', async (c, next) => {
    await next();
    requests.inc({ status: `${Math.floor(c.res.status / 100)}xx` });
  });
  // X-Request-Id: the caller's (word characters, - and =, at most 255) or a new UUID; echoed back.
  app.use('*', requestId());
  const jsonBodyLimit = bodyLimit({
    maxSize: deps.config.http.bodyLimitBytes,
    onError: () => {
      throw new ApiError('payload_too_large', `request body exceeds ${deps.config.http.bodyLimitBytes} bytes`);
    },
  });
  for (const route of routes) {
    const handler = async (c: Context<AppEnv>) => {
      // Authentication comes first: an anonymous caller learns nothing about bodies or ids.
      const token =
        route.role && !route.customAuth
          ? await authorize(c, route.role, { tokens: deps.tokens, failures: authFailures })
          : null;
      let body: unknown;
      const execute = async () => {
        const query = route.query ? parseQuery(c, route.query, route.arrayQuery) : undefined;
        body = route.body ? await parseBody(c, route.body) : undefined;
        return route.handle({ c, body, query, params: c.req.param() as Record<string, string>, token });
      };
      const { response, replayed } =
        route.idempotencyKey && deps.idempotency && token
          ? await deps.idempotency.run(c, { actor: token.id, streamed: route.streamedBody !== undefined }, execute)
          : { response: await execute(), replayed: false };
      // Every change that succeeded is in the audit log (a replay changed nothing).
      if (route.method !== 'get' && response.status < 400 && !replayed) {
        await deps.audit.log.record(await auditOfRequest({ c, route, token, body, response }));
      }
      return response;
    };
    // Streamed uploads enforce their own (larger) limit while streaming; every other route gets
    // the JSON body limit.
    // Below the disk watermark a guarded write answers 507 before its body is read.
    const method = route.method.toUpperCase();
    if (deps.storage && guardsStorage(route)) app.on(method, route.path, storageGuard(deps.storage));
    if (route.streamedBody) app.on(method, route.path, handler);
    else app.on(method, route.path, jsonBodyLimit, handler);
  }

  // The operator console at `/` (after every API route, so it never shadows one).
  const serveConsole = consoleHandler({ dir: deps.config.http.consoleDir });
  app.on(['GET', 'HEAD'], '*', serveConsole);

  app.notFound((c) => c.json({ error: { code: 'not_found', message: `no route ${c.req.method} ${c.req.path}` } }, 404));

  app.onError((error, c) => {
    if (error instanceof ApiError) {
      return c.json({ error: { code: error.code, message: error.message } }, error.status, error.headers);
    }
    // ENOSPC / SQLITE_FULL: a 507 (and the disk monitor knows at once), not an internal error.
    const full = storageFailure(deps.storage, error);
    if (full) {
      deps.logger.warn({ err: error, method: c.req.method, path: c.req.path }, 'request failed: the disk is full');
      return c.json({ error: { code: full.code, message: full.message } }, full.status, full.headers);
    }
    if (error instanceof HTTPException) {
      const code = codeOfStatus(error.status);
      return c.json({ error: { code, message: error.message || code } }, error.status);
    }
    deps.logger.error({ err: error, method: c.req.method, path: c.req.path }, 'request failed');
    return c.json({ error: { code: 'internal', message: 'internal error' } }, 500);
  });

  return app;
}
