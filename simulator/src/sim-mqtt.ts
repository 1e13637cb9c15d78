import type net from 'node:net';
import type { IClientOptions, MqttClient } from 'mqtt';
import { parser as createParser, generate, type Packet, type Parser } from 'mqtt-packet';
import type { FaultyConnection, NetworkFaults } from './net-fault.ts';

/*
 * The MQTT client of a simulated device: the part of mqtt.js the agent's link uses (connect with
 * a will, QoS 1 publish with a callback at PUBACK, subscribe, inbound publish with PUBACK,
 * keepalive, connect timeout, end / forced end), on a plain socket. Packets are encoded and
 * decoded by mqtt-packet, the codec mqtt.js itself uses; this file keeps only the session.
 *
 * Why not mqtt.js: a heap snapshot of 5,000 connected simulated devices (2026-12-04) put one
 * mqtt.js client with its writable, its parser (whose buffer list is a Duplex of its own),
 * its stores, keepalive manager and timers, plus the Duplex that injected the network faults
 * under it, at about 11 KiB of the 22 KiB live heap per device. Here the parser and the timer
 * are shared by every client of a hub (one per fleet), the faults act on the socket directly,
 * and a client holds a handful of fields.
 *
 * Behaviour kept from mqtt.js 5 (what link.ts relies on):
 * - 'connect' after CONNACK 0; a refused CONNACK emits 'error' with `code` = the return code,
 *   then the connection closes. 'close' once per client, when its connection is gone.
 * - A connection without CONNACK after `connectTimeout` ms closes with 'connack timeout'.
 * - Keepalive: a PINGREQ once `keepalive` s passed since the last ack or PINGRESP, and the
 *   connection closes with 'Keepalive timeout' at 1.5 x keepalive without one.
 * - Publish callbacks still waiting when the connection closes are called with an error.
 * - end(false) waits for the publishes in flight, then sends DISCONNECT (the broker drops the
 *   will); end(true) destroys the socket (the broker publishes the will).
 */

type Listener = (...args: never[]) => void;
type Callback = (error?: Error) => void;
type SubscribeCallback = (error: Error | null, granted?: { topic: string; qos: number }[]) => void;

const REFUSED: Readonly<Record<number, string>> = {
  1: 'Unacceptable protocol version',
  2: 'Identifier rejected',
  3: 'Server unavailable',
  4: 'Bad username or password',
  5: 'Not authorized',
};

/** Bytes of an MQTT fixed header: the type byte and the remaining length's variable-byte integer. */
function fixedHeaderBytes(remaining: number): number {
  return remaining < 128 ? 2 : remaining < 16_384 ? 3 : remaining < 2_097_152 ? 4 : 5;
}

export type SimMqttOptions = {
  /** How often keepalive and connect deadlines are checked (ms); default 250. */
  readonly tickMs?: number;
  readonly now?: () => number;
};

export interface SimMqtt {
  /** A link `createClient` whose connections go through these network faults. */
  clientFactory(faults: NetworkFaults): (options: IClientOptions) => MqttClient;
  /** Clients with a connection now (tests). */
  readonly live: number;
}

/**
 * One hub for many simulated clients: one parser for all inbound bytes and one timer for every
 * deadline, running only while a client is connected or connecting.
 */
export function createSimMqtt(options: SimMqttOptions = {}): SimMqtt {
  return new SimMqttHub(options);
}

class SimMqttHub implements SimMqtt {
  readonly now: () => number;
  readonly #tickMs: number;
  readonly #clients = new Set<SimMqttClient>();
  #timer: ReturnType<typeof setInterval> | null = null;
  #parser: Parser;
  /** The client whose bytes the shared parser is reading now. */
  #reading: SimMqttClient | null = null;
  #consumed = 0;

  constructor(options: SimMqttOptions) {
    this.now = options.now ?? Date.now;
    this.#tickMs = options.tickMs ?? 250;
    this.#parser = this.#newParser();
  }

  get live(): number {
    return this.#clients.size;
  }

  clientFactory(faults: NetworkFaults): (options: IClientOptions) => MqttClient {
    return (clientOptions) => new SimMqttClient(this, faults, clientOptions) as unknown as MqttClient;
  }

  #newParser(): Parser {
    const parser = createParser({ protocolVersion: 4 });
    parser.on('packet', (packet: Packet) => {
      const length = packet.length ?? 0;
      this.#consumed += fixedHeaderBytes(length) + length;
      this.#reading?.handle(packet);
    });
    parser.on('error', (error: Error) => {
      this.#reading?.fail(error);
    });
    return parser;
  }

  /**
   * Parses a client's bytes with the shared parser. Complete packets are handled at once; the
   * bytes of an incomplete last packet go back to the client to be read with its next chunk, and
   * the parser that began reading them is replaced (it holds that packet's half-read state).
   */
  read(client: SimMqttClient, chunk: Buffer): Buffer | null {
    this.#reading = client;
    this.#consumed = 0;
    let left = 0;
    let failed = false;
    try {
      left = this.#parser.parse(chunk);
    } catch (error) {
      failed = true;
      client.fail(error as Error);
    } finally {
      this.#reading = null;
    }
    if (failed || left > 0 || this.#consumed < chunk.length) {
      this.#parser = this.#newParser();
      if (failed || this.#consumed >= chunk.length) return null;
      return chunk.subarray(this.#consumed);
    }
    return null;
  }

  add(client: SimMqttClient): void {
    this.#clients.add(client);
    if (this.#timer === null) {
      this.#timer = setInterval(() => this.#tick(), this.#tickMs);
      this.#timer.unref();
    }
  }

  remove(client: SimMqttClient): void {
    this.#clients.delete(client);
    if (this.#clients.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  #tick(): void {
    const now = this.now();
    for (const client of this.#clients) client.tick(now);
  }
}

const kClient = Symbol('simMqttClient');
type OwnedSocket = net.Socket & { [kClient]?: SimMqttClient };

// One set of socket listeners for every client: the socket names its client.
function onSocketData(this: OwnedSocket, chunk: Buffer): void {
  this[kClient]?.data(chunk);
}
function onSocketEnd(this: OwnedSocket): void {
  this[kClient]?.socketGone(null);
}
function onSocketClose(this: OwnedSocket): void {
  this[kClient]?.socketGone(null);
}
function onSocketError(this: OwnedSocket, error: Error): void {
  this[kClient]?.socketGone(error);
}

/** One connection attempt of one device, as link.ts sees an mqtt.js client. */
class SimMqttClient implements FaultyConnection {
  readonly #hub: SimMqttHub;
  readonly #faults: NetworkFaults;
  readonly #keepaliveMs: number;
  #socket: OwnedSocket | null = null;
  #blackholed = false;
  #closed = false;
  #connected = false;
  #connectDeadline: number;
  /** Last ack or PINGRESP (mqtt.js reschedules its pings on those). */
  #lastHeard = 0;
  #pingSent = false;
  #nextId = 0;
  #inflight: Map<number, Callback> | null = null;
  #subscribing: Map<number, { topics: string[]; callback: SubscribeCallback }> | null = null;
  #pending: Buffer | null = null;
  #endWhenIdle: (() => void) | null = null;
  #onConnect: Listener | null = null;
  #onMessage: ((topic: string, payload: Buffer) => void) | null = null;
  #onError: ((error: Error) => void) | null = null;
  #onClose: Listener | null = null;
  /** Link reads `stream.destroyed` and calls `stream.destroy()`: the client plays its stream. */
  readonly stream = this;

  constructor(hub: SimMqttHub, faults: NetworkFaults, options: IClientOptions) {
    this.#hub = hub;
    this.#faults = faults;
    this.#keepaliveMs = (options.keepalive ?? 60) * 1000;
    this.#connectDeadline = hub.now() + (options.connectTimeout ?? 30_000);
    hub.add(this);
    const socket = faults.connect(this) as OwnedSocket | null;
    if (socket === null) return; // partitioned: never connects, the connect timeout fires
    socket[kClient] = this;
    socket.on('data', onSocketData);
    socket.on('end', onSocketEnd);
    socket.on('close', onSocketClose);
    socket.on('error', onSocketError);
    this.#socket = socket;
    const will = options.will;
    this.#send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: options.clientId ?? '',
      clean: options.clean ?? true,
      keepalive: options.keepalive ?? 60,
      ...(options.username !== undefined ? { username: options.username } : {}),
      ...(options.password !== undefined ? { password: Buffer.from(options.password) } : {}),
      ...(will
        ? {
            will: {
              topic: will.topic,
              payload: will.payload as Buffer,
              qos: will.qos ?? 0,
              retain: will.retain ?? false,
            },
          }
        : {}),
    });
  }

  get socket(): net.Socket | null {
    return this.#socket;
  }

  get connected(): boolean {
    return this.#connected;
  }

  get destroyed(): boolean {
    return this.#closed;
  }

  on(event: string, listener: Listener): this {
    switch (event) {
      case 'connect':
        this.#onConnect = listener;
        break;
      case 'message':
        this.#onMessage = listener as (topic: string, payload: Buffer) => void;
        break;
      case 'error':
        this.#onError = listener as (error: Error) => void;
        break;
      case 'close':
        this.#onClose = listener;
        break;
      default:
        throw new Error(`the simulated MQTT client has no '${event}' event`);
    }
    return this;
  }

  /** The network drops everything from now on (see net-fault.ts). */
  blackhole(): void {
    this.#blackholed = true;
  }

  #send(packet: Packet, written?: () => void): void {
    const socket = this.#socket;
    if (socket === null || this.#closed) return;
    if (this.#blackholed) {
      written?.();
      return;
    }
    socket.write(generate(packet), written);
  }

  #messageId(): number {
    const inflight = this.#inflight;
    for (;;) {
      this.#nextId = this.#nextId >= 65_535 ? 1 : this.#nextId + 1;
      if (!inflight?.has(this.#nextId) && !this.#subscribing?.has(this.#nextId)) return this.#nextId;
    }
  }

  publish(
    topic: string,
    payload: Buffer | string,
    options: { qos?: 0 | 1 | 2; retain?: boolean },
    callback?: Callback,
  ) {
    if (this.#closed || !this.#connected) {
      // After 'close' (queued behind it), as mqtt.js flushes a closed client's callbacks: the
      // link has let go of this connection by then and counts no publish error.
      if (callback) process.nextTick(callback, new Error('client disconnecting'));
      return this;
    }
    const qos = options.qos ?? 0;
    const retain = options.retain ?? false;
    if (qos === 0) {
      this.#send({ cmd: 'publish', topic, payload, qos: 0, retain, dup: false }, () => callback?.());
      return this;
    }
    const messageId = this.#messageId();
    this.#inflight ??= new Map();
    this.#inflight.set(messageId, callback ?? (() => {}));
    this.#send({ cmd: 'publish', topic, payload, qos, retain, dup: false, messageId });
    return this;
  }

  subscribe(subscriptions: Record<string, { qos: 0 | 1 | 2 }>, callback?: SubscribeCallback) {
    if (this.#closed || !this.#connected) {
      if (callback) process.nextTick(callback, new Error('client disconnecting'));
      return this;
    }
    const topics = Object.keys(subscriptions);
    const messageId = this.#messageId();
    this.#subscribing ??= new Map();
    this.#subscribing.set(messageId, { topics, callback: callback ?? (() => {}) });
    this.#send({
      cmd: 'subscribe',
      messageId,
      subscriptions: topics.map((topic) => ({ topic, qos: subscriptions[topic]?.qos ?? 0 })),
    });
    return this;
  }

  end(force?: boolean, _options?: object, callback?: () => void) {
    const done = () => {
      if (callback) process.nextTick(callback);
    };
    if (this.#closed) {
      done();
      return this;
    }
    if (force) {
      this.#close();
      done();
      return this;
    }
    const disconnect = () => {
      this.#endWhenIdle = null;
      this.#send({ cmd: 'disconnect' }, () => {
        const socket = this.#socket;
        if (socket && !this.#blackholed) socket.end();
        else this.#close();
        done();
      });
    };
    if ((this.#inflight?.size ?? 0) > 0) this.#endWhenIdle = disconnect;
    else disconnect();
    return this;
  }

  /** Destroys the connection without DISCONNECT (link's fault injection and forced stop). */
  destroy(): void {
    this.#close();
  }

  data(chunk: Buffer): void {
    if (this.#blackholed || this.#closed) return;
    const bytes = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = this.#hub.read(this, bytes);
  }

  socketGone(error: Error | null): void {
    // Behind a partition the device never learns that the broker closed the connection.
    if (this.#blackholed) {
      this.#faults.forget(this);
      return;
    }
    if (error) this.fail(error);
    else this.#close();
  }

  /** Like mqtt.js: the error is emitted first (the link notes it), 'close' follows. */
  fail(error: Error): void {
    if (this.#closed) return;
    this.#onError?.(error);
    this.#close();
  }

  tick(now: number): void {
    if (this.#closed) return;
    if (!this.#connected) {
      if (now >= this.#connectDeadline) this.#timeout('connack timeout');
      return;
    }
    const silent = now - this.#lastHeard;
    if (silent >= this.#keepaliveMs * 1.5) this.#timeout('Keepalive timeout');
    else if (silent >= this.#keepaliveMs && !this.#pingSent) {
      this.#pingSent = true;
      this.#send({ cmd: 'pingreq' });
    }
  }

  #timeout(message: string): void {
    this.fail(new Error(message));
  }

  #heard(): void {
    this.#lastHeard = this.#hub.now();
    this.#pingSent = false;
  }

  handle(packet: Packet): void {
    if (this.#closed) return;
    switch (packet.cmd) {
      case 'connack': {
        if (this.#connected) {
          this.fail(new Error('Protocol error: duplicate CONNACK on the same network connection'));
          return;
        }
        const code = packet.returnCode ?? 0;
        if (code !== 0) {
          this.fail(Object.assign(new Error(`Connection refused: ${REFUSED[code] ?? code}`), { code }));
          return;
        }
        this.#connected = true;
        this.#heard();
        this.#onConnect?.();
        return;
      }
      case 'puback': {
        this.#heard();
        const id = packet.messageId ?? 0;
        const callback = this.#inflight?.get(id);
        if (!callback) return;
        this.#inflight?.delete(id);
        callback();
        if (this.#inflight?.size === 0) this.#endWhenIdle?.();
        return;
      }
      case 'suback': {
        this.#heard();
        const id = packet.messageId ?? 0;
        const waiting = this.#subscribing?.get(id);
        if (!waiting) return;
        this.#subscribing?.delete(id);
        // One subscribe per connection: the map goes with its answer (184 bytes per device).
        if (this.#subscribing?.size === 0) this.#subscribing = null;
        waiting.callback(
          null,
          waiting.topics.map((topic, index) => ({ topic, qos: packet.granted[index] as number })),
        );
        return;
      }
      case 'publish': {
        if (packet.qos === 1) this.#send({ cmd: 'puback', messageId: packet.messageId ?? 0 });
        else if (packet.qos === 2) this.#send({ cmd: 'pubrec', messageId: packet.messageId ?? 0 });
        const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
        this.#onMessage?.(packet.topic, payload);
        return;
      }
      case 'pubrel':
        this.#heard();
        this.#send({ cmd: 'pubcomp', messageId: packet.messageId ?? 0 });
        return;
      case 'pingresp':
      case 'pubrec':
      case 'pubcomp':
      case 'unsuback':
        this.#heard();
        return;
      default:
        return;
    }
  }

  /**
   * The connection is over: the socket goes (or is orphaned behind a partition). 'close' follows
   * on the next tick, as a stream's does under mqtt.js, and only then are the callbacks still
   * waiting called with an error (the link has let go of this connection by then).
   */
  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#connected = false;
    this.#pending = null;
    this.#endWhenIdle = null;
    this.#hub.remove(this);
    const socket = this.#socket;
    if (socket !== null) {
      if (this.#blackholed && !socket.destroyed) this.#faults.orphan(this, socket);
      else {
        this.#faults.forget(this);
        socket.destroy();
      }
    }
    process.nextTick(() => this.#afterClose());
  }

  #afterClose(): void {
    this.#onClose?.();
    const closed = new Error('Connection closed');
    const inflight = this.#inflight;
    this.#inflight = null;
    if (inflight) for (const callback of inflight.values()) callback(closed);
    const subscribing = this.#subscribing;
    this.#subscribing = null;
    if (subscribing) for (const { callback } of subscribing.values()) callback(closed);
  }
}
