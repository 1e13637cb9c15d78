import os from 'node:os';
import path from 'node:path';
import { parseTrustedKeys, type TrustedKey } from '@edgeloop/firmware-images/verify';
import type {
  DeviceEvent,
  Envelope,
  JsonObject,
  PipelineMetrics,
  Result,
  ShadowMetrics,
  SystemMetrics,
} from '@edgeloop/protocol';
import { SampleCaptureArgs } from '@edgeloop/protocol';
import type { IClientOptions, MqttClient } from 'mqtt';
import { type Clock, systemClock, systemTimers, type Timers } from './clock.ts';
import { CommandError, type Commands, createCommands, registerBuiltinCommands } from './commands.ts';
import { type AgentConfig, diffConfig, type LoadConfigResult, type LogLevel } from './config.ts';
import {
  type CredentialStore,
  type DeviceCredentials,
  fileCredentialStore,
  registerRotateCredentials,
} from './credentials.ts';
import { createDesiredState, createFileDesiredStore, type DesiredState, type DesiredStore } from './desired-state.ts';
import { createLink, type Link } from './link.ts';
import { type Logger, silentLogger } from './logger.ts';
import { createModelManager, type ModelManager } from './model-update/manager.ts';
import type { ModelRuntime } from './model-update/runtime.ts';
import { createFileModelStorage, type ModelStorage } from './model-update/storage.ts';
import { createVisionModelRuntime } from './model-update/vision-runtime.ts';
import type { LaneCounts, Outbox } from './outbox.ts';
import { openFileOutbox, type RecoveryStats } from './outbox-file.ts';
import { createPublisher, type PublishError, type Publisher } from './publisher.ts';
import { createSampleCapture, type SampleCapture, type SampleCaptureDeps } from './samples/capture.ts';
import { createSequencer, type Sequencer } from './sequencer.ts';
import { createSystemMetrics, type SystemMetricsReader } from './system-metrics.ts';
import { createTelemetry, type Telemetry } from './telemetry.ts';
import { AGENT_VERSION } from './version.ts';
import type { Vision, VisionDeps, VisionFault } from './vision/vision.ts';

/*
 * The agent: config + sequencer + outbox + publisher + link + telemetry + desired state +
 * commands, wired together. `createAgent` opens the outbox (file-backed under
 * `<dataDir>/outbox` unless one is given); `start()` re-applies the persisted desired state,
 * emits `agent.started` and connects; `stop({ graceful: true })` publishes Status
 * {offline, shutdown}, drains the outbox for up to drainTimeoutMs and disconnects cleanly (no
 * will). Outbox drops are reported as `outbox.dropped` events (counts since the last report)
 * after every telemetry tick and every connect.
 *
 * With `config.vision` and a `createVision` dep (main.ts passes vision.ts's; type-only import
 * here, so the simulator never loads onnxruntime), the agent runs the vision pipeline: its
 * metrics are telemetry's `pipeline`, its source faults become `camera.fault` (others
 * `agent.fault`) events, its execution providers go into Reported.providers. The model manager
 * (model-update/manager.ts) runs on the vision runtime, or on `deps.modelRuntime` (the
 * simulator's), and plugs into desired state (`model`) and Reported (`model`).
 */

export type AgentDeps = {
  readonly config: AgentConfig;
  /**
   * Where a rotated secret is kept (rotate-credentials): mqtt.passwordFile by default; null or no
   * passwordFile refuses rotation. The simulator passes one in memory.
   */
  readonly credentialStore?: CredentialStore | null;
  readonly logger?: Logger;
  readonly clock?: Clock;
  readonly timers?: Timers;
  readonly random?: () => number;
  readonly agentVersion?: string;
  readonly bootId?: string;
  /** Re-reads the config for `reload-config`; without it the command answers `failed`. */
  readonly reloadConfig?: () => LoadConfigResult | Promise<LoadConfigResult>;
  /** Applies a new log level at runtime (main wires pino's level). */
  readonly setLogLevel?: (level: LogLevel) => void;
  /** Defaults to the file outbox under `<dataDir>/outbox`. */
  readonly outbox?: Outbox;
  /** Defaults to `<dataDir>/desired.json`. */
  readonly desiredStore?: DesiredStore;
  /**
   * Hard-sample capture without a vision pipeline (the simulator): the policy from desired state,
   * the capture command, telemetry and uploads as usual; frames come through `samples.offer()`.
   * `dir` holds the spool and the budget counters (default `<dataDir>/samples`).
   */
  readonly sampleCapture?: { readonly dir?: string; readonly options?: SampleCaptureDeps['options'] };
  /** Defaults to systeminformation + sysfs (system-metrics.ts). */
  readonly readSystem?: () => Promise<SystemMetrics>;
  readonly pipelineMetrics?: () => PipelineMetrics | undefined;
  readonly shadowMetrics?: () => ShadowMetrics | undefined;
  readonly createClient?: (options: IClientOptions) => MqttClient;
  readonly mqttOptions?: Partial<IClientOptions>;
  /** arch/platform reported in Reported.hardware (defaults: os.arch(), os.platform()). */
  readonly hardware?: { readonly arch?: string; readonly platform?: string };
  /** Builds the vision pipeline from `config.vision` (main.ts passes vision.ts's createVision). */
  readonly createVision?: (deps: VisionDeps) => Vision;
  /** PATH-style folders for ffmpeg and camera programs (main.ts passes process.env.PATH). */
  readonly searchPath?: string;
  /**
   * Runs models for the model manager. Default: the vision runtime when a vision pipeline runs;
   * none (and no model manager) otherwise. The simulator passes a runtime that plays models.
   */
  readonly modelRuntime?: ModelRuntime;
  /** Model slots, downloads and the update record; default: files under `<dataDir>/models`. */
  readonly modelStorage?: ModelStorage;
  /** For model downloads (default: global fetch). */
  readonly fetch?: typeof fetch;
};

export type AgentEvent = Omit<DeviceEvent, keyof Envelope | 'data'> & { readonly data?: JsonObject };

export interface Agent {
  readonly bootId: string;
  readonly config: AgentConfig;
  readonly sequencer: Sequencer;
  readonly outbox: Outbox;
  readonly publisher: Publisher;
  readonly link: Link;
  readonly telemetry: Telemetry;
  readonly desired: DesiredState;
  readonly commands: Commands;
  /** The vision pipeline, when config.vision is set and a createVision dep was given. */
  readonly vision: Vision | null;
  /** The model manager, when a model runtime exists. */
  readonly models: ModelManager | null;
  /** Hard-sample capture (samples/capture.ts), when the vision pipeline runs or deps.sampleCapture asks. */
  readonly samples: SampleCapture | null;
  start(): Promise<void>;
  stop(options?: { readonly graceful?: boolean; readonly drainTimeoutMs?: number }): Promise<void>;
  emitEvent(event: AgentEvent): Result<Envelope, PublishError>;
  stats(): Record<string, unknown>;
}

export function createAgent(deps: AgentDeps): Agent {
  return new AgentRuntime(deps);
}

/**
 * A class rather than closures: the simulator runs thousands of agents in one process, and
 * callbacks handed to the parts are object-literal methods (no per-instance function names).
 */
class AgentRuntime implements Agent {
  readonly bootId: string;
  readonly sequencer: Sequencer;
  readonly outbox: Outbox;
  readonly publisher: Publisher;
  readonly link: Link;
  readonly telemetry: Telemetry;
  readonly desired: DesiredState;
  readonly commands: Commands;
  readonly vision: Vision | null;
  readonly models: ModelManager | null;
  readonly samples: SampleCapture | null;
  readonly #deps: AgentDeps;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #agentVersion: string;
  readonly #recovery: RecoveryStats | undefined;
  readonly #systemReader: SystemMetricsReader | null;
  readonly #reportedDrops: LaneCounts = { control: 0, events: 0, telemetry: 0 };
  #config: AgentConfig;
  #startedAt: number;
  #running = false;

  constructor(deps: AgentDeps) {
    const config = deps.config;
    this.#deps = deps;
    this.#config = config;
    const logger = (deps.logger ?? silentLogger).child({ deviceId: config.deviceId });
    const log = logger.child({ component: 'agent' });
    this.#log = log;
    const clock = deps.clock ?? systemClock;
    const timers = deps.timers ?? systemTimers;
    this.#clock = clock;
    this.#startedAt = clock.now();
    const agentVersion = deps.agentVersion ?? AGENT_VERSION;
    this.#agentVersion = agentVersion;
    const sequencer = createSequencer(deps.bootId === undefined ? { clock } : { clock, bootId: deps.bootId });
    this.sequencer = sequencer;
    this.bootId = sequencer.bootId;

    if (deps.outbox) {
      this.outbox = deps.outbox;
    } else {
      const fileOutbox = openFileOutbox({
        dir: path.join(config.dataDir, 'outbox'),
        maxBytes: config.outbox.maxBytes,
        fsync: config.outbox.fsync,
        fsyncIntervalMs: config.outbox.fsyncIntervalMs,
        onWriteError(error) {
          log.error({ err: error }, 'outbox write failed; message kept in memory');
        },
      });
      this.#recovery = fileOutbox.recovery;
      this.outbox = fileOutbox;
    }
    const outbox = this.outbox;
    // One holder of the secret: the link reads it at every connect, HTTP clients at every request.
    const credentials: DeviceCredentials = { username: config.deviceId, password: config.mqtt.password ?? '' };

    // The link comes last; the publisher reaches it through the agent.
    const agent = this;
    this.publisher = createPublisher({
      sequencer,
      outbox,
      afterAppend() {
        agent.link?.flush();
      },
    });

    const visionConfig = config.vision;
    this.vision =
      visionConfig && deps.createVision
        ? deps.createVision({
            config: visionConfig,
            clock,
            logger,
            searchPath: deps.searchPath,
            onFault(fault) {
              agent.#visionFault(fault);
            },
          })
        : null;
    const vision = this.vision;
    const sourceSize =
      visionConfig && visionConfig.source.kind !== 'images' && visionConfig.source.width && visionConfig.source.height
        ? { width: visionConfig.source.width, height: visionConfig.source.height }
        : undefined;
    const modelRuntime: ModelRuntime | null =
      deps.modelRuntime ??
      (vision
        ? createVisionModelRuntime({
            vision,
            localModel: visionConfig?.model,
            health: {
              ...config.models.health,
              minDurationMs: config.models.health.minDurationS * 1000,
              maxDurationMs: config.models.health.maxDurationS * 1000,
            },
            shadow: config.models.shadow,
            // Frames the shadow compared reach the hard-sample capture (shadow-disagreement).
            onShadowCompared: (result, candidate) => {
              agent.samples?.offerShadow(result, candidate);
            },
            warmupRuns: config.models.warmupRuns,
            warmupFrameSize: sourceSize,
            clock,
            timers,
            logger,
          })
        : null);

    this.#systemReader = deps.readSystem
      ? null
      : createSystemMetrics({ dataDir: config.dataDir, sysfsRoot: config.hardware.sysfsRoot, timers });
    const systemReader = this.#systemReader;
    this.telemetry = createTelemetry({
      publisher: this.publisher,
      intervalS: config.telemetry.intervalS,
      readSystem: deps.readSystem ?? (() => systemReader!.read()),
      ...(deps.pipelineMetrics
        ? { pipelineMetrics: deps.pipelineMetrics }
        : vision
          ? { pipelineMetrics: () => vision.takeMetrics() }
          : {}),
      ...(deps.shadowMetrics
        ? { shadowMetrics: deps.shadowMetrics }
        : modelRuntime
          ? { shadowMetrics: () => modelRuntime.shadowMetrics() }
          : {}),
      sampleTelemetry() {
        return agent.samples?.telemetry();
      },
      outboxMetrics() {
        const stats = agent.outbox.stats();
        const { control, events, telemetry } = stats.dropped;
        return {
          pending: stats.pending,
          pendingBytes: stats.pendingBytes,
          maxBytes: stats.maxBytes,
          droppedTotal: control + events + telemetry,
        };
      },
      afterTick() {
        agent.#reportDrops();
      },
      clock,
      timers,
      logger,
    });

    this.desired = createDesiredState({
      store: deps.desiredStore ?? createFileDesiredStore(path.join(config.dataDir, 'desired.json'), log),
      publisher: this.publisher,
      agentVersion,
      hardware: {
        ...(config.hardware.profile ? { profile: config.hardware.profile } : {}),
        arch: (deps.hardware?.arch ?? os.arch()).slice(0, 32),
        platform: (deps.hardware?.platform ?? os.platform()).slice(0, 32),
      },
      telemetry: this.telemetry,
      defaultTelemetryIntervalS() {
        return agent.#config.telemetry.intervalS;
      },
      onApplyError(applier, applied, error) {
        agent.emitEvent({
          type: 'agent.fault',
          severity: 'error',
          message: `desired state applier "${applier}" failed: ${(error as Error)?.message ?? String(error)}`.slice(
            0,
            2048,
          ),
          data: { desiredVersion: applied.version, applier },
        });
      },
      logger,
    });

    this.models = modelRuntime
      ? createModelManager({
          runtime: modelRuntime,
          storage: deps.modelStorage ?? createFileModelStorage(path.join(config.dataDir, 'models'), log),
          trustedKeys: trustedKeysOf(config.models.trustedKeyPems, log),
          hardwareProfile: config.hardware.profile ?? 'unknown',
          controlPlaneUrl: config.controlPlaneUrl,
          credentials: config.mqtt.password !== undefined ? credentials : undefined,
          emit(event) {
            agent.emitEvent(event);
          },
          onChange() {
            agent.desired.report();
          },
          options: {
            download: {
              initialDelayMs: config.models.download.initialRetryMs,
              maxDelayMs: config.models.download.maxRetryMs,
              maxAttempts: config.models.download.maxAttempts,
            },
          },
          clock,
          timers,
          ...(deps.random ? { random: deps.random } : {}),
          ...(deps.fetch ? { fetch: deps.fetch } : {}),
          logger,
        })
      : null;
    const models = this.models;
    if (models) {
      this.desired.registerApplier('model', (desired) => models.apply(desired.model));
      this.desired.addReportSource(() => ({ model: models.report() }));
    }
    if (vision) {
      this.desired.addReportSource(() => {
        const providers = new Set<string>();
        const active = vision.activeModel();
        if (active) providers.add(active.provider.active);
        return providers.size > 0 ? { providers: [...providers] } : {};
      });
    }

    this.commands = createCommands({ publisher: this.publisher, clock, logger });
    registerBuiltinCommands(this.commands, {
      bootId: sequencer.bootId,
      clock,
      get startedAt() {
        return agent.#startedAt;
      },
      setTelemetryIntervalS(seconds) {
        agent.telemetry.setIntervalS(seconds);
      },
      getTelemetryIntervalS() {
        return agent.telemetry.intervalS;
      },
      reloadConfig() {
        return agent.#reloadConfig();
      },
    });
    registerRotateCredentials(this.commands, {
      credentials,
      store:
        deps.credentialStore !== undefined
          ? deps.credentialStore
          : config.mqtt.passwordFile !== undefined
            ? fileCredentialStore(config.mqtt.passwordFile)
            : null,
      link: {
        reconnect() {
          return agent.link.reconnect();
        },
      },
      emit(event) {
        agent.emitEvent({ ...event, data: event.data ?? {} });
      },
      logger,
    });

    // Hard samples: a sink on the vision pipeline, the policy from desired state, the capture command.
    this.samples =
      vision || deps.sampleCapture
        ? createSampleCapture({
            dir: deps.sampleCapture?.dir ?? path.join(config.dataDir, 'samples'),
            // The real agent encodes in its nice-19 child (inference first on a saturated CPU);
            // the simulator and tests pass their own options (in-process: no child per device).
            options: deps.sampleCapture?.options ?? { encoder: 'child' },
            deviceId: config.deviceId,
            bootId: sequencer.bootId,
            upload: config.controlPlaneUrl
              ? {
                  baseUrl: config.controlPlaneUrl,
                  credentials: config.mqtt.password !== undefined ? credentials : undefined,
                  ...(deps.fetch ? { fetch: deps.fetch } : {}),
                }
              : null,
            onPolicyRefused(message) {
              agent.emitEvent({
                type: 'sample.policy-refused',
                severity: 'error',
                message,
                data: { code: 'invalid_sample_policy' },
              });
            },
            clock,
            timers,
            ...(deps.random ? { random: deps.random } : {}),
            logger,
          })
        : null;
    const samples = this.samples;
    if (samples) {
      vision?.addSink(samples.sink);
      this.desired.registerApplier('samplePolicy', (desired) => {
        samples.applyDesired(desired.samplePolicy);
      });
      this.commands.register('capture', {
        args: SampleCaptureArgs,
        run(args) {
          if (!samples.policy?.enabled) throw new CommandError('failed', 'no enabled sample policy: nothing captures');
          return { frames: samples.capture(args.frames) };
        },
      });
    }

    this.link = createLink({
      deviceId: config.deviceId,
      bootId: sequencer.bootId,
      mqtt: {
        url: config.mqtt.url,
        username: config.mqtt.username,
        // A device with a certificate logs in with it alone; its password serves HTTP only.
        password: config.mqtt.certPem ? '' : (config.mqtt.password ?? ''),
        keepaliveS: config.mqtt.keepaliveS,
        connectTimeoutMs: config.mqtt.connectTimeoutMs,
        reconnect: config.mqtt.reconnect,
        maxInflight: config.mqtt.maxInflight,
      },
      outbox,
      publisher: this.publisher,
      birth() {
        return { agentVersion, telemetryIntervalS: agent.telemetry.intervalS };
      },
      onConnected() {
        agent.desired.report();
        agent.#reportDrops();
      },
      onDesired(message) {
        return agent.desired.handle(message);
      },
      onCommand(command) {
        return agent.commands.handle(command);
      },
      onInvalidCommand(requestId, reason) {
        agent.commands.rejectInvalid(requestId, reason);
      },
      readPassword() {
        return config.mqtt.certPem ? '' : credentials.password;
      },
      clock,
      timers,
      ...(deps.random ? { random: deps.random } : {}),
      ...(deps.logger ? { logger } : {}),
      ...(deps.createClient ? { createClient: deps.createClient } : {}),
      ...(deps.mqttOptions || config.mqtt.certPem || config.mqtt.caPem
        ? { mqttOptions: { ...mqttTlsOptions(config.mqtt), ...deps.mqttOptions } }
        : {}),
    });
  }

  get config(): AgentConfig {
    return this.#config;
  }

  #visionFault(fault: VisionFault): void {
    const camera =
      fault.code.startsWith('source_') || fault.code === 'camera_unavailable' || fault.code === 'decode_failed';
    this.emitEvent({
      type: camera ? 'camera.fault' : 'agent.fault',
      severity: 'error',
      message: fault.message.slice(0, 2048),
      data: { code: fault.code, retryInMs: fault.retryInMs },
    });
  }

  /** Reports outbox drops since the last report as one `outbox.dropped` event. */
  #reportDrops(): void {
    const dropped = this.outbox.stats().dropped;
    const reported = this.#reportedDrops;
    const delta = {
      control: dropped.control - reported.control,
      events: dropped.events - reported.events,
      telemetry: dropped.telemetry - reported.telemetry,
    };
    if (delta.control + delta.events + delta.telemetry <= 0) return;
    const result = this.emitEvent({
      type: 'outbox.dropped',
      severity: 'warning',
      message: 'outbox full: messages dropped (oldest telemetry first)',
      data: { ...delta, totals: { ...dropped } },
    });
    if (result.ok) Object.assign(reported, dropped);
  }

  async #reloadConfig(): Promise<JsonObject> {
    const reload = this.#deps.reloadConfig;
    if (!reload) throw new CommandError('failed', 'this agent was started without a config file to reload');
    const loaded = await reload();
    if (!loaded.ok) {
      const problems = loaded.error.problems.map((problem) => `${problem.path}: ${problem.message}`).join('; ');
      throw new CommandError('failed', `config not reloaded: ${problems}`);
    }
    const next = loaded.value;
    const changed = diffConfig(this.#config, next);
    const applied: string[] = [];
    const restartRequired: string[] = [];
    for (const key of changed) {
      if (key === 'telemetry.intervalS') {
        // A desired interval wins over the local one.
        if (this.desired.current?.telemetryIntervalS === undefined)
          this.telemetry.setIntervalS(next.telemetry.intervalS);
        applied.push(key);
      } else if (key === 'logLevel' && this.#deps.setLogLevel) {
        this.#deps.setLogLevel(next.logLevel);
        applied.push(key);
      } else {
        restartRequired.push(key);
      }
    }
    this.#config = next;
    this.emitEvent({ type: 'agent.config-reloaded', severity: 'info', data: { changed, applied, restartRequired } });
    return { changed, applied, restartRequired };
  }

  emitEvent(event: AgentEvent): Result<Envelope, PublishError> {
    return this.publisher.publish('events', { ...event, data: event.data ?? {} });
  }

  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#startedAt = this.#clock.now();
    if (this.#config.models.trustedKeyPems.length === 0) {
      this.#log.warn(
        { setting: 'models.trustedKeys' },
        'no trusted keys configured (models.trustedKeys): every model release will be refused',
      );
    }
    // The model manager first: it recovers an interrupted update and picks the slot model, which
    // the vision pipeline then runs (else vision starts the locally configured model).
    if (this.models) await this.models.start();
    if (this.vision) {
      try {
        await this.vision.start();
      } catch (error) {
        this.#log.error({ err: error }, 'vision pipeline did not start');
        this.emitEvent({
          type: 'agent.fault',
          severity: 'critical',
          message: `vision pipeline did not start: ${(error as Error).message}`.slice(0, 2048),
          data: { code: String((error as { code?: unknown }).code ?? 'vision_failed') },
        });
      }
    }
    await this.desired.start();
    this.samples?.start();
    const pending = this.outbox.pending;
    const recovery = this.#recovery;
    this.emitEvent({
      type: 'agent.started',
      severity: 'info',
      message: `edgeloop agent ${this.#agentVersion} started`,
      data: {
        agentVersion: this.#agentVersion,
        bootId: this.bootId,
        hardwareProfile: this.#config.hardware.profile ?? null,
        desiredVersion: this.desired.appliedVersion,
        outboxPending: pending,
        ...(recovery ? { outboxRecovery: { ...recovery } } : {}),
      },
    });
    this.link.start();
    this.telemetry.start();
    this.#log.info({ bootId: this.bootId, pending, recovery }, 'agent started');
  }

  async stop(options: { readonly graceful?: boolean; readonly drainTimeoutMs?: number } = {}): Promise<void> {
    if (!this.#running) {
      this.outbox.close();
      return;
    }
    this.#running = false;
    const graceful = options.graceful ?? true;
    this.telemetry.stop();
    this.commands.stop();
    this.desired.stop();
    await this.models?.stop();
    await this.vision?.stop();
    await this.samples?.stop();
    if (graceful) {
      this.publisher.publish('status', {
        state: 'offline',
        reason: 'shutdown',
        session: Math.max(1, this.link.stats().attempts),
        agentVersion: this.#agentVersion,
      });
      const drained = this.link.state === 'connected' ? await this.link.drain(options.drainTimeoutMs ?? 3000) : false;
      this.#log.info({ drained, pending: this.outbox.pending }, 'agent stopping');
    }
    await this.link.stop({ graceful });
    this.outbox.close();
  }

  stats(): Record<string, unknown> {
    return {
      bootId: this.bootId,
      link: this.link.stats(),
      outbox: this.outbox.stats(),
      publisher: this.publisher.stats(),
      telemetry: this.telemetry.stats(),
      commands: this.commands.stats(),
      desired: this.desired.stats(),
      ...(this.models ? { models: this.models.stats() } : {}),
      ...(this.vision ? { vision: this.vision.stats() } : {}),
      ...(this.samples ? { samples: this.samples.stats() } : {}),
      ...(this.#systemReader ? { system: this.#systemReader.stats() } : {}),
    };
  }
}

function trustedKeysOf(pems: readonly string[], log: Logger): readonly TrustedKey[] {
  if (pems.length === 0) return [];
  const parsed = parseTrustedKeys(pems.map((publicKeyPem) => ({ publicKeyPem })));
  if (parsed.ok) return parsed.value;
  // loadConfig checked the keys already; a config built by hand may not have been.
  log.error({ reason: parsed.error.message }, 'trusted keys unusable: every model release will be refused');
  return [];
}

/** mqtt.js TLS options of the config's device certificate, key and CA (mqtts:// URLs). */
function mqttTlsOptions(mqtt: AgentConfig['mqtt']): Partial<IClientOptions> {
  return {
    ...(mqtt.certPem ? { cert: mqtt.certPem } : {}),
    ...(mqtt.keyPem ? { key: mqtt.keyPem } : {}),
    ...(mqtt.caPem ? { ca: mqtt.caPem } : {}),
  };
}
