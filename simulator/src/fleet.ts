import { join } from 'node:path';
import {
  type ApiClient,
  type ApiFailure,
  createApiClient,
  fail,
  type ModelRef,
  ok,
  type Result,
} from '@edgeloop/protocol';
import { createBehaviourTable, type PlayedModel } from './model-behaviour.ts';
import { hardwareProfile, type ModelBehaviour } from './profiles.ts';
import {
  assignHardware,
  durationMs,
  resolveTarget,
  type Scenario,
  type ScenarioStep,
  type SimulatedDeviceInfo,
} from './scenario.ts';
import { createSimMqtt } from './sim-mqtt.ts';
import { type AckObserver, VirtualDevice } from './virtual-device.ts';

/*
 * A simulated fleet: enrolls N devices through the control plane's HTTP API (as an operator
 * would), runs them in this process with the agent's own code, injects scenario faults on a
 * schedule, and keeps the numbers the summary line and the benchmarks print.
 */

export type FleetOptions = {
  readonly controlPlaneUrl: string;
  readonly token: string;
  readonly devices: number;
  /** Device ids are `${prefix}-${index}` (zero-padded). */
  readonly prefix: string;
  readonly hardwareMix?: Readonly<Record<string, number>>;
  readonly sites?: readonly string[];
  /** Overrides the MQTT host/port the enrollment response names. */
  readonly mqttUrl?: string;
  readonly keepaliveS: number;
  readonly telemetryIntervalS: number;
  readonly cameraFps: number;
  readonly outboxMaxBytes: number;
  /** Devices connecting per second (a reconnect storm of thousands is a test of its own). */
  readonly connectRate: number;
  /** Extra labels on every enrolled device. */
  readonly labels?: Readonly<Record<string, string>>;
  readonly fetch?: typeof fetch;
  /**
   * Seeds every device's random stream (with its id): the same seed replays the same metrics,
   * another seed another draw of them. Default: the device id alone.
   */
  readonly seed?: number;
  /** Record publish-to-acknowledged lag and per-message accounting. */
  readonly measure?: boolean;
  readonly reconnect?: { readonly initialMs: number; readonly maxMs: number; readonly jitter: number };
  /**
   * Model updates: devices run the agent's model manager, download from the control plane and
   * verify releases against these public keys (PEM). `local` is what every device runs first.
   */
  readonly models?: {
    readonly trustedKeyPems: readonly string[];
    readonly local: ModelRef | null;
    readonly healthCheckMs?: number;
  };
  /**
   * Hard samples: every device runs the agent's capture code on synthetic frames with known boxes
   * (see virtual-device.ts), under the policy its desired state carries (PUT /api/v1/sample-policy),
   * and uploads to the control plane. `dir` holds one spool and budget folder per device.
   */
  readonly samples?: {
    readonly dir: string;
    readonly fps?: number;
    readonly width?: number;
    readonly height?: number;
  };
};

export type LagStats = { count: number; p50: number; p95: number; p99: number; max: number };

export type FleetStats = {
  readonly devices: number;
  readonly connected: number;
  readonly sent: number;
  readonly acked: number;
  readonly queued: number;
  readonly dropped: number;
  readonly reconnects: number;
  readonly lag: LagStats | null;
};

/** Counts appends and acks per message; keeps a bounded sample of lags. */
export class AckTracker implements AckObserver {
  readonly #pending = new Map<string, number>();
  readonly #lags: number[] = [];
  #acked = 0;
  #appended = 0;
  #duplicateAcks = 0;

  appended(deviceId: string, msgId: string, at: number): void {
    this.#appended += 1;
    this.#pending.set(`${deviceId}/${msgId}`, at);
  }

  acked(deviceId: string, msgId: string, at: number): void {
    const key = `${deviceId}/${msgId}`;
    const started = this.#pending.get(key);
    if (started === undefined) {
      this.#duplicateAcks += 1;
      return;
    }
    this.#pending.delete(key);
    this.#acked += 1;
    if (this.#lags.length < 1_000_000) this.#lags.push(at - started);
  }

  get appendedCount(): number {
    return this.#appended;
  }

  get ackedCount(): number {
    return this.#acked;
  }

  get unacked(): number {
    return this.#pending.size;
  }

  get duplicateAcks(): number {
    return this.#duplicateAcks;
  }

  lag(): LagStats | null {
    if (this.#lags.length === 0) return null;
    const sorted = Float64Array.from(this.#lags).sort();
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
    return { count: sorted.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: sorted[sorted.length - 1] ?? 0 };
  }

  resetLag(): void {
    this.#lags.length = 0;
  }
}

/** The typed API client for the fleet's control plane and token. */
export function fleetClient(options: Pick<FleetOptions, 'controlPlaneUrl' | 'token' | 'fetch'>): ApiClient {
  return createApiClient({
    baseUrl: options.controlPlaneUrl,
    token: options.token,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
}

/** A failed call in words: the request, and the network's reason or the API's code. */
function describeFailure(failure: ApiFailure, controlPlaneUrl: string): string {
  if (failure.status === null) {
    return `${failure.method} ${failure.url} failed: ${failure.message} (is the control plane running at ${controlPlaneUrl}?)`;
  }
  return `${failure.method} ${failure.url} answered HTTP ${failure.status}: ${failure.code}: ${failure.message}`;
}

/**
 * The registry's ModelRef of `name@version` (what `--initial-model` names), or a failure that
 * says what to do about it.
 */
export async function fetchModelRef(
  options: Pick<FleetOptions, 'controlPlaneUrl' | 'token' | 'fetch'>,
  id: string,
): Promise<Result<ModelRef>> {
  const at = id.lastIndexOf('@');
  const found = await fleetClient(options).models.get(id.slice(0, at), id.slice(at + 1));
  if (!found.ok) {
    if (found.error.status === 404) {
      return fail(
        'unknown_model',
        `${id} is not in the registry at ${options.controlPlaneUrl}: upload it first (edgeloop models upload)`,
      );
    }
    const code = found.error.status === null ? 'unreachable' : 'bad_response';
    return fail(code, describeFailure(found.error, options.controlPlaneUrl));
  }
  const model = found.value;
  return ok({ id: model.id, name: model.name, version: model.version, sha256: model.sha256 });
}

/** Runs `work` over `items` with at most `limit` at a time. */
async function inParallel<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  });
  await Promise.all(workers);
}

export class Fleet {
  readonly options: FleetOptions;
  readonly devices: VirtualDevice[] = [];
  readonly tracker: AckTracker | null;
  readonly #infos: SimulatedDeviceInfo[] = [];
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  readonly #behaviours = createBehaviourTable();
  /** One MQTT client hub for every device: one parser and one deadline timer for the fleet. */
  readonly #mqtt = createSimMqtt();

  constructor(options: FleetOptions) {
    this.options = options;
    this.tracker = options.measure ? new AckTracker() : null;
  }

  get infos(): readonly SimulatedDeviceInfo[] {
    return this.#infos;
  }

  deviceId(index: number): string {
    const width = Math.max(4, String(this.options.devices - 1).length);
    return `${this.options.prefix}-${String(index).padStart(width, '0')}`;
  }

  /**
   * Enrolls every device through the API. An id that already exists is revoked and enrolled
   * again (the simulator never learns an old secret back).
   */
  async enroll(): Promise<void> {
    const options = this.options;
    const client = fleetClient(options);
    const indexes = Array.from({ length: options.devices }, (_, i) => i);
    const results: VirtualDevice[] = new Array(options.devices);
    await inParallel(indexes, 16, async (index) => {
      const id = this.deviceId(index);
      const { hardware, site } = assignHardware(index, options.hardwareMix, options.sites);
      const body = { id, labels: { hardware, site, simulated: 'true', ...options.labels } };
      let response = await client.devices.enroll(body);
      if (!response.ok && response.error.status === 409) {
        const revoked = await client.devices.revoke(id);
        if (!revoked.ok) throw new Error(`enrolling ${id}: ${describeFailure(revoked.error, options.controlPlaneUrl)}`);
        response = await client.devices.enroll(body);
      }
      if (!response.ok) throw new Error(`enrolling ${id}: ${describeFailure(response.error, options.controlPlaneUrl)}`);
      const enrolled = response.value;
      const broker = new URL(options.mqttUrl ?? enrolled.mqtt.url);
      const host = broker.hostname === '0.0.0.0' || broker.hostname === '::' ? '127.0.0.1' : broker.hostname;
      results[index] = new VirtualDevice({
        id,
        password: enrolled.credentials.password,
        mqttHost: host,
        mqttPort: Number(broker.port || 1883),
        hardware: hardwareProfile(hardware),
        site,
        keepaliveS: options.keepaliveS,
        telemetryIntervalS: options.telemetryIntervalS,
        cameraFps: options.cameraFps,
        outboxMaxBytes: options.outboxMaxBytes,
        mqtt: this.#mqtt,
        ...(options.seed !== undefined ? { seed: options.seed } : {}),
        ...(this.tracker ? { observer: this.tracker } : {}),
        ...(options.reconnect ? { reconnect: options.reconnect } : {}),
        ...(options.samples
          ? {
              samples: {
                controlPlaneUrl: options.controlPlaneUrl,
                dir: join(options.samples.dir, id),
                ...(options.samples.fps !== undefined ? { fps: options.samples.fps } : {}),
                ...(options.samples.width !== undefined ? { width: options.samples.width } : {}),
                ...(options.samples.height !== undefined ? { height: options.samples.height } : {}),
              },
            }
          : {}),
        ...(options.models
          ? {
              models: {
                controlPlaneUrl: options.controlPlaneUrl,
                trustedKeyPems: options.models.trustedKeyPems,
                local: options.models.local,
                behaviourOf: (ref: ModelRef) => this.behaviourOf(ref),
                healthCheckMs: options.models.healthCheckMs ?? 1000,
              },
            }
          : {}),
      });
    });
    this.devices.push(...results);
    this.#infos.push(
      ...results.map((device) => ({ id: device.id, hardware: device.hardware.name, site: device.site })),
    );
  }

  /** Starts every device, `connectRate` per second. */
  async start(signal?: AbortSignal): Promise<void> {
    const perTick = Math.max(1, Math.ceil(this.options.connectRate / 10));
    for (let i = 0; i < this.devices.length; i += perTick) {
      if (signal?.aborted) return;
      await Promise.all(this.devices.slice(i, i + perTick).map((device) => device.start()));
      if (i + perTick < this.devices.length) await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async waitFor(predicate: (stats: FleetStats) => boolean, timeoutMs: number): Promise<FleetStats> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const stats = this.stats();
      if (predicate(stats)) return stats;
      if (Date.now() > deadline)
        throw new Error(`fleet condition not met within ${timeoutMs} ms: ${formatStats(stats)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  stats(): FleetStats {
    let connected = 0;
    let sent = 0;
    let acked = 0;
    let queued = 0;
    let dropped = 0;
    let reconnects = 0;
    for (const device of this.devices) {
      if (device.connected) connected += 1;
      queued += device.pending;
      const agent = device.agent;
      if (!agent) continue;
      const link = agent.link.stats();
      sent += link.sent;
      acked += link.acked;
      reconnects += Math.max(0, link.connects - 1);
      const drops = agent.outbox.stats().dropped;
      dropped += drops.telemetry + drops.events + drops.control;
    }
    return {
      devices: this.devices.length,
      connected,
      sent,
      acked,
      queued,
      dropped,
      reconnects,
      lag: this.tracker?.lag() ?? null,
    };
  }

  /**
   * Sets how devices that run a model behave (key: `name@version`, sha256, or `*` for every
   * model); scenarios and `--model-behaviour` use it.
   */
  setModelBehaviour(key: string, behaviour: ModelBehaviour): void {
    this.#behaviours.set(key, behaviour);
  }

  /** How a model behaves on the devices that run it (the default detector unless a behaviour says). */
  behaviourOf(ref: ModelRef): PlayedModel {
    return this.#behaviours.of(ref);
  }

  /** Applies one scenario step now. */
  async apply(step: ScenarioStep, salt: string): Promise<VirtualDevice[]> {
    const targets = resolveTarget(step.target, this.#infos, salt);
    const byId = new Map(this.devices.map((device) => [device.id, device]));
    const devices = targets.map((info) => byId.get(info.id)).filter((d): d is VirtualDevice => d !== undefined);
    const forMs = step.for === undefined ? null : durationMs(step.for);
    const later = (ms: number, action: () => void | Promise<void>) => {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        void action();
      }, ms);
      this.#timers.add(timer);
    };
    switch (step.action) {
      case 'disconnect':
        await Promise.all(devices.map((device) => device.stop()));
        if (forMs !== null) later(forMs, () => Promise.all(devices.map((device) => device.start())).then(() => {}));
        break;
      case 'reconnect':
      case 'revive':
        await Promise.all(
          devices.map(async (device) => {
            if (device.condition === 'partitioned') device.heal();
            else await device.start();
          }),
        );
        break;
      case 'kill':
        await Promise.all(devices.map((device) => device.kill()));
        if (forMs !== null) later(forMs, () => Promise.all(devices.map((device) => device.start())).then(() => {}));
        break;
      case 'blackhole':
        for (const device of devices) device.partition();
        if (forMs !== null)
          later(forMs, () => {
            for (const device of devices) device.heal();
          });
        break;
      case 'flap': {
        const until = Date.now() + (forMs ?? 60_000);
        const periodMs = step.periodS * 1000;
        const cycle = (down: boolean) => {
          for (const device of devices) {
            if (down) device.partition();
            else device.heal();
          }
          if (Date.now() < until) later(periodMs, () => cycle(!down));
          else for (const device of devices) device.heal();
        };
        cycle(true);
        break;
      }
      case 'clock-skew':
        for (const device of devices) device.setClockSkew(step.skewS);
        if (forMs !== null)
          later(forMs, () => {
            for (const device of devices) device.setClockSkew(0);
          });
        break;
      case 'overheat':
        for (const device of devices) device.setExtraTemperature(step.extraC);
        if (forMs !== null)
          later(forMs, () => {
            for (const device of devices) device.setExtraTemperature(0);
          });
        break;
      case 'camera-stall':
        for (const device of devices) device.setStalled(true);
        if (forMs !== null)
          later(forMs, () => {
            for (const device of devices) device.setStalled(false);
          });
        break;
      case 'scene-change':
        for (const device of devices) device.setScene(step.scene ?? null);
        if (forMs !== null)
          later(forMs, () => {
            for (const device of devices) device.setScene(null);
          });
        break;
      case 'scene-restore':
        for (const device of devices) device.setScene(null);
        break;
    }
    return devices;
  }

  /** Runs a scenario's steps on schedule from now; resolves after the last step is applied. */
  async runScenario(
    scenario: Scenario,
    signal?: AbortSignal,
    onStep?: (step: ScenarioStep, devices: number) => void,
  ): Promise<void> {
    const started = Date.now();
    const steps = scenario.steps
      .map((step, index) => ({ step, index, at: durationMs(step.at) }))
      .sort((a, b) => a.at - b.at);
    for (const { step, index, at } of steps) {
      const wait = started + at - Date.now();
      if (wait > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          signal?.addEventListener(
            'abort',
            () => {
              clearTimeout(timer);
              resolve();
            },
            { once: true },
          );
        });
      }
      if (signal?.aborted) return;
      const devices = await this.apply(step, `${scenario.name}/${index}`);
      onStep?.(step, devices.length);
    }
  }

  /** Stops every device cleanly (or kills them all with `{ kill: true }`). */
  async stop(options: { readonly kill?: boolean } = {}): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    await inParallel(this.devices, 200, (device) => (options.kill ? device.kill() : device.stop()));
    for (const device of this.devices) device.faults.killSockets();
  }
}

export function formatStats(stats: FleetStats): string {
  const lag = stats.lag ? ` lag p99 ${stats.lag.p99.toFixed(0)} ms` : '';
  return `devices ${stats.devices} | connected ${stats.connected} | sent ${stats.sent} | acked ${stats.acked} | queued ${stats.queued} | dropped ${stats.dropped} | reconnects ${stats.reconnects}${lag}`;
}

export function createFleet(options: FleetOptions): Fleet {
  return new Fleet(options);
}
