import type { Duplex } from 'node:stream';
import { type Channel, type Command, type Desired, decode, encode, RequestId, topicFor } from '@edgeloop/protocol';
import { connect as connectMqtt, type IClientOptions, MqttClient } from 'mqtt';
import { type Clock, systemClock, systemTimers, type TimerHandle, type Timers } from './clock.ts';
import { type Logger, silentLogger } from './logger.ts';
import type { Outbox } from './outbox.ts';
import type { Publisher } from './publisher.ts';
import { willEnvelope } from './sequencer.ts';

/*
 * The MQTT link (mqtt.js, MQTT 3.1.1, clean session).
 *
 * - Identity: client id = username = device id; password from config.
 * - One mqtt.js client per connection attempt, created with `reconnectPeriod: 0`: the link owns
 *   reconnection (jittered, capped exponential backoff, reset after a stable connection) and a
 *   dead client is discarded with its in-memory stores, so mqtt.js never re-sends copies of its
 *   own. The outbox holds the only durable copy of every message.
 * - Last will per connection attempt: retained QoS 1 Status {offline, connection-lost} with seq 0
 *   and msgId `${bootId}-will-${connection}` (the broker publishes it, outside the boot sequence).
 * - On every connect: subscribe to the device's desired and cmd topics (QoS 1; a clean session is
 *   never present), append the birth Status {online, birth} to the outbox control lane, call
 *   `onConnected` (the agent reports state there), then pump.
 * - Pump: waiting outbox entries are published at QoS 1, at most `maxInflight` unacknowledged;
 *   PUBACK -> outbox.ack. When the connection drops, in-flight entries go back to waiting and are
 *   sent again after the next connect.
 * - Inbound desired/cmd payloads are decoded with protocol `decode()`; invalid ones are counted
 *   and ignored, except a cmd with a readable requestId, which `onInvalidCommand` answers.
 */

export type ReconnectPolicy = {
  readonly initialMs: number;
  readonly maxMs: number;
  /** Share of the delay that is random, 0..1. */
  readonly jitter: number;
  /** A connection that lasted this long resets the backoff (default 30 s). */
  readonly stableMs?: number;
};

/**
 * Delay before reconnect attempt `attempt` (0 for the first after a loss): the exponential base
 * `min(maxMs, initialMs * 2^attempt)` minus a random share of up to `jitter` of it, so the delay
 * lies in [base * (1 - jitter), base] and never exceeds maxMs.
 */
export function computeBackoffMs(attempt: number, policy: ReconnectPolicy, random: () => number): number {
  const base = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(Math.max(attempt, 0), 40));
  return Math.round(base * (1 - policy.jitter * random()));
}

export type LinkState = 'idle' | 'connecting' | 'connected' | 'backoff' | 'stopped';

export type LinkStats = {
  readonly state: LinkState;
  /** Connection attempts so far (also the number in the current will's msgId). */
  readonly attempts: number;
  readonly connects: number;
  readonly disconnects: number;
  /** Attempts that closed before a CONNACK (refused, unreachable, timed out). */
  readonly connectFailures: number;
  readonly authFailures: number;
  readonly sent: number;
  readonly acked: number;
  readonly inflight: number;
  readonly publishErrors: number;
  readonly subscribeFailures: number;
  readonly inboundDesired: number;
  readonly inboundCommands: number;
  readonly invalidInbound: number;
  readonly handlerErrors: number;
  readonly lastError: string | null;
};

export type LinkMqttSettings = {
  readonly url: string;
  readonly username: string;
  readonly password: string;
  readonly keepaliveS: number;
  readonly connectTimeoutMs: number;
  readonly reconnect: ReconnectPolicy;
  readonly maxInflight: number;
};

export type BirthInfo = { readonly agentVersion?: string; readonly telemetryIntervalS?: number };

export type LinkDeps = {
  readonly deviceId: string;
  readonly bootId: string;
  readonly mqtt: LinkMqttSettings;
  readonly outbox: Outbox;
  readonly publisher: Publisher;
  /** Fields of the birth message that change at runtime. */
  readonly birth?: () => BirthInfo;
  readonly onConnected?: (connection: number) => void;
  readonly onDesired?: (desired: Desired) => void | Promise<void>;
  readonly onCommand?: (command: Command) => void | Promise<void>;
  /** A cmd whose body is invalid but whose requestId could be read. */
  readonly onInvalidCommand?: (requestId: string, reason: string) => void;
  readonly clock?: Clock;
  readonly timers?: Timers;
  readonly random?: () => number;
  readonly logger?: Logger;
  /**
   * Creates the mqtt.js client of one connection attempt from the link's options (the
   * simulator injects streams here, e.g. `clientOverStream`). Defaults to `mqtt.connect(url)`.
   */
  readonly createClient?: (options: IClientOptions) => MqttClient;
  /** Extra mqtt.js options (TLS material, ...). The link's own settings win. */
  readonly mqttOptions?: Partial<IClientOptions>;
  /** The password, read at every connection attempt (a rotated secret); `mqtt.password` by default. */
  readonly readPassword?: () => string;
};

/** How the first connection attempt after `reconnect()` ended. */
export type ReconnectOutcome = { readonly ok: true } | { readonly ok: false; readonly error: string };

export interface Link {
  /** Starts connecting (again, after a stop). */
  start(): void;
  /**
   * graceful: sends DISCONNECT (the broker discards the will); otherwise the socket is destroyed
   * and the broker publishes the will. In-flight messages go back to waiting in the outbox.
   */
  stop(options?: { readonly graceful?: boolean; readonly timeoutMs?: number }): Promise<void>;
  /** Sends waiting outbox entries soon (called after appends). Call it on the link: `link.flush()`. */
  flush(): void;
  /** Resolves true once the outbox holds nothing, false after timeoutMs. */
  drain(timeoutMs: number): Promise<boolean>;
  /** Fault injection: destroys the socket without DISCONNECT; the link reconnects as after any loss. */
  dropConnection(): void;
  /**
   * Ends the session (DISCONNECT, so no will) and connects again at once, with the password read
   * anew (a rotated secret). Resolves when that attempt ends: ok once the broker accepted it; else
   * why not, and the link goes on reconnecting with its backoff as after any loss.
   */
  reconnect(): Promise<ReconnectOutcome>;
  readonly state: LinkState;
  stats(): LinkStats;
}

const noop = (): void => {};

/** A `createClient` for mqtt.js over a stream the caller makes (in-memory duplex, faulty socket, ...). */
export function clientOverStream(
  createStream: (options: IClientOptions) => Duplex,
): (options: IClientOptions) => MqttClient {
  return (options) => new MqttClient(() => createStream(options) as never, options);
}

function readRequestId(payload: Buffer): string | null {
  try {
    const value: unknown = JSON.parse(payload.toString('utf8'));
    if (value === null || typeof value !== 'object') return null;
    const parsed = RequestId.safeParse((value as Record<string, unknown>).requestId);
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

export function createLink(deps: LinkDeps): Link {
  return new MqttLink(deps);
}

type LinkCounters = {
  connects: number;
  disconnects: number;
  connectFailures: number;
  authFailures: number;
  sent: number;
  acked: number;
  publishErrors: number;
  subscribeFailures: number;
  inboundDesired: number;
  inboundCommands: number;
  invalidInbound: number;
  handlerErrors: number;
};

/** A class rather than closures: thousands of simulated devices share its methods. */
class MqttLink implements Link {
  readonly #deps: LinkDeps;
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #random: () => number;
  readonly #log: Logger;
  readonly #topicPrefix: string;
  #state: LinkState = 'idle';
  #client: MqttClient | null = null;
  /** Number of the connection whose callbacks still count; 0 when none. */
  #activeConnection = 0;
  #attempts = 0;
  #backoffAttempt = 0;
  #connectedAt = 0;
  #reconnectTimer: TimerHandle | null = null;
  #retryPumpTimer: TimerHandle | null = null;
  #pumpScheduled = false;
  #inflight = 0;
  #drainWaiters: Array<() => void> = [];
  #lastError: string | null = null;
  /** Told how the attempt that reconnect() began ended. */
  #attemptWaiter: ((outcome: ReconnectOutcome) => void) | null = null;
  readonly #counters: LinkCounters = {
    connects: 0,
    disconnects: 0,
    connectFailures: 0,
    authFailures: 0,
    sent: 0,
    acked: 0,
    publishErrors: 0,
    subscribeFailures: 0,
    inboundDesired: 0,
    inboundCommands: 0,
    invalidInbound: 0,
    handlerErrors: 0,
  };

  constructor(deps: LinkDeps) {
    this.#deps = deps;
    this.#clock = deps.clock ?? systemClock;
    this.#timers = deps.timers ?? systemTimers;
    this.#random = deps.random ?? Math.random;
    this.#log = deps.logger ? deps.logger.child({ component: 'link' }) : silentLogger;
    // `fleet/v1/devices/{id}/`: topics are built per publish from this one string.
    this.#topicPrefix = topicFor(deps.deviceId, 'status').slice(0, -'status'.length);
  }

  #topic(channel: Channel): string {
    return `${this.#topicPrefix}${channel}`;
  }

  #runHandler<T>(handler: ((value: T) => void | Promise<void>) | undefined, value: T): void {
    if (!handler) return;
    try {
      const result = handler(value);
      if (result && typeof result.then === 'function') {
        result.then(undefined, (error: unknown) => {
          this.#counters.handlerErrors += 1;
          this.#log.error({ err: error }, 'inbound handler failed');
        });
      }
    } catch (error) {
      this.#counters.handlerErrors += 1;
      this.#log.error({ err: error }, 'inbound handler failed');
    }
  }

  #onMessage(topic: string, payload: Buffer): void {
    const counters = this.#counters;
    if (topic === this.#topic('desired')) {
      const decoded = decode('desired', payload);
      if (!decoded.ok) {
        counters.invalidInbound += 1;
        return;
      }
      counters.inboundDesired += 1;
      this.#runHandler(this.#deps.onDesired, decoded.value);
    } else if (topic === this.#topic('cmd')) {
      const decoded = decode('cmd', payload);
      if (!decoded.ok) {
        counters.invalidInbound += 1;
        const requestId = readRequestId(payload);
        const onInvalid = this.#deps.onInvalidCommand;
        if (requestId !== null && onInvalid) {
          try {
            onInvalid(requestId, decoded.error.message);
          } catch (error) {
            counters.handlerErrors += 1;
            this.#log.error({ err: error }, 'invalid-command handler failed');
          }
        }
        return;
      }
      counters.inboundCommands += 1;
      this.#runHandler(this.#deps.onCommand, decoded.value);
    } else {
      counters.invalidInbound += 1;
    }
  }

  #notifyDrained(): void {
    if (this.#drainWaiters.length === 0 || this.#deps.outbox.pending > 0) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }

  #runPump(): void {
    this.#pumpScheduled = false;
    const client = this.#client;
    if (this.#state !== 'connected' || client === null) return;
    const room = this.#deps.mqtt.maxInflight - this.#inflight;
    if (room <= 0) return;
    const outbox = this.#deps.outbox;
    const batch = outbox.nextBatch(room);
    const connection = this.#activeConnection;
    for (const entry of batch) {
      this.#inflight += 1;
      this.#counters.sent += 1;
      client.publish(this.#topic(entry.channel), entry.payload, { qos: 1, retain: entry.retain }, (error) =>
        this.#onPublished(connection, entry.msgId, error),
      );
    }
  }

  #onPublished(connection: number, msgId: string, error: Error | undefined): void {
    if (connection !== this.#activeConnection) return;
    this.#inflight -= 1;
    if (error) {
      this.#counters.publishErrors += 1;
      this.#lastError = error.message;
      this.#deps.outbox.release(msgId);
      if (this.#retryPumpTimer === null) {
        this.#retryPumpTimer = this.#timers.setTimeout(() => {
          this.#retryPumpTimer = null;
          this.flush();
        }, 1000);
      }
      return;
    }
    this.#counters.acked += 1;
    this.#deps.outbox.ack(msgId);
    this.flush();
    this.#notifyDrained();
  }

  #onConnect(connection: number): void {
    const client = this.#client;
    if (connection !== this.#activeConnection || client === null) return;
    const deps = this.#deps;
    this.#state = 'connected';
    this.#connectedAt = this.#clock.now();
    this.#counters.connects += 1;
    this.#lastError = null;
    this.#settleAttempt({ ok: true });
    const subscriptions = { [this.#topic('desired')]: { qos: 1 as const }, [this.#topic('cmd')]: { qos: 1 as const } };
    client.subscribe(subscriptions, (error, granted) => {
      if (connection !== this.#activeConnection) return;
      if (error || !granted || granted.some((grant) => grant.qos === 128)) {
        this.#counters.subscribeFailures += 1;
        this.#lastError = error ? error.message : 'subscription refused by the broker';
        this.#log.warn({ err: error, granted }, 'subscribe to desired/cmd failed');
      }
    });
    const birth = deps.birth?.() ?? {};
    const published = deps.publisher.publish('status', {
      state: 'online',
      reason: 'birth',
      session: connection,
      keepaliveS: deps.mqtt.keepaliveS,
      ...birth,
    });
    if (!published.ok) this.#log.error({ error: published.error }, 'birth not published');
    try {
      deps.onConnected?.(connection);
    } catch (error) {
      this.#counters.handlerErrors += 1;
      this.#log.error({ err: error }, 'onConnected failed');
    }
    this.flush();
  }

  #onClose(connection: number, closing: MqttClient): void {
    if (connection !== this.#activeConnection) return;
    this.#activeConnection = 0;
    this.#inflight = 0;
    this.#deps.outbox.requeueInflight();
    if (this.#state === 'connected') {
      this.#counters.disconnects += 1;
      const lasted = this.#clock.now() - this.#connectedAt;
      if (lasted >= (this.#deps.mqtt.reconnect.stableMs ?? 30_000)) this.#backoffAttempt = 0;
    } else {
      this.#counters.connectFailures += 1;
      this.#settleAttempt({
        ok: false,
        error: this.#lastError ?? 'the connection closed before the broker accepted it',
      });
    }
    // Discard the client and whatever its stores hold (mqtt.js flushes its callbacks as errors).
    closing.end(true);
    if (this.#client === closing) this.#client = null;
    if (this.#state === 'stopped') return;
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    this.#state = 'backoff';
    const delay = computeBackoffMs(this.#backoffAttempt, this.#deps.mqtt.reconnect, this.#random);
    this.#backoffAttempt += 1;
    this.#reconnectTimer = this.#timers.setTimeout(() => {
      this.#reconnectTimer = null;
      this.#connect();
    }, delay);
  }

  #connect(): void {
    if (this.#state === 'stopped') return;
    const deps = this.#deps;
    const settings = deps.mqtt;
    this.#attempts += 1;
    const connection = this.#attempts;
    this.#activeConnection = connection;
    this.#state = 'connecting';
    const will = {
      ...willEnvelope(deps.bootId, connection, this.#clock.now()),
      state: 'offline' as const,
      reason: 'connection-lost' as const,
      session: connection,
    };
    const options: IClientOptions = {
      log: noop,
      ...deps.mqttOptions,
      clientId: deps.deviceId,
      username: settings.username,
      ...passwordOption(deps.readPassword ? deps.readPassword() : settings.password),
      keepalive: settings.keepaliveS,
      connectTimeout: settings.connectTimeoutMs,
      reconnectPeriod: 0,
      clean: true,
      resubscribe: false,
      protocolVersion: 4,
      will: { topic: this.#topic('status'), payload: Buffer.from(encode('status', will)), qos: 1, retain: true },
    };
    let client: MqttClient;
    try {
      client = deps.createClient ? deps.createClient(options) : (connectMqtt(settings.url, options) as MqttClient);
    } catch (error) {
      this.#lastError = (error as Error).message;
      this.#log.error({ err: error }, 'cannot create the MQTT client');
      this.#activeConnection = 0;
      this.#counters.connectFailures += 1;
      this.#scheduleReconnect();
      return;
    }
    this.#client = client;
    client.on('error', (error: Error & { code?: unknown }) => {
      if (connection !== this.#activeConnection) return;
      this.#lastError = error.message;
      if (error.code === 4 || error.code === 5) this.#counters.authFailures += 1;
    });
    client.on('connect', () => this.#onConnect(connection));
    client.on('message', (topic, payload) => this.#onMessage(topic, payload));
    client.on('close', () => this.#onClose(connection, client));
  }

  #clearTimers(): void {
    if (this.#reconnectTimer !== null) this.#timers.clearTimeout(this.#reconnectTimer);
    if (this.#retryPumpTimer !== null) this.#timers.clearTimeout(this.#retryPumpTimer);
    this.#reconnectTimer = null;
    this.#retryPumpTimer = null;
  }

  start(): void {
    if (this.#state !== 'idle' && this.#state !== 'stopped') return;
    this.#state = 'idle';
    this.#backoffAttempt = 0;
    this.#connect();
  }

  stop(options: { readonly graceful?: boolean; readonly timeoutMs?: number } = {}): Promise<void> {
    const graceful = options.graceful ?? true;
    const timeoutMs = options.timeoutMs ?? 2000;
    const closing = this.#client;
    const wasConnected = this.#state === 'connected';
    this.#state = 'stopped';
    this.#settleAttempt({ ok: false, error: 'the link stopped' });
    this.#activeConnection = 0;
    this.#clearTimers();
    this.#inflight = 0;
    this.#deps.outbox.requeueInflight();
    this.#client = null;
    if (!closing) return Promise.resolve();
    const timers = this.#timers;
    return new Promise<void>((resolve) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        timers.clearTimeout(fallback);
        resolve();
      };
      const fallback = timers.setTimeout(() => {
        closing.end(true);
        finish();
      }, timeoutMs);
      if (graceful && wasConnected) {
        // DISCONNECT first: the broker then discards the will.
        closing.end(false, {}, finish);
      } else {
        closing.stream?.destroy();
        closing.end(true, {}, finish);
        // end(true) on an already closed stream never calls back.
        if (closing.stream?.destroyed) queueMicrotask(finish);
      }
    });
  }

  flush(): void {
    if (this.#pumpScheduled || this.#state !== 'connected') return;
    this.#pumpScheduled = true;
    queueMicrotask(() => this.#runPump());
  }

  drain(timeoutMs: number): Promise<boolean> {
    if (this.#deps.outbox.pending === 0) return Promise.resolve(true);
    const timers = this.#timers;
    return new Promise<boolean>((resolve) => {
      const waiter = () => {
        timers.clearTimeout(timer);
        resolve(true);
      };
      const timer = timers.setTimeout(() => {
        this.#drainWaiters = this.#drainWaiters.filter((candidate) => candidate !== waiter);
        resolve(false);
      }, timeoutMs);
      this.#drainWaiters.push(waiter);
    });
  }

  dropConnection(): void {
    this.#client?.stream?.destroy();
  }

  #settleAttempt(outcome: ReconnectOutcome): void {
    const waiter = this.#attemptWaiter;
    this.#attemptWaiter = null;
    waiter?.(outcome);
  }

  reconnect(): Promise<ReconnectOutcome> {
    if (this.#state === 'stopped' || this.#state === 'idle') {
      return Promise.resolve({ ok: false, error: `the link is ${this.#state}` });
    }
    this.#settleAttempt({ ok: false, error: 'superseded by another reconnect' });
    const closing = this.#client;
    const wasConnected = this.#state === 'connected';
    // The old client's callbacks stop counting; what it had in flight goes back to waiting.
    this.#activeConnection = 0;
    this.#clearTimers();
    this.#inflight = 0;
    this.#deps.outbox.requeueInflight();
    this.#client = null;
    this.#state = 'connecting';
    if (wasConnected) this.#counters.disconnects += 1;
    return new Promise<ReconnectOutcome>((resolve) => {
      this.#attemptWaiter = resolve;
      const timers = this.#timers;
      let done = false;
      const connectNow = () => {
        if (done) return;
        done = true;
        timers.clearTimeout(fallback);
        // A stop meanwhile settled the waiter already.
        if (this.#state === 'connecting' && this.#client === null) this.#connect();
      };
      const fallback = timers.setTimeout(() => {
        closing?.end(true);
        connectNow();
      }, 2000);
      if (!closing) connectNow();
      else if (wasConnected) closing.end(false, {}, connectNow);
      else {
        closing.end(true, {}, connectNow);
        if (closing.stream?.destroyed) queueMicrotask(connectNow);
      }
    });
  }

  get state(): LinkState {
    return this.#state;
  }

  stats(): LinkStats {
    return {
      state: this.#state,
      attempts: this.#attempts,
      inflight: this.#inflight,
      lastError: this.#lastError,
      ...this.#counters,
    };
  }
}

/** An empty password is none at all: a device logging in with its certificate sends no password field. */
function passwordOption(password: string): { password?: string } {
  return password === '' ? {} : { password };
}
