import net from 'node:net';
import { parser as createParser, generate, type IPublishPacket, type Packet } from 'mqtt-packet';

/*
 * The control plane's ingest subscription on an external MQTT 5 broker (issue 11 §3): a shared
 * subscription (`$share/<group>/<filter>`, so replicas split the fleet's messages) under a
 * persistent session (clean start false, a session expiry), whose PUBACKs follow the store.
 *
 * Why not mqtt.js: it hands a QoS 1 message to the application and waits for that one's PUBACK
 * before it reads the next packet, so "ack after the commit" would mean one commit per message.
 * Here every PUBLISH goes to `onMessage` at once (the broker sends up to `receiveMaximum`
 * unacknowledged), the ingest batches them, and each `ack` releases its PUBACK, in the order the
 * PUBLISHes came (MQTT 5 §4.6). Packets are encoded and decoded by mqtt-packet, the codec mqtt.js
 * uses; this file keeps only the session.
 *
 * No loss: a message is acknowledged only after the store took it. If the store fails
 * (`ack(false)`), or the process dies, or the connection drops, the unacknowledged messages stay
 * in the broker's session and come again (DUP) once the same client id reconnects; the store's
 * dedupe by msgId makes the second delivery a no-op. A message the broker gave to a replica that
 * never comes back is redelivered when that client id's session reconnects, or is lost with the
 * session at its expiry: run replicas with stable client ids.
 */

export type SharedSubscriberDeps = {
  /** mqtt://host:port */
  readonly url: string;
  readonly username: string;
  readonly password: string;
  /** Stable per replica: the session (and its unacknowledged messages) belongs to it. */
  readonly clientId: string;
  readonly shareGroup: string;
  /** Topic filters, subscribed as `$share/<group>/<filter>` at QoS 1. */
  readonly filters: readonly string[];
  /**
   * One message; call `ack(true)` once it is stored (or refused for good: a dead letter is
   * stored too), `ack(false)` when the store failed (the connection is dropped, the broker sends
   * it again). `duplicate`: the broker marked it as a redelivery; `qos` as delivered (0 or 1).
   */
  readonly onMessage: (
    topic: string,
    payload: Buffer,
    ack: (stored: boolean) => void,
    duplicate: boolean,
    qos: 0 | 1,
  ) => void;
  readonly onError?: (error: Error) => void;
  readonly sessionExpiryS?: number;
  readonly keepaliveS?: number;
  /** PUBLISHes the broker may send before their PUBACK (MQTT 5 Receive Maximum). */
  readonly receiveMaximum?: number;
  readonly reconnectMs?: number;
};

export type SharedSubscriber = {
  /** Connects and subscribes; resolves at the SUBACK (rejects if the broker refuses either). */
  start(): Promise<void>;
  /** Waits up to `graceMs` for the acks in flight, then DISCONNECTs keeping the session. */
  stop(graceMs?: number): Promise<void>;
  /** The socket destroyed without DISCONNECT, no reconnect (what a killed process does; tests). */
  kill(): void;
  /** Subscribed now: between a SUBACK and the connection's close. */
  readonly connected: boolean;
  readonly stats: {
    readonly received: number;
    readonly acked: number;
    readonly redelivered: number;
    readonly connects: number;
  };
};

const OPTS = { protocolVersion: 5 } as const;

export function createSharedSubscriber(deps: SharedSubscriberDeps): SharedSubscriber {
  const url = new URL(deps.url);
  if (url.protocol !== 'mqtt:') throw new TypeError(`only mqtt:// broker URLs are supported, not ${url.protocol}`);
  const port = Number(url.port || 1883);
  const keepaliveS = deps.keepaliveS ?? 30;
  const stats = { received: 0, acked: 0, redelivered: 0, connects: 0 };
  let socket: net.Socket | null = null;
  let stopped = false;
  let reconnectTimer: NodeJS.Timeout | null = null;
  let pingTimer: NodeJS.Timeout | null = null;
  /** PUBACKs in arrival order; each sent once it and every one before it are acked. */
  let pending: { readonly messageId: number; done: boolean; readonly epoch: number }[] = [];
  let epoch = 0;
  let firstConnect: { resolve: () => void; reject: (error: Error) => void } | null = null;
  let subscribed = false;

  const send = (packet: Packet) => {
    if (socket && !socket.destroyed) socket.write(generate(packet, OPTS));
  };

  const release = () => {
    while (pending.length > 0 && pending[0]!.done) {
      const head = pending.shift()!;
      send({ cmd: 'puback', messageId: head.messageId, reasonCode: 0 });
      stats.acked++;
    }
  };

  const fail = (error: Error) => {
    if (firstConnect) {
      firstConnect.reject(error);
      firstConnect = null;
      stopped = true;
    } else deps.onError?.(error);
  };

  const onPublish = (packet: IPublishPacket, connection: number) => {
    stats.received++;
    if (packet.dup) stats.redelivered++;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    if (packet.qos === 0 || packet.messageId === undefined) {
      deps.onMessage(packet.topic, payload, () => {}, false, 0);
      return;
    }
    const entry = { messageId: packet.messageId, done: false, epoch: connection };
    pending.push(entry);
    let called = false;
    deps.onMessage(
      packet.topic,
      payload,
      (stored) => {
        if (called || entry.epoch !== epoch) return; // the connection it came on is gone: the broker sends it again
        called = true;
        if (!stored) {
          // Not acknowledged: drop the connection so the broker keeps it and sends it again.
          socket?.destroy(new Error('the store refused a message; reconnecting for redelivery'));
          return;
        }
        entry.done = true;
        release();
      },
      Boolean(packet.dup),
      1,
    );
  };

  const connect = () => {
    const connection = ++epoch;
    pending = [];
    const parser = createParser(OPTS);
    const conn = net.connect({ host: url.hostname, port });
    socket = conn;
    let lastActivity = Date.now();
    conn.setNoDelay(true);
    conn.on('connect', () => {
      send({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 5,
        clean: false,
        clientId: deps.clientId,
        keepalive: keepaliveS,
        username: deps.username,
        password: Buffer.from(deps.password, 'utf8'),
        properties: { sessionExpiryInterval: deps.sessionExpiryS ?? 3600, receiveMaximum: deps.receiveMaximum ?? 1024 },
      });
    });
    conn.on('data', (chunk) => {
      lastActivity = Date.now();
      parser.parse(chunk);
    });
    parser.on('error', (error) => conn.destroy(error));
    parser.on('packet', (packet: Packet) => {
      switch (packet.cmd) {
        case 'connack': {
          const code = packet.reasonCode ?? packet.returnCode ?? 0;
          if (code !== 0) {
            conn.destroy();
            fail(Object.assign(new Error(`the broker refused the connection (reason ${code})`), { code }));
            return;
          }
          stats.connects++;
          send({
            cmd: 'subscribe',
            messageId: 1,
            subscriptions: deps.filters.map((filter) => ({
              topic: `$share/${deps.shareGroup}/${filter}`,
              qos: 1 as const,
            })),
          });
          pingTimer = setInterval(
            () => {
              if (Date.now() - lastActivity > keepaliveS * 1500) conn.destroy(new Error('keepalive timeout'));
              else send({ cmd: 'pingreq' });
            },
            Math.max(1000, (keepaliveS * 1000) / 2),
          );
          return;
        }
        case 'suback': {
          const refused = (packet.granted as number[]).filter((code) => code >= 0x80);
          if (refused.length > 0) {
            conn.destroy();
            fail(new Error(`the broker refused the subscription (reason ${refused[0]})`));
            return;
          }
          subscribed = true;
          firstConnect?.resolve();
          firstConnect = null;
          return;
        }
        case 'publish':
          onPublish(packet, connection);
          return;
        case 'disconnect':
          conn.destroy(new Error(`the broker disconnected (reason ${packet.reasonCode ?? 0})`));
          return;
        default:
          return;
      }
    });
    conn.on('error', (error) => {
      if (!stopped) deps.onError?.(error);
    });
    conn.on('close', () => {
      subscribed = false;
      if (pingTimer) clearInterval(pingTimer);
      pingTimer = null;
      if (socket === conn) socket = null;
      if (firstConnect) fail(new Error(`could not connect to ${deps.url}`));
      if (stopped) return;
      reconnectTimer = setTimeout(connect, deps.reconnectMs ?? 1_000);
    });
  };

  return {
    stats,
    get connected() {
      return subscribed && socket !== null && !socket.destroyed;
    },
    start() {
      stopped = false;
      return new Promise<void>((resolve, reject) => {
        firstConnect = { resolve, reject };
        connect();
      });
    },
    async stop(graceMs = 5_000) {
      const deadline = Date.now() + graceMs;
      while (pending.length > 0 && socket && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      stopped = true;
      if (reconnectTimer) clearTimeout(reconnectTimer);
      const conn = socket;
      if (!conn) return;
      const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
      // Session kept (expiry as at connect): what is still unacknowledged comes again on the next start.
      conn.end(generate({ cmd: 'disconnect', reasonCode: 0 }, OPTS));
      await closed;
    },
    kill() {
      stopped = true;
      if (reconnectTimer) clearTimeout(reconnectTimer);
      socket?.destroy();
    },
  };
}
