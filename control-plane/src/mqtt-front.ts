import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { MqttConfig } from './config.ts';
import type { MetricsRegistry } from './metrics.ts';
import { createFrameScanner, type FrameScanner } from './mqtt-front-frames.ts';
import { addressKey, createAddressLimiter } from './mqtt-front-rate.ts';

/*
 * The MQTT front: what every socket passes before the broker (aedes) reads a byte of it.
 *
 *   at accept   a cap on open sockets and one on sockets not logged in yet; a per-address budget of
 *               attempts that do not end logged in (mqtt-front-rate.ts). This is earlier than
 *               aedes's preConnect, which runs only once a CONNECT was buffered and parsed and a
 *               Client with its parser allocated. A refused socket is destroyed at once.
 *   each read   the fixed header of every packet is checked as its bytes arrive
 *               (mqtt-front-frames.ts): before login a packet (the CONNECT) may announce at most
 *               `maxConnectBytes`, after it `maxPacketBytes`. An oversized one closes the socket
 *               before its body is buffered: aedes's parser holds at most the one chunk read.
 *   deadline    a socket must be logged in `connectDeadlineMs` after accept (a CONNECT sent slowly,
 *               or none, is closed).
 *
 * How it sees the bytes without copying them: aedes reads its socket in paused mode ('readable'
 * and read()). A 'data' listener on such a stream does not switch it to flowing; Node then emits
 * 'data' with exactly the buffer each read() returns, synchronously, before aedes gets it (Node
 * stream docs, "Choose one API style": 'readable' takes precedence). So the scanner sees every
 * byte once, in order, with no Transform stream and no extra copy in between, and can destroy the
 * socket before the parser takes the chunk in. Every refusal is counted in
 * edgeloop_mqtt_rejected_total{cause}.
 */

export type RejectCause =
  | 'max_connections'
  | 'max_pending'
  | 'rate_limited'
  | 'connect_too_large'
  | 'packet_too_large'
  | 'malformed'
  | 'connect_deadline';

export type MqttFrontDeps = {
  readonly config: MqttConfig;
  /** Hands an admitted socket to the broker. */
  readonly handoff: (socket: Socket) => void;
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
  readonly now?: () => number;
};

export type MqttFrontStats = {
  readonly open: number;
  readonly pending: number;
  readonly rejected: Readonly<Record<RejectCause, number>>;
};

export type MqttFront = {
  /** The net.Server connection listener. */
  accept(socket: Socket): void;
  /** The broker accepted this connection's CONNECT (credentials good): the post-login limits apply. */
  admitted(connection: unknown): void;
  stats(): MqttFrontStats;
};

type Tracked = {
  readonly address: string;
  readonly scanner: FrameScanner;
  /** Counted in `pending` (not logged in, not closed). */
  pending: boolean;
  loggedIn: boolean;
  deadline: ReturnType<typeof setTimeout> | null;
};

export function createMqttFront(deps: MqttFrontDeps): MqttFront {
  const { config, handoff, logger } = deps;
  const now = deps.now ?? Date.now;
  const limiter = createAddressLimiter({
    ratePerS: config.connectRatePerAddress,
    burst: config.connectBurstPerAddress,
    now,
  });
  const tracked = new WeakMap<object, Tracked>();
  const rejectedCounter = deps.metrics.counter(
    'edgeloop_mqtt_rejected_total',
    'MQTT sockets closed by the front before or outside the broker, by cause',
  );
  const rejected: Record<RejectCause, number> = {
    max_connections: 0,
    max_pending: 0,
    rate_limited: 0,
    connect_too_large: 0,
    packet_too_large: 0,
    malformed: 0,
    connect_deadline: 0,
  };
  let open = 0;
  let pending = 0;
  deps.metrics.gauge('edgeloop_mqtt_open_connections', 'MQTT sockets open (logged in or not)', () => open);
  deps.metrics.gauge('edgeloop_mqtt_pending_connections', 'MQTT sockets not logged in yet', () => pending);

  const reject = (socket: Socket, cause: RejectCause, detail?: string) => {
    rejected[cause] += 1;
    rejectedCounter.inc({ cause });
    // Not for the accept-time refusals (a storm would log per socket); those are the counter alone.
    if (detail) {
      logger.debug(
        { cause, detail, address: socket.remoteAddress, bytesRead: socket.bytesRead },
        'mqtt socket refused',
      );
    }
    socket.destroy();
  };

  /** It logged in or closed: no longer pending, no deadline. */
  const leavePending = (state: Tracked) => {
    if (!state.pending) return;
    state.pending = false;
    pending -= 1;
    if (state.deadline) clearTimeout(state.deadline);
    state.deadline = null;
  };

  return {
    accept(socket) {
      const address = socket.remoteAddress;
      if (address === undefined) {
        // Already gone (reset before we saw it).
        socket.destroy();
        return;
      }
      if (open >= config.maxConnections) return reject(socket, 'max_connections');
      if (pending >= config.maxPendingConnections) return reject(socket, 'max_pending');
      const key = addressKey(address);
      if (!limiter.take(key)) return reject(socket, 'rate_limited');

      const state: Tracked = {
        address: key,
        scanner: createFrameScanner(),
        pending: true,
        loggedIn: false,
        deadline: null,
      };
      tracked.set(socket, state);
      open += 1;
      pending += 1;
      state.deadline = setTimeout(() => {
        state.deadline = null;
        if (state.pending) {
          reject(socket, 'connect_deadline', `not logged in ${config.connectDeadlineMs} ms after accept`);
        }
      }, config.connectDeadlineMs);
      state.deadline.unref();
      socket.once('close', () => {
        open -= 1;
        leavePending(state);
      });

      handoff(socket);
      // After the broker attached its 'readable' listener: this one does not make the stream flow.
      socket.on('data', (chunk: Buffer) => {
        if (socket.destroyed) return;
        const limit = state.loggedIn ? config.maxPacketBytes : config.maxConnectBytes;
        const violation = state.scanner.scan(chunk, limit);
        if (!violation) return;
        const cause: RejectCause =
          violation.cause === 'packet_too_large'
            ? state.loggedIn
              ? 'packet_too_large'
              : 'connect_too_large'
            : 'malformed';
        reject(socket, cause, violation.detail);
      });
    },

    admitted(connection) {
      if (typeof connection !== 'object' || connection === null) return;
      const state = tracked.get(connection);
      if (!state?.pending) return;
      state.loggedIn = true;
      leavePending(state);
      limiter.giveBack(state.address);
    },

    stats() {
      return { open, pending, rejected: { ...rejected } };
    },
  };
}
