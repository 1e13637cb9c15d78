import type { OutboxMetrics, PipelineMetrics, SampleTelemetry, ShadowMetrics, SystemMetrics } from '@edgeloop/protocol';
import { type Clock, systemClock, systemTimers, type TimerHandle, type Timers } from './clock.ts';
import { type Logger, silentLogger } from './logger.ts';
import type { Publisher } from './publisher.ts';

/*
 * Periodic telemetry: every `intervalS` one Telemetry message (system metrics, plus pipeline and
 * shadow metrics where providers give them) is appended to the outbox. Ticks are scheduled from
 * the previous tick's planned time, so they do not drift with collection time; a tick that is
 * still collecting when the next is due is skipped (counted), never stacked.
 *
 * If the system reader fails, the last good system metrics are sent; with none yet the tick is
 * skipped. If the message fails validation (say a provider returned out-of-range values), it is
 * sent again without the pipeline and shadow parts, and the failure is counted.
 */

export type TelemetryStats = {
  readonly ticks: number;
  readonly published: number;
  readonly skipped: number;
  readonly invalid: number;
  readonly systemErrors: number;
};

export interface Telemetry {
  start(): void;
  stop(): void;
  /** Changes the interval at once: the next tick comes `seconds` after the last one (or now). */
  setIntervalS(seconds: number): void;
  readonly intervalS: number;
  /** Collects and publishes one message now (tests, the simulator). */
  tick(): Promise<void>;
  stats(): TelemetryStats;
}

export type TelemetryDeps = {
  readonly publisher: Publisher;
  readonly intervalS: number;
  readonly readSystem: () => Promise<SystemMetrics>;
  readonly pipelineMetrics?: () => PipelineMetrics | undefined;
  readonly shadowMetrics?: () => ShadowMetrics | undefined;
  /** Hard-sample capture (samples/capture.ts), while a sample policy is set. */
  readonly sampleTelemetry?: () => SampleTelemetry | undefined;
  /** The outbox's depth when the message is built (what waits for the link). */
  readonly outboxMetrics?: () => OutboxMetrics | undefined;
  /** Called after every tick (the agent checks outbox drops here). */
  readonly afterTick?: () => void;
  readonly clock?: Clock;
  readonly timers?: Timers;
  readonly logger?: Logger;
};

export function createTelemetry(deps: TelemetryDeps): Telemetry {
  return new PeriodicTelemetry(deps);
}

function callProvider<T>(provider: (() => T | undefined) | undefined, log: Logger): T | undefined {
  if (!provider) return undefined;
  try {
    return provider();
  } catch (error) {
    log.warn({ err: error }, 'metrics provider failed');
    return undefined;
  }
}

class PeriodicTelemetry implements Telemetry {
  readonly #deps: TelemetryDeps;
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #log: Logger;
  #intervalS: number;
  #running = false;
  #timer: TimerHandle | null = null;
  #lastPlanned = 0;
  #collecting = false;
  #lastSystem: SystemMetrics | null = null;
  readonly #counters = { ticks: 0, published: 0, skipped: 0, invalid: 0, systemErrors: 0 };

  constructor(deps: TelemetryDeps) {
    this.#deps = deps;
    this.#clock = deps.clock ?? systemClock;
    this.#timers = deps.timers ?? systemTimers;
    this.#log = deps.logger ? deps.logger.child({ component: 'telemetry' }) : silentLogger;
    this.#intervalS = deps.intervalS;
  }

  async tick(): Promise<void> {
    const counters = this.#counters;
    if (this.#collecting) {
      counters.skipped += 1;
      return;
    }
    this.#collecting = true;
    counters.ticks += 1;
    try {
      let system: SystemMetrics | null = this.#lastSystem;
      try {
        system = await this.#deps.readSystem();
        this.#lastSystem = system;
      } catch (error) {
        counters.systemErrors += 1;
        this.#log.warn({ err: error }, 'system metrics unavailable');
      }
      if (system === null) {
        counters.skipped += 1;
        return;
      }
      const intervalS = this.#intervalS;
      const pipeline = callProvider(this.#deps.pipelineMetrics, this.#log);
      const shadow = callProvider(this.#deps.shadowMetrics, this.#log);
      const samples = callProvider(this.#deps.sampleTelemetry, this.#log);
      const outbox = callProvider(this.#deps.outboxMetrics, this.#log);
      const body = {
        intervalS,
        system,
        ...(pipeline ? { pipeline } : {}),
        ...(shadow ? { shadow } : {}),
        ...(samples ? { samples } : {}),
        ...(outbox ? { outbox } : {}),
      };
      const publisher = this.#deps.publisher;
      let result = publisher.publish('telemetry', body);
      if (!result.ok && result.error.code === 'invalid_message' && (pipeline || shadow || samples || outbox)) {
        counters.invalid += 1;
        this.#log.warn({ error: result.error }, 'telemetry invalid; sending system metrics only');
        result = publisher.publish('telemetry', { intervalS, system });
      }
      if (result.ok) counters.published += 1;
      else if (result.error.code === 'invalid_message') counters.invalid += 1;
    } finally {
      this.#collecting = false;
      this.#deps.afterTick?.();
    }
  }

  #tickInBackground(): void {
    this.tick().catch((error: unknown) => this.#log.error({ err: error }, 'telemetry tick failed'));
  }

  #schedule(): void {
    if (!this.#running) return;
    const timers = this.#timers;
    if (this.#timer !== null) timers.clearTimeout(this.#timer);
    const due = this.#lastPlanned + this.#intervalS * 1000;
    const wait = Math.max(0, due - this.#clock.now());
    this.#timer = timers.setTimeout(() => {
      this.#timer = null;
      const now = this.#clock.now();
      // A late timer (suspended process, clock jump) restarts the grid from now.
      this.#lastPlanned = now - due > this.#intervalS * 1000 ? now : due;
      this.#schedule();
      this.#tickInBackground();
    }, wait);
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#lastPlanned = this.#clock.now();
    this.#tickInBackground();
    this.#schedule();
  }

  stop(): void {
    this.#running = false;
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
  }

  setIntervalS(seconds: number): void {
    if (!(seconds > 0) || seconds === this.#intervalS) return;
    this.#intervalS = seconds;
    this.#schedule();
  }

  get intervalS(): number {
    return this.#intervalS;
  }

  stats(): TelemetryStats {
    return { ...this.#counters };
  }
}
