import { mkdirSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer, type Server } from 'node:net';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Server as TlsServer } from 'node:tls';
import { fail, ok, type Result } from '@edgeloop/protocol';
import { createAdaptorServer } from '@hono/node-server';
import type { Hono } from 'hono';
import pino, { type Logger } from 'pino';
import packageJson from '../package.json' with { type: 'json' };
import { type AssignmentRefresher, createAssignmentRefresher } from './assignment-refresh.ts';
import { createAuditLog, createGovernancePruner } from './audit/audit.ts';
import { type ControlBroker, createBroker, type FleetBroker } from './broker.ts';
import { type CommandWaiters, createCommandWaiters } from './command-waiters.ts';
import { type Config, ConfigError } from './config.ts';
import { octal, tightenDataDir } from './data-dir.ts';
import { createDatasetService } from './datasets/service.ts';
import { createPostgresStore } from './db/postgres/store.ts';
import type { RetrainingRunRecord, Store } from './db/repositories.ts';
import { createSqliteStore } from './db/sqlite/store.ts';
import { createDeviceSecrets } from './device-secrets.ts';
import { createDiskMonitor, type DiskMonitor, type FsStats } from './disk-monitor.ts';
import { createDriftMonitor, type DriftMonitor } from './drift/monitor.ts';
import { type EventLoopMonitor, monitorEventLoop } from './event-loop.ts';
import { createEventRelay } from './event-relay.ts';
import { createEventBus, type EventBus } from './events.ts';
import { defaultReplicaId } from './external-broker/external-broker.ts';
import { type ExternalBrokerConnection, openExternalBroker } from './external-broker/open.ts';
import { createFleet, type DeviceAccess, type Fleet, type MqttEndpoint, NO_DEVICE_ACCESS } from './fleet.ts';
import { createApp } from './http/app.ts';
import { createIdempotency } from './http/idempotency.ts';
import type { AppEnv, Route } from './http/route.ts';
import { DEFAULT_LABELS_LIMIT_BYTES } from './http/routes/datasets.ts';
import { type Clock, createIngestWriter, type IngestWriter } from './ingest.ts';
import { createMetricsRegistry, type MetricsRegistry } from './metrics.ts';
import { type BlobStore, createBlobStore } from './models/blob-store.ts';
import { createEvaluationService } from './models/evaluations.ts';
import { createLineageService } from './models/lineage.ts';
import { createModelRegistry, type ModelRegistry } from './models/registry.ts';
import { loadTrustedKeys } from './models/trusted-keys.ts';
import { createMqttFront, type MqttFront } from './mqtt-front.ts';
import { createDeviceIssues, type DeviceIssues } from './mqtt-front-issues.ts';
import { createReadiness, type Readiness } from './readiness.ts';
import { createRetrainingLoop, type RetrainingLoop } from './retraining/loop.ts';
import { createRetrainingService, type RetrainingService } from './retraining/service.ts';
import { createWebhookDeliverer, type WebhookDeliverer } from './retraining/webhook.ts';
import { createSecretBox } from './retraining/webhook-secret.ts';
import { createRolloutEngine, ROLLOUT_LEADER_LOCK_KEY, type RolloutEngine } from './rollouts/engine.ts';
import { createRolloutService, type RolloutService } from './rollouts/service.ts';
import { createSamplePolicyService } from './samples/policies.ts';
import { createSampleService, type SampleService } from './samples/service.ts';
import { createSecretHasher, loadOrCreatePepper } from './secrets.ts';
import { createHealthSweeper, createRetentionPruner, systemTimers, type Timers } from './sweeper.ts';
import { issueCertificate } from './tls/fleet-ca.ts';
import { createTlsListeners, type ReloadSummary, readTlsMaterial, type TlsListeners } from './tls/tls-listeners.ts';
import { createTokenService, type TokenService } from './tokens.ts';

export const VERSION: string = packageJson.version;

/** A listening port that is taken. `flag` names the option to change. */
export class PortInUseError extends Error {
  readonly code = 'port_in_use';
  readonly port: number;
  readonly flag: '--http-port' | '--mqtt-port' | '--mqtt-tls-port';
  constructor(
    kind: 'HTTP' | 'MQTT' | 'MQTT TLS',
    port: number,
    flag: '--http-port' | '--mqtt-port' | '--mqtt-tls-port',
    options?: { cause?: unknown },
  ) {
    super(`${kind} port ${port} is already in use; choose another with ${flag}`, options);
    this.name = 'PortInUseError';
    this.port = port;
    this.flag = flag;
  }
}

export type ControlPlaneDeps = {
  readonly logger?: Logger;
  readonly clock?: Clock;
  readonly timers?: Timers;
  /** A store to use instead of the embedded SQLite file (another dialect, a test double of time). */
  readonly store?: Store;
  /** More HTTP routes (later parts: model registry, rollouts). */
  readonly extraRoutes?: readonly Route[];
  /** statfs of the data directory (fs.statfsSync); a test passes its own numbers for the disk watermark. */
  readonly statfs?: (path: string) => FsStats;
};

export type StartedControlPlane = {
  readonly httpPort: number;
  readonly mqttPort: number;
  readonly httpUrl: string;
  readonly mqttUrl: string;
  /** The MQTT TLS listener (--mqtt-tls-port), or null. */
  readonly mqttTlsPort: number | null;
  readonly mqttTlsUrl: string | null;
  /** The admin token generated at this start (print it once), or null. */
  readonly adminToken: string | null;
};

/** The running parts, for tests, benchmarks and the parts later issues add. */
export type ControlPlaneInternals = {
  readonly config: Readonly<Config>;
  readonly store: Store;
  /** The embedded broker, or the external one (--broker-url). */
  readonly broker: FleetBroker;
  /** The embedded broker's socket front; null with an external broker. */
  readonly mqttFront: MqttFront | null;
  readonly deviceIssues: DeviceIssues;
  readonly ingest: IngestWriter;
  readonly bus: EventBus;
  readonly metrics: MetricsRegistry;
  readonly fleet: Fleet;
  readonly tokens: TokenService;
  readonly waiters: CommandWaiters;
  readonly app: Hono<AppEnv>;
  readonly eventLoop: EventLoopMonitor;
  readonly blobs: BlobStore;
  readonly registry: ModelRegistry;
  readonly rollouts: {
    readonly service: RolloutService;
    readonly engine: RolloutEngine;
    /** Renews model assignments before their expiresAt lapses. */
    readonly assignments: AssignmentRefresher;
  };
  readonly samples: SampleService;
  /** Retraining policies and runs, the trigger loop (leader only) and the webhook deliverer. */
  readonly retraining: {
    readonly service: RetrainingService;
    readonly loop: RetrainingLoop;
    readonly deliverer: WebhookDeliverer;
  };
  /** Free disk of the data directory against the watermark (--min-free-disk-mb). */
  readonly disk: DiskMonitor;
  /** The checks of GET /readyz. */
  readonly readiness: Readiness;
  /** TLS of the HTTPS API and the MQTT TLS listener (--tls-cert/--tls-key), or null. */
  readonly tls: TlsListeners | null;
  /** Drift detection and adaptive sampling (on the rollout leader). */
  readonly drift: DriftMonitor;
};

export type ControlPlane = {
  start(): Promise<StartedControlPlane>;
  /** Stops accepting, closes the broker (wills are stored), flushes the ingest queue, closes the DB. */
  stop(): Promise<void>;
  /**
   * Re-reads --tls-cert, --tls-key and the fleet CA and applies them to new connections (SIGHUP).
   * ok(null) when TLS is not configured; a failure keeps the running certificates.
   */
  reloadTls(): Promise<Result<ReloadSummary | null, 'invalid_tls'>>;
  /** Available between start() and stop(). */
  readonly internals: ControlPlaneInternals;
};

function listen(server: Server | HttpServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => {
      server.off('listening', onListening);
      reject(error);
    };
    const onListening = () => {
      server.off('error', onError);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}

function closeServer(server: Server | HttpServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    if ('closeAllConnections' in server) server.closeAllConnections();
  });
}

function isAddressInUse(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'EADDRINUSE';
}

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export function createControlPlane(config: Readonly<Config>, deps: ControlPlaneDeps = {}): ControlPlane {
  const logger = deps.logger ?? pino({ level: config.logLevel });
  const clock = deps.clock ?? { now: () => Date.now() };
  const timers = deps.timers ?? systemTimers;
  let internals: ControlPlaneInternals | null = null;
  let tlsListeners: TlsListeners | null = null;
  const cleanups: (() => Promise<void> | void)[] = [];
  let state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';

  const runCleanups = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (error) {
        logger.error({ err: error }, 'shutdown step failed');
      }
    }
  };

  const start = async (): Promise<StartedControlPlane> => {
    if (state !== 'new') throw new Error(`the control plane cannot start: it is ${state}`);
    state = 'starting';
    try {
      mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
      // The data dir holds the database, the pepper and the blobs: 0700 folders, 0600 files.
      const modes = tightenDataDir(config.dataDir);
      if (modes.fixed.length > 0) {
        logger.warn(
          {
            dataDir: config.dataDir,
            fixed: modes.fixed.length,
            examples: modes.fixed.slice(0, 5).map((fix) => `${fix.path} ${octal(fix.from)} -> ${octal(fix.to)}`),
          },
          `data directory modes were looser than 0700 (folders) / 0600 (files): fixed ${modes.fixed.length}`,
        );
      }
      for (const failure of modes.failed) {
        logger.warn(
          { path: failure.path, mode: octal(failure.mode), err: failure.error },
          'data directory mode not fixed',
        );
      }
      // Trusted keys first: a bad key file fails the start before anything is opened.
      const trustedKeys = loadTrustedKeys(config.trustedKeys);
      if (!trustedKeys.ok) throw new ConfigError([trustedKeys.error.message]);
      // The server certificate and the fleet CA, read (and checked) before anything is opened too.
      let tlsMaterial: Awaited<ReturnType<typeof readTlsMaterial>> | null = null;
      if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
        tlsMaterial = await readTlsMaterial({
          certFile: config.tlsCert,
          keyFile: config.tlsKey,
          dataDir: config.dataDir,
        });
        if (!tlsMaterial.ok) throw new ConfigError([tlsMaterial.error.message]);
      }
      const pepper = loadOrCreatePepper(config.dataDir);
      const hasher = createSecretHasher(pepper);
      const store =
        deps.store ??
        (config.databaseUrl
          ? await createPostgresStore({ url: config.databaseUrl })
          : createSqliteStore({ dataDir: config.dataDir, integrityCheck: config.integrityCheck }));
      cleanups.push(() => store.close());

      // Files this start created (the SQLite file and its WAL) get the same modes, quietly.
      tightenDataDir(config.dataDir);
      const metrics = createMetricsRegistry();
      const audit = createAuditLog({
        repo: store.audit,
        clock,
        logger: logger.child({ component: 'audit' }),
        written: metrics.counter('edgeloop_audit_entries_total', 'Audit log entries written, by actor role'),
        failures: metrics.counter(
          'edgeloop_audit_write_failures_total',
          'Audit log entries that could not be written (a gap in the log)',
        ),
      });
      const tls: TlsListeners | null = tlsMaterial?.ok
        ? createTlsListeners({
            files: { certFile: config.tlsCert!, keyFile: config.tlsKey!, dataDir: config.dataDir },
            material: tlsMaterial.value,
            handshakeTimeoutMs: config.mqtt.connectDeadlineMs,
            metrics,
            logger: logger.child({ component: 'tls' }),
          })
        : null;
      tlsListeners = tls;
      const eventLoop = monitorEventLoop(metrics);
      cleanups.push(() => eventLoop.stop());
      // Below the watermark API writes answer 507 and ingest holds its batches (publishers wait for PUBACK).
      const disk = createDiskMonitor({
        dir: config.dataDir,
        minFreeBytes: Math.round(config.minFreeDiskMb * 1024 * 1024),
        intervalMs: config.readiness.intervalMs,
        timers,
        clock,
        metrics,
        logger: logger.child({ component: 'disk' }),
        ...(deps.statfs ? { statfs: deps.statfs } : {}),
      });
      disk.start();
      cleanups.push(() => disk.stop());
      let readiness: Readiness | null = null;
      const bus = createEventBus({ clock });
      // Replicas on one PostgreSQL database: each one's SSE clients see every replica's events.
      if (config.databaseUrl) {
        const relay = createEventRelay({
          url: config.databaseUrl,
          bus,
          logger: logger.child({ component: 'event-relay' }),
          metrics,
          timers,
          clock,
        });
        await relay.start();
        cleanups.push(() => relay.stop());
      }
      const tokens = createTokenService({ tokens: store.apiTokens, hasher, clock });
      const { generated } = await tokens.bootstrap(config.adminToken);

      const waiters = createCommandWaiters();
      // Auth failures and client-id conflicts per enrolled device, read by health (ingest) and written by the broker.
      const deviceIssues = createDeviceIssues({ now: () => clock.now() });
      let broker: FleetBroker | null = null;
      // An external broker tells no sessions: there, the will and the heartbeat sweep decide.
      const sessionsKnown = config.brokerUrl === undefined;
      // Created once the rollout engine (whose leader lock it shares) exists; ingest feeds it after commit.
      let drift: DriftMonitor | null = null;
      const ingest = createIngestWriter({
        store: {
          ...store.ingest,
          loadLiveStates: store.devices.loadLiveStates,
          loadLiveState: store.devices.loadLiveState,
        },
        bus,
        metrics,
        clock,
        config: config.ingest,
        health: config.health,
        clockSkewMaxMs: config.clockSkewMaxS * 1000,
        logger: logger.child({ component: 'ingest' }),
        isConnected: (deviceId) => (sessionsKnown ? (broker?.isConnected(deviceId) ?? false) : false),
        onReply: (deviceId, reply) => waiters.resolve(deviceId, reply),
        onTelemetry: (deviceId, telemetry, receivedAt) => drift?.observe(deviceId, telemetry, receivedAt),
        connectionReasons: (deviceId) => deviceIssues.reasons(deviceId),
        holdWrites: () => disk.low(),
        onFlushError: (error) => {
          disk.noteError(error);
          readiness?.noteFlushError(error);
        },
      });
      await ingest.start();
      cleanups.push(() => ingest.stop());

      // Device logins held by an external broker (dynsec); none for the embedded one or the HTTP hooks.
      let deviceAccess: DeviceAccess = NO_DEVICE_ACCESS;
      const deviceSecrets = createDeviceSecrets({
        credentials: store.credentials,
        hasher,
        clock,
        metrics,
        logger: logger.child({ component: 'credentials' }),
        ...(sessionsKnown ? {} : { access: { setPassword: (id, password) => deviceAccess.setPassword(id, password) } }),
      });
      let mqttFront: MqttFront | null = null;
      let mqttServer: Server | null = null;
      let mqttTlsServer: TlsServer | null = null;
      let external: ExternalBrokerConnection | null = null;
      let openBroker: FleetBroker;
      if (config.brokerUrl !== undefined) {
        // No MQTT listener of our own: the devices and every replica connect to the external broker.
        const opened = await openExternalBroker({
          config: { ...config, brokerUrl: config.brokerUrl, brokerPassword: config.brokerPassword ?? '' },
          replicaId: config.replicaId ?? defaultReplicaId(hostname(), resolve(config.dataDir)),
          ingest,
          devices: store.devices,
          bus,
          waiters,
          metrics,
          logger: logger.child({ component: 'external-broker' }),
          clock,
        });
        external = opened;
        deviceAccess = opened.deviceAccess;
        openBroker = opened.broker;
        cleanups.push(async () => {
          waiters.cancelAll();
          await opened.close();
        });
      } else {
        let embedded: ControlBroker | null = null;
        // Every socket passes the front (caps, per-address rate, header-checked packet sizes, CONNECT deadline) first.
        const front = createMqttFront({
          config: config.mqtt,
          handoff: (socket) => (embedded ? embedded.handle(socket) : socket.destroy()),
          metrics,
          logger: logger.child({ component: 'mqtt-front' }),
        });
        mqttFront = front;
        embedded = await createBroker({
          secrets: deviceSecrets,
          ingest,
          waiters,
          metrics,
          logger: logger.child({ component: 'broker' }),
          clock,
          issues: deviceIssues,
          front,
          // A backstop only: the front's deadline closes a socket that did not log in first.
          connectTimeoutMs: config.mqtt.connectDeadlineMs + 1_000,
          // Always on: a device enrolled with a certificate is refused a password login, TLS or not.
          certificates: {
            identify: (connection) => tls?.identify(connection) ?? null,
            fingerprint: (deviceId) => store.devices.certFingerprint(deviceId),
          },
        });
        const embeddedBroker = embedded;
        openBroker = embeddedBroker;
        const plainServer = createServer((socket) => front.accept(socket));
        mqttServer = plainServer;
        // TLS sockets pass the same front once their handshake is done.
        const tlsServer =
          tls && config.mqttTlsPort !== undefined ? tls.createMqttServer((socket) => front.accept(socket)) : null;
        mqttTlsServer = tlsServer;
        cleanups.push(async () => {
          // Stop accepting first; the listener's close completes once the broker closed every client.
          const listenerClosed = plainServer.listening ? closeServer(plainServer) : Promise.resolve();
          const tlsListenerClosed = tlsServer?.listening ? closeServer(tlsServer) : Promise.resolve();
          waiters.cancelAll();
          await embeddedBroker.close();
          await listenerClosed;
          await tlsListenerClosed;
        });
      }
      broker = openBroker;

      let mqttEndpoint: MqttEndpoint = { host: '', port: 0, url: '' };
      let mqttTlsEndpoint: MqttEndpoint | null = null;
      const fleet = createFleet({
        devices: store.devices,
        hasher,
        bus,
        clock,
        live: ingest,
        broker: openBroker,
        mqttEndpoint: () => mqttEndpoint,
        deviceAccess,
        deviceCertificates: {
          async issue(deviceId) {
            const ca = tls?.fleetCa() ?? null;
            if (!tls || !mqttTlsEndpoint) {
              return fail(
                'cert_unavailable',
                'certificate enrollment needs the MQTT TLS listener: start with --mqtt-tls-port, --tls-cert and --tls-key',
              );
            }
            if (!ca) {
              return fail(
                'cert_unavailable',
                'certificate enrollment needs a fleet CA: run edgeloop ca init, then restart or send SIGHUP',
              );
            }
            const issued = await issueCertificate(ca, { commonName: deviceId, usage: 'client', now: clock.now() });
            return ok({
              certificate: {
                cert: issued.certPem,
                key: issued.keyPem,
                ca: ca.certPem,
                fingerprint: issued.fingerprint,
                notAfter: issued.notAfter,
              },
              mqtt: mqttTlsEndpoint,
            });
          },
        },
        samplePolicies: store.samplePolicies,
      });

      const wildcard = config.host === '0.0.0.0' || config.host === '::';
      const publicHost = config.publicHost ?? (wildcard ? 'localhost' : config.host);
      let mqttPort: number;
      if (external) {
        mqttEndpoint = external.endpoint;
        mqttPort = external.endpoint.port;
      } else {
        const plainServer = mqttServer!;
        try {
          mqttPort = await listen(plainServer, config.mqttPort, config.host);
        } catch (error) {
          if (isAddressInUse(error)) throw new PortInUseError('MQTT', config.mqttPort, '--mqtt-port', { cause: error });
          throw error;
        }
        mqttEndpoint = { host: publicHost, port: mqttPort, url: `mqtt://${urlHost(publicHost)}:${mqttPort}` };
      }
      if (mqttTlsServer && config.mqttTlsPort !== undefined) {
        let tlsPort: number;
        try {
          tlsPort = await listen(mqttTlsServer, config.mqttTlsPort, config.host);
        } catch (error) {
          if (isAddressInUse(error)) {
            throw new PortInUseError('MQTT TLS', config.mqttTlsPort, '--mqtt-tls-port', { cause: error });
          }
          throw error;
        }
        mqttTlsEndpoint = { host: publicHost, port: tlsPort, url: `mqtts://${urlHost(publicHost)}:${tlsPort}` };
      }
      const openReadiness = createReadiness({
        probeDatabase: () => store.probeWrite(),
        disk,
        mqtt: () =>
          external
            ? { external: external.url, connected: external.broker.connected }
            : { listening: mqttServer?.listening === true, port: mqttPort },
        clock,
        timers,
        metrics,
        logger: logger.child({ component: 'readiness' }),
        intervalMs: config.readiness.intervalMs,
        flushErrorWindowMs: config.readiness.flushErrorWindowS * 1000,
      });
      readiness = openReadiness;
      cleanups.push(() => openReadiness.stop());

      const blobs = createBlobStore({ root: join(config.dataDir, 'blobs') });
      blobs.sweepTemporary();
      const lineage = createLineageService({
        lineage: store.modelLineage,
        models: store.models,
        datasets: store.datasets,
        runs: store.retrainingRuns,
        rollouts: store.rollouts,
        clock,
        audit,
        flagged: metrics.counter(
          'edgeloop_model_lineage_flags_total',
          'Registered releases whose lineage names something unknown (accepted, flagged), by flag',
        ),
      });
      const registry = createModelRegistry({
        models: store.models,
        blobs,
        trustedKeys: trustedKeys.value,
        clock,
        metrics,
        bus,
        lineage,
      });
      const evaluations = createEvaluationService({
        evaluations: store.evaluations,
        models: store.models,
        datasets: store.datasets,
        clock,
      });
      const rolloutService = createRolloutService({
        rollouts: store.rollouts,
        models: store.models,
        devices: store.devices,
        messages: store.messages,
        datasets: store.datasets,
        evaluations: store.evaluations,
        bus,
        clock,
      });
      const engine = createRolloutEngine({
        store,
        fleet,
        bus,
        clock,
        timers,
        metrics,
        logger: logger.child({ component: 'rollouts' }),
        audit,
        lock: store.openLeaderLock(ROLLOUT_LEADER_LOCK_KEY),
        tickMs: config.rollouts.tickMs,
        leaderRetryMs: config.rollouts.leaderRetryMs,
        assignmentTtlMs: config.rollouts.assignmentTtlHours * 3_600_000,
      });
      // Model assignments are renewed before their expiresAt lapses (on the rollout leader).
      const assignmentRefresher = createAssignmentRefresher({
        devices: store.devices,
        publishDesired: (deviceId, desired) => openBroker.publishDesired(deviceId, desired),
        clock,
        timers,
        metrics,
        ttlMs: config.rollouts.assignmentTtlHours * 3_600_000,
        isLeader: () => engine.isLeader,
        onError: (error) => logger.error({ err: error }, 'assignment refresh failed'),
      });

      const openDrift = createDriftMonitor({
        repo: store.drift,
        devices: store.devices,
        messages: store.messages,
        datasets: store.datasets,
        samplePolicies: {
          list: () => store.samplePolicies.list(),
          set: createSamplePolicyService({ policies: store.samplePolicies, devices: store.devices, fleet, clock }).set,
        },
        audit,
        bus,
        metrics,
        clock,
        timers,
        logger: logger.child({ component: 'drift' }),
        config: config.drift,
        isLeader: () => engine.isLeader,
      });
      drift = openDrift;
      bus.subscribe((message) => {
        if (message.type === 'device.enrolled')
          openDrift.noteDeviceSite(message.data.deviceId, message.data.labels.site ?? null);
      });

      const samples = createSampleService({
        samples: store.samples,
        blobs,
        dataDir: config.dataDir,
        clock,
        metrics,
        config: config.samples,
      });

      // Retraining: policies fire runs that freeze a dataset version and deliver a signed webhook.
      // The public base URL (export and run links) is known once the HTTP port is.
      let publicHttpUrl = '';
      const retrainingSecrets = createSecretBox(pepper);
      let retrainingDeliverer: WebhookDeliverer | null = null;
      const retrainingStop = new AbortController();
      const publishRun = (run: RetrainingRunRecord) =>
        bus.publish('retraining.run', {
          runId: run.runId,
          modelName: run.modelName,
          status: run.status,
          reason: (run.reason as { kind?: string }).kind ?? 'manual',
          datasetId: run.datasetId,
          attempts: run.attempts,
          lastStatusCode: run.lastStatusCode,
          resultModelId: run.resultModelId,
        });
      const retraining = createRetrainingService({
        policies: store.retrainingPolicies,
        runs: store.retrainingRuns,
        datasets: createDatasetService({ datasets: store.datasets, samples: store.samples, blobs, clock }),
        models: store.models,
        rollouts: store.rollouts,
        driftStates: () => openDrift.list({ scope: 'site' }).items,
        secrets: retrainingSecrets,
        baseUrl: () => publicHttpUrl,
        clock,
        audit,
        onRunChanged: (run) => {
          publishRun(run);
          if (run.status === 'delivering') retrainingDeliverer?.kick();
        },
      });
      const deliverer = createWebhookDeliverer({
        runs: store.retrainingRuns,
        secretOf: (modelName) => retraining.secretOf(modelName),
        fetch: globalThis.fetch,
        clock,
        baseUrl: () => publicHttpUrl,
        maxAttempts: config.retraining.maxAttempts,
        backoff: { baseMs: config.retraining.backoffBaseS * 1000, maxMs: config.retraining.backoffMaxS * 1000 },
        timeoutMs: config.retraining.webhookTimeoutS * 1000,
        concurrency: config.retraining.concurrency,
        metrics,
        logger: logger.child({ component: 'retraining' }),
        audit,
        userAgent: `edgeloop/${VERSION}`,
        signal: retrainingStop.signal,
        onAttempt: publishRun,
      });
      retrainingDeliverer = deliverer;
      const retrainingLoop = createRetrainingLoop({
        service: retraining,
        policies: store.retrainingPolicies,
        runs: store.retrainingRuns,
        samples: store.samples,
        driftStates: () => openDrift.list({ scope: 'site' }).items,
        deliverer,
        isLeader: () => engine.isLeader,
        clock,
        timers,
        intervalMs: config.retraining.intervalS * 1000,
        pollMs: config.retraining.pollMs,
        metrics,
        logger: logger.child({ component: 'retraining' }),
      });

      const shutdown = new AbortController();
      const app = createApp({
        store,
        fleet,
        tokens,
        deviceSecrets,
        isConnected: (deviceId) => openBroker.isConnected(deviceId),
        bus,
        metrics,
        config,
        clock,
        logger: logger.child({ component: 'http' }),
        version: VERSION,
        status: () => ({ connectedClients: openBroker.connectedCount, queueDepth: ingest.stats().queueDepth }),
        fleetPipeline: () => ingest.fleetPipeline(),
        signal: shutdown.signal,
        models: {
          registry,
          blobs,
          rollouts: store.rollouts,
          uploadLimitBytes: config.models.uploadLimitBytes,
        },
        rollouts: rolloutService,
        samples: { service: samples, maxBytes: config.samples.maxBytes },
        datasets: {
          service: createDatasetService({ datasets: store.datasets, samples: store.samples, blobs, clock }),
          labelsLimitBytes: DEFAULT_LABELS_LIMIT_BYTES,
        },
        evaluations,
        lineage,
        drift: openDrift,
        retraining: { service: retraining, policies: store.retrainingPolicies },
        samplePolicies: createSamplePolicyService({
          policies: store.samplePolicies,
          devices: store.devices,
          fleet,
          clock,
        }),
        ...(deps.extraRoutes ? { extraRoutes: deps.extraRoutes } : {}),
        audit: { log: audit, repo: store.audit },
        idempotency: createIdempotency({
          repo: store.idempotency,
          clock,
          pepper,
          ttlMs: config.idempotency.ttlHours * 3_600_000,
          maxResponseBytes: config.idempotency.maxResponseBytes,
          inFlightTimeoutMs: config.idempotency.inFlightTimeoutS * 1000,
          outcomes: metrics.counter(
            'edgeloop_idempotency_requests_total',
            'Requests with an Idempotency-Key, by outcome',
          ),
        }),
        storage: {
          refusal: () => (disk.low() ? (disk.state().reason ?? 'below the watermark') : null),
          noteError: (error) => disk.noteError(error),
          retryAfterS: config.readiness.retryAfterS,
        },
        readiness: () => openReadiness.check(),
      });
      const httpServer = (
        tls
          ? createAdaptorServer({
              fetch: app.fetch,
              createServer: createHttpsServer,
              serverOptions: tls.httpsOptions(),
            })
          : createAdaptorServer({ fetch: app.fetch })
      ) as HttpServer;
      if (tls) tls.attachHttps(httpServer as unknown as TlsServer);
      let httpPort: number;
      try {
        httpPort = await listen(httpServer, config.httpPort, config.host);
      } catch (error) {
        if (isAddressInUse(error)) throw new PortInUseError('HTTP', config.httpPort, '--http-port', { cause: error });
        throw error;
      }
      publicHttpUrl = `${tls ? 'https' : 'http'}://${urlHost(publicHost)}:${httpPort}`;
      cleanups.push(async () => {
        shutdown.abort();
        await closeServer(httpServer);
      });

      // Lapsed assignments (a control plane that was down for long) are renewed before the broker gets them.
      await assignmentRefresher.runNow();
      const republished = await fleet.republishDesired();

      const sweeper = createHealthSweeper({ ingest, timers, intervalMs: config.health.sweepIntervalMs });
      sweeper.start();
      const pruner = createRetentionPruner({
        messages: store.messages,
        deadLetters: store.deadLetters,
        clock,
        timers,
        retention: config.retention,
        samples,
        onError: (error) => logger.error({ err: error }, 'retention pruning failed'),
      });
      pruner.start();
      const governancePruner = createGovernancePruner({
        audit: store.audit,
        idempotency: store.idempotency,
        clock,
        timers,
        auditDays: config.retention.auditDays,
        intervalS: config.retention.pruneIntervalS,
        onError: (error) => logger.error({ err: error }, 'audit / idempotency pruning failed'),
      });
      governancePruner.start();
      await openReadiness.check();
      openReadiness.start();
      assignmentRefresher.start();
      cleanups.push(() => {
        sweeper.stop();
        assignmentRefresher.stop();
        pruner.stop();
        governancePruner.stop();
      });
      // Started last, stopped first: it writes through the store and publishes through the broker.
      engine.start();
      cleanups.push(() => engine.stop());
      // On the leader only (the rollout engine's lock); deliveries in flight finish before the store closes.
      retrainingLoop.start();
      cleanups.push(async () => {
        retrainingLoop.stop();
        retrainingStop.abort();
        await deliverer.idle();
      });
      await openDrift.start();
      cleanups.push(() => openDrift.stop());

      internals = {
        config,
        store,
        broker: openBroker,
        mqttFront,
        deviceIssues,
        ingest,
        bus,
        metrics,
        fleet,
        tokens,
        waiters,
        app,
        eventLoop,
        blobs,
        registry,
        rollouts: { service: rolloutService, engine, assignments: assignmentRefresher },
        samples,
        retraining: { service: retraining, loop: retrainingLoop, deliverer },
        disk,
        readiness: openReadiness,
        tls,
        drift: openDrift,
      };
      state = 'running';
      const httpHost = urlHost(wildcard ? 'localhost' : config.host);
      const started: StartedControlPlane = {
        httpPort,
        mqttPort,
        httpUrl: `${tls ? 'https' : 'http'}://${httpHost}:${httpPort}`,
        mqttUrl: mqttEndpoint.url,
        mqttTlsPort: mqttTlsEndpoint?.port ?? null,
        mqttTlsUrl: mqttTlsEndpoint?.url ?? null,
        adminToken: generated,
      };
      logger.info(
        {
          httpPort,
          mqttPort,
          mqttTlsPort: mqttTlsEndpoint?.port ?? null,
          fleetCa: tls?.fleetCa()?.fingerprint ?? null,
          dataDir: config.dataDir,
          store: store.dialect,
          desiredRepublished: republished,
          trustedKeys: registry.trustedKeyIds,
          version: VERSION,
        },
        'control plane started',
      );
      if (registry.trustedKeyIds.length === 0) {
        logger.warn('no trusted keys configured (--trusted-keys): model uploads are refused');
      }
      return started;
    } catch (error) {
      await runCleanups();
      state = 'stopped';
      throw error;
    }
  };

  return {
    start,
    async stop() {
      if (state !== 'running') return;
      state = 'stopping';
      // Reverse order of start: timers, HTTP, MQTT listener, broker (its wills reach the
      // ingest queue), ingest flush, event-loop monitor, database.
      await runCleanups();
      internals = null;
      state = 'stopped';
      logger.info('control plane stopped');
    },
    async reloadTls() {
      if (!tlsListeners) return ok(null);
      return tlsListeners.reload();
    },
    get internals() {
      if (!internals) throw new Error('the control plane is not running');
      return internals;
    },
  };
}
