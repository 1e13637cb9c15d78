import {
  type Agent,
  AgentConfig,
  type AgentDeps,
  type Clock,
  createAgent,
  createMemoryDesiredStore,
  createMemoryModelStorage,
  createOutbox,
  createSeededRandom,
  type DesiredStore,
  type ModelStorage,
  type Outbox,
  seedOf,
  silentLogger,
} from '@edgeloop/agent';
import type { ModelRef, PipelineMetrics, SystemMetrics } from '@edgeloop/protocol';
import { profileIn } from './model-behaviour.ts';
import { NetworkFaults } from './net-fault.ts';
import { DEFAULT_MODEL_PROFILE, type HardwareProfile, type ModelProfile } from './profiles.ts';
import { createSyntheticFrames, type SyntheticFrames } from './sample-frames.ts';
import { createInterner, shareConfigSections } from './shared-config.ts';
import { createSimMqtt, type SimMqtt } from './sim-mqtt.ts';
import { type PlayedModel, type ServedModel, SimulatedModelRuntime } from './sim-runtime.ts';
import { syntheticPipelineWindow, syntheticSystemMetrics } from './synthetic-metrics.ts';

/*
 * One simulated device: the agent's own code (createAgent: sequencer, outbox core, publisher,
 * link, telemetry, desired state, commands) with only the camera, inference and sensors
 * simulated, plus fault injection. Under the link, the MQTT client is the simulator's light one
 * (sim-mqtt.ts: mqtt-packet on a plain socket, one parser and one timer per fleet) instead of
 * one mqtt.js client per device. Its memory outbox and desired store play the part of the
 * disk: they survive a simulated kill and reboot (a revived device has a new bootId and sends
 * what the dead one left unacknowledged).
 */

export type AckObserver = {
  /** A message was appended to a device's outbox at `at` (its envelope ts). */
  appended(deviceId: string, msgId: string, at: number): void;
  /** The broker acknowledged it (stored, for the control plane's embedded broker). */
  acked(deviceId: string, msgId: string, at: number): void;
};

export type VirtualDeviceOptions = {
  readonly id: string;
  readonly password: string;
  readonly mqttHost: string;
  readonly mqttPort: number;
  readonly hardware: HardwareProfile;
  readonly site: string;
  readonly keepaliveS: number;
  readonly telemetryIntervalS: number;
  readonly cameraFps: number;
  readonly outboxMaxBytes: number;
  /** Mixed with the id into the device's random stream (another seed, another draw of metrics). */
  readonly seed?: number;
  readonly model?: ServedModel | null;
  readonly observer?: AckObserver;
  /**
   * The MQTT client hub the device connects through (one per fleet: one parser and one timer
   * for all its devices); a device of its own gets one of its own.
   */
  readonly mqtt?: SimMqtt;
  readonly reconnect?: { readonly initialMs: number; readonly maxMs: number; readonly jitter: number };
  /**
   * Model updates through the agent's real model manager: downloads from the control plane with
   * the device credential, signature checks against these keys, memory slots, played models.
   */
  readonly models?: SimulatedModels;
  /**
   * Hard samples through the agent's own capture code (policy from desired state, selection,
   * budget, spool, resumable upload): synthetic frames with known boxes are offered at `fps`
   * while a policy is enabled. The spool and the budget counters live in `dir` (kept across a
   * simulated kill and reboot, like the disk).
   */
  readonly samples?: SimulatedSamples;
};

export type SimulatedSamples = {
  readonly controlPlaneUrl: string;
  readonly dir: string;
  /** Frames per second offered to the capture (default 2). */
  readonly fps?: number;
  readonly width?: number;
  readonly height?: number;
};

export type SimulatedModels = {
  readonly controlPlaneUrl: string;
  readonly trustedKeyPems: readonly string[];
  /** The model every device runs before any rollout. */
  readonly local: ModelRef | null;
  readonly behaviourOf: (ref: ModelRef) => PlayedModel;
  readonly healthCheckMs: number;
};

export type DeviceCondition = 'running' | 'stopped' | 'killed' | 'partitioned';

/** Outbox decorator that reports appends and acks (publish-to-stored lag, loss accounting). */
class ObservedOutbox implements Outbox {
  readonly #inner: Outbox;
  readonly #deviceId: string;
  readonly #observer: AckObserver;
  readonly #clock: Clock;

  constructor(inner: Outbox, deviceId: string, observer: AckObserver, clock: Clock) {
    this.#inner = inner;
    this.#deviceId = deviceId;
    this.#observer = observer;
    this.#clock = clock;
  }
  append(input: Parameters<Outbox['append']>[0]) {
    const result = this.#inner.append(input);
    if (result.accepted) this.#observer.appended(this.#deviceId, input.msgId, this.#clock.now());
    return result;
  }
  nextBatch(limit: number) {
    return this.#inner.nextBatch(limit);
  }
  ack(msgId: string) {
    const done = this.#inner.ack(msgId);
    if (done) this.#observer.acked(this.#deviceId, msgId, this.#clock.now());
    return done;
  }
  release(msgId: string) {
    return this.#inner.release(msgId);
  }
  requeueInflight() {
    return this.#inner.requeueInflight();
  }
  entries() {
    return this.#inner.entries();
  }
  get pending() {
    return this.#inner.pending;
  }
  stats() {
    return this.#inner.stats();
  }
  close() {
    this.#inner.close();
  }
}

const realClock: Clock = { now: () => Date.now() };
/** Config sections equal across devices, kept once for all devices of this process. */
const internSection = createInterner();

export class VirtualDevice {
  readonly id: string;
  readonly hardware: HardwareProfile;
  readonly site: string;
  readonly faults: NetworkFaults;
  readonly #options: VirtualDeviceOptions;
  readonly #random: () => number;
  readonly #desiredStore: DesiredStore;
  readonly #modelStorage: ModelStorage | null;
  readonly #clock: Clock;
  readonly #createClient: NonNullable<AgentDeps['createClient']>;
  #outbox: Outbox;
  #agent: Agent | null = null;
  #condition: DeviceCondition = 'stopped';
  #skewMs = 0;
  #extraTempC = 0;
  #stalled = false;
  #bootedAt = Date.now();
  #lastWindowAt = Date.now();
  #lastInferenceAt: number | null = null;
  #boots = 0;
  #frames: SyntheticFrames | null = null;
  #frameTimer: ReturnType<typeof setInterval> | null = null;
  /** The model the simulated pipeline runs: undefined plays a default detector, null runs none. */
  #model: ServedModel | null | undefined;
  /** The scene the camera sees (null: the normal one), and whether the next window reports a change. */
  #scene: string | null = null;
  #sceneChanged = false;

  constructor(options: VirtualDeviceOptions) {
    this.id = options.id;
    this.hardware = options.hardware;
    this.site = options.site;
    this.#options = options;
    this.#random = createSeededRandom(
      seedOf(options.seed === undefined ? options.id : `${options.seed}/${options.id}`),
    );
    this.#model = options.model;
    this.faults = new NetworkFaults(options.mqttHost, options.mqttPort);
    this.#createClient = (options.mqtt ?? createSimMqtt()).clientFactory(this.faults);
    this.#desiredStore = createMemoryDesiredStore();
    this.#modelStorage = options.models ? createMemoryModelStorage() : null;
    if (options.models) {
      const local = options.models.local;
      const played = local ? options.models.behaviourOf(local) : null;
      this.#model = local && played ? { ref: local, profile: played.profile, scenes: played.scenes } : null;
    }
    const device = this;
    this.#clock = {
      now() {
        return Date.now() + device.#skewMs;
      },
    };
    this.#outbox = this.#wrap(createOutbox({ maxBytes: options.outboxMaxBytes }));
  }

  #wrap(outbox: Outbox): Outbox {
    const observer = this.#options.observer;
    return observer ? new ObservedOutbox(outbox, this.id, observer, realClock) : outbox;
  }

  get condition(): DeviceCondition {
    return this.#condition;
  }

  get agent(): Agent | null {
    return this.#agent;
  }

  get boots(): number {
    return this.#boots;
  }

  get connected(): boolean {
    return this.#agent?.link.state === 'connected';
  }

  get pending(): number {
    return this.#outbox.pending;
  }

  #newAgent(): Agent {
    const options = this.#options;
    const parsed = AgentConfig.parse({
      deviceId: options.id,
      mqtt: {
        url: `mqtt://${options.mqttHost}:${options.mqttPort}`,
        password: options.password,
        keepaliveS: options.keepaliveS,
        ...(options.reconnect ? { reconnect: options.reconnect } : {}),
      },
      dataDir: '/nonexistent/simulated',
      telemetry: { intervalS: options.telemetryIntervalS },
      hardware: { profile: options.hardware.name },
      logLevel: 'silent',
      ...(options.samples ? { controlPlaneUrl: options.samples.controlPlaneUrl } : {}),
      ...(options.models
        ? {
            controlPlaneUrl: options.models.controlPlaneUrl,
            models: { trustedKeyPems: [...options.models.trustedKeyPems] },
          }
        : {}),
    });
    const config = shareConfigSections(parsed, internSection);
    const device = this;
    const models = options.models;
    const runtime = models
      ? new SimulatedModelRuntime({
          pipeline: {
            hardwareSpeed: this.hardware.speed,
            cameraFps: options.cameraFps,
            setModel(model) {
              device.#model = model;
            },
            scene() {
              return device.#scene;
            },
            random() {
              return device.#random();
            },
          },
          behaviourOf: models.behaviourOf,
          local: models.local,
          healthCheckMs: models.healthCheckMs,
          shadowShare: 0.2,
        })
      : null;
    return createAgent({
      config,
      logger: silentLogger,
      clock: this.#clock,
      random: this.#random,
      outbox: this.#outbox,
      desiredStore: this.#desiredStore,
      hardware: { arch: options.hardware.arch, platform: 'linux' },
      readSystem() {
        return Promise.resolve(device.#system());
      },
      pipelineMetrics() {
        return device.#pipeline();
      },
      createClient: this.#createClient,
      ...(runtime && this.#modelStorage ? { modelRuntime: runtime, modelStorage: this.#modelStorage } : {}),
      ...(options.samples ? { sampleCapture: { dir: options.samples.dir, options: { fsync: false } } } : {}),
    });
  }

  /** Offers a synthetic frame to the capture every 1/fps s while a sample policy is enabled. */
  #startFrames(): void {
    const samples = this.#options.samples;
    if (!samples || this.#frameTimer) return;
    this.#frames ??= createSyntheticFrames({
      width: samples.width ?? 160,
      height: samples.height ?? 120,
      random: this.#random,
    });
    const frames = this.#frames;
    this.#frameTimer = setInterval(
      () => {
        const capture = this.#agent?.samples;
        if (!capture?.policy?.enabled || this.#stalled) return;
        const ref = this.#model?.ref;
        capture.offer(frames.next(this.#clock.now(), ref ? { id: ref.id, sha256: ref.sha256 } : null));
      },
      1000 / (samples.fps ?? 2),
    );
    this.#frameTimer.unref?.();
  }

  #stopFrames(): void {
    if (this.#frameTimer) clearInterval(this.#frameTimer);
    this.#frameTimer = null;
  }

  /** What the pipeline plays now: the model's profile on the current scene. */
  #profile(): ModelProfile {
    return this.#model ? profileIn(this.#model, this.#scene) : DEFAULT_MODEL_PROFILE;
  }

  #utilisation(): number {
    const model = this.#profile();
    const frameMs = 1000 / this.#options.cameraFps;
    return Math.min(1, model.latencyMs / this.hardware.speed / frameMs);
  }

  #system(): SystemMetrics {
    return syntheticSystemMetrics({
      hardware: this.hardware,
      uptimeS: (Date.now() - this.#bootedAt) / 1000,
      utilisation: this.#stalled ? 0.05 : this.#utilisation(),
      extraTempC: this.#extraTempC,
      diskUsedShare: 0.3,
      random: this.#random,
    });
  }

  #pipeline(): PipelineMetrics | undefined {
    const model = this.#model;
    if (model === null) return undefined;
    const now = this.#clock.now();
    const windowS = Math.max(0.1, (Date.now() - this.#lastWindowAt) / 1000);
    this.#lastWindowAt = Date.now();
    const window = syntheticPipelineWindow({
      hardware: this.hardware,
      model: this.#profile(),
      modelRef: model?.ref ?? null,
      windowS,
      cameraFps: this.#options.cameraFps,
      now,
      random: this.#random,
      stalled: this.#stalled,
      sceneChange: this.#sceneChanged,
      lastInferenceAt: this.#lastInferenceAt,
    });
    this.#sceneChanged = false;
    this.#lastInferenceAt = window.lastInferenceAt;
    return window;
  }

  /** Boots the agent (a new bootId each time) and connects. */
  async start(): Promise<void> {
    if (this.#condition === 'running' || this.#condition === 'partitioned') return;
    this.faults.heal();
    this.#boots += 1;
    this.#bootedAt = Date.now();
    this.#lastWindowAt = Date.now();
    this.#agent = this.#newAgent();
    this.#condition = 'running';
    await this.#agent.start();
    this.#startFrames();
  }

  /** Clean shutdown: shutdown status, drain, DISCONNECT (the broker drops the will). */
  async stop(): Promise<void> {
    const agent = this.#agent;
    if (!agent || this.#condition === 'stopped' || this.#condition === 'killed') return;
    this.#condition = 'stopped';
    this.#stopFrames();
    await agent.stop({ graceful: true, drainTimeoutMs: 2000 });
    this.#carryOutbox();
  }

  /** The process dies: no DISCONNECT, the kernel closes the socket, the broker sends the will. */
  async kill(): Promise<void> {
    const agent = this.#agent;
    if (!agent || this.#condition === 'stopped' || this.#condition === 'killed') return;
    this.#condition = 'killed';
    this.#stopFrames();
    this.faults.killSockets();
    await agent.stop({ graceful: false });
    this.#carryOutbox();
  }

  /**
   * The network silently drops everything (no FIN, no RST): the broker notices only through its
   * keepalive timer, and the device keeps queueing into its outbox and retrying.
   */
  partition(): void {
    if (this.#condition !== 'running') return;
    this.#condition = 'partitioned';
    this.faults.partition();
  }

  /** The network is back after a partition; the link reconnects on its own backoff. */
  heal(): void {
    if (this.#condition !== 'partitioned') return;
    this.#condition = 'running';
    this.faults.heal();
  }

  /** Kill while partitioned: the process dies where the broker cannot see it. */
  async freeze(): Promise<void> {
    const agent = this.#agent;
    if (!agent || this.#condition !== 'partitioned') return;
    this.#condition = 'killed';
    this.#stopFrames();
    await agent.stop({ graceful: false });
    this.#carryOutbox();
  }

  /** The outbox content survives a stop the way the file outbox does on disk. */
  #carryOutbox(): void {
    const restored = [...this.#outbox.entries()];
    this.#outbox = this.#wrap(createOutbox({ maxBytes: this.#options.outboxMaxBytes, restored }));
  }

  setClockSkew(seconds: number): void {
    this.#skewMs = seconds * 1000;
  }

  setExtraTemperature(celsius: number): void {
    this.#extraTempC = celsius;
  }

  setStalled(stalled: boolean): void {
    this.#stalled = stalled;
  }

  setModel(model: ServedModel | null): void {
    this.#model = model;
  }

  /** The scene the camera sees now (null: the normal one). */
  get scene(): string | null {
    return this.#scene;
  }

  /**
   * The camera's scene changes (null: back to normal): the model plays its profile for that
   * scene from the next window on, and that window raises `camera.sceneChange`.
   */
  setScene(scene: string | null): void {
    if (scene === this.#scene) return;
    this.#scene = scene;
    this.#sceneChanged = true;
  }
}
