import { createHash } from 'node:crypto';
import {
  DEVICE_TO_CLOUD,
  decode,
  encode,
  fail,
  fleetFilter,
  isDeviceToCloud,
  parseTopic,
  topicFor,
} from '@edgeloop/protocol';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { type FleetBroker, sendCommandThrough } from '../broker.ts';
import type { CommandWaiters } from '../command-waiters.ts';
import type { EventBus } from '../events.ts';
import type { IngestWriter } from '../ingest.ts';
import type { MetricsRegistry } from '../metrics.ts';
import type { Clock } from '../time.ts';
import { createSharedSubscriber, type SharedSubscriber } from './shared-subscriber.ts';

/*
 * The control plane on an external MQTT 5 broker (`edgeloop serve --broker-url`, issue 11 §3),
 * behind the same FleetBroker the embedded one offers. Per replica, two connections as the
 * control plane's broker user:
 *
 *   ingest   a shared subscription (`$share/edgeloop/fleet/v1/devices/+/<channel>` for every
 *            device-to-cloud channel) under a persistent session named by the replica id
 *            (shared-subscriber.ts): the replicas split the fleet's messages, each message is
 *            offered to the ingest writer and its PUBACK leaves only after the commit (a dead
 *            letter is a commit too); a failed commit withholds it, and the broker sends it again.
 *   publish  an ordinary mqtt.js client for desired state (retained, QoS 1) and commands, with a
 *            NON-shared subscription to every device's reply topic: the replica holding the waiting
 *            HTTP request resolves it whichever replica stores the reply.
 *
 * There are no connect events: a device is online or offline by its status messages (birth,
 * shutdown, and the will the broker publishes for it, offline/connection-lost) and by the
 * heartbeat sweep. So every offer says liveSession false (the embedded broker drops a will while
 * the device has a live session; here nobody knows the sessions, and the (bootId, session, seq)
 * order alone places a will), and `isConnected` reads the online status this replica has seen,
 * its own events and the other replicas' (the event relay).
 *
 * Devices enrolled on another replica: this replica's ingest accepts only devices it knows. It
 * learns them from the relayed `device.enrolled` / `device.revoked` events, and before that, at
 * the first message of an id it does not know, from the store (the row is committed before the
 * enrollment answers). Meanwhile that device's messages wait in order; an id the store does not
 * know is refused (acked: with dynsec or the hooks such a login cannot exist, so it is a broker
 * misconfiguration, counted), a store that fails withholds the PUBACK.
 */

export const SHARE_GROUP = 'edgeloop';

export type ExternalBrokerDeps = {
  /** mqtt://host:port */
  readonly url: string;
  readonly username: string;
  readonly password: string;
  /** Stable per replica (the persistent ingest session's client id). */
  readonly replicaId: string;
  readonly shareGroup?: string;
  readonly ingest: Pick<IngestWriter, 'offer' | 'knows' | 'addDevice' | 'removeDevice'>;
  /** An active device's enrollment time from the store; null when no active device has the id. */
  readonly lookupDevice: (deviceId: string) => Promise<{ readonly enrolledAt: number } | null>;
  /** The devices whose stored status is online (read at start; events keep it up to date). */
  readonly onlineDevices: () => Promise<readonly string[]>;
  readonly bus: EventBus;
  readonly waiters: CommandWaiters;
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
  readonly clock: Clock;
  /**
   * Runs once the publishing client is connected and before anything is subscribed (the dynsec
   * admin grants the control plane's role there, so the subscriptions that follow are allowed).
   */
  readonly prepare?: (client: MqttClient) => Promise<void>;
  readonly connectTimeoutMs?: number;
  readonly sessionExpiryS?: number;
  readonly reconnectMs?: number;
};

export type ExternalBroker = FleetBroker & {
  /** Connects both clients and subscribes; rejects with an ExternalBrokerError when the broker refuses. */
  start(): Promise<void>;
  /** Both connections are up (readiness). */
  readonly connected: boolean;
  readonly url: string;
};

export class ExternalBrokerError extends Error {
  readonly code = 'external_broker_unavailable';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ExternalBrokerError';
  }
}

/**
 * The default replica id: the host name and the absolute data dir, so a replica restarted on the
 * same machine with the same data gets its persistent session (and its unacknowledged messages) back.
 */
export function defaultReplicaId(hostname: string, dataDir: string): string {
  const host =
    hostname
      .replace(/[^A-Za-z0-9-]/g, '-')
      .replace(/-+/g, '-')
      .slice(0, 32) || 'host';
  const digest = createHash('sha256').update(`${hostname}\u0000${dataDir}`).digest('hex').slice(0, 10);
  return `edgeloop-${host}-${digest}`;
}

/** Whether an MQTT topic filter (`+`, `#`) matches a topic. */
export function topicMatches(filter: string, topic: string): boolean {
  const want = filter.split('/');
  const have = topic.split('/');
  for (let i = 0; i < want.length; i++) {
    const level = want[i];
    if (level === '#') return true; // also the parent level itself (MQTT 3.1.1 §4.7.1.2)
    if (i >= have.length) return false;
    if (level !== '+' && level !== have[i]) return false;
  }
  return want.length === have.length;
}

/** Ids the store did not know are not asked again for this long (a flood of an unknown id costs no queries). */
const UNKNOWN_TTL_MS = 5_000;
const UNKNOWN_MAX = 10_000;

export function createExternalBroker(deps: ExternalBrokerDeps): ExternalBroker {
  const { ingest, logger, waiters, clock } = deps;
  const shareGroup = deps.shareGroup ?? SHARE_GROUP;
  const refused = deps.metrics.counter(
    'edgeloop_external_ingest_refused_total',
    'Messages from the external broker not ingested, by reason (unknown_device, bad_topic)',
  );
  const learned = deps.metrics.counter(
    'edgeloop_external_devices_learned_total',
    'Devices enrolled on another replica that this one learned, by how (event, first_message)',
  );
  const errors = deps.metrics.counter(
    'edgeloop_external_broker_errors_total',
    'Errors of the connections to the external broker, by client (ingest, publish)',
  );

  // Online as this replica has seen it: its own status events and the other replicas'.
  const online = new Set<string>();
  const unknownUntil = new Map<string, number>();
  const learning = new Map<string, ((failed: boolean) => void)[]>();
  const handlers = new Set<{ readonly filter: string; readonly handler: (topic: string, payload: Buffer) => void }>();
  let client: MqttClient | null = null;
  let subscriber: SharedSubscriber | null = null;
  let closed = false;

  deps.metrics.gauge(
    'edgeloop_mqtt_connected_clients',
    'Devices online (external broker: by their status)',
    () => online.size,
  );
  deps.metrics.gauge(
    'edgeloop_external_broker_connected',
    '1 while both connections to the external broker are up',
    () => (broker.connected ? 1 : 0),
  );

  /** Adds a device another replica enrolled, read from the store; `then(failed)` runs after, in order. */
  const learn = (deviceId: string, how: 'event' | 'first_message', then?: (failed: boolean) => void) => {
    const waiting = learning.get(deviceId);
    if (waiting) {
      if (then) waiting.push(then);
      return;
    }
    learning.set(deviceId, then ? [then] : []);
    let failed = false;
    deps
      .lookupDevice(deviceId)
      .then(
        (found) => {
          if (found === null) {
            if (unknownUntil.size >= UNKNOWN_MAX) unknownUntil.clear();
            unknownUntil.set(deviceId, clock.now() + UNKNOWN_TTL_MS);
          } else if (!ingest.knows(deviceId)) {
            ingest.addDevice(deviceId, found.enrolledAt);
            learned.inc({ how });
          }
        },
        (error: unknown) => {
          failed = true;
          logger.error({ err: error, deviceId }, 'reading a device from the store failed; its messages come again');
        },
      )
      .finally(() => {
        const continuations = learning.get(deviceId) ?? [];
        learning.delete(deviceId);
        for (const continuation of continuations) continuation(failed);
      });
  };

  const unsubscribeBus = deps.bus.subscribe(
    (message) => {
      switch (message.type) {
        case 'device.online':
          online.add(message.data.deviceId);
          return;
        case 'device.offline':
          online.delete(message.data.deviceId);
          return;
        case 'device.enrolled':
          unknownUntil.delete(message.data.deviceId);
          if (!ingest.knows(message.data.deviceId)) learn(message.data.deviceId, 'event');
          return;
        case 'device.revoked':
          online.delete(message.data.deviceId);
          ingest.removeDevice(message.data.deviceId);
          return;
        default:
          return;
      }
    },
    { remote: true },
  );

  const offer = (
    deviceId: string,
    channel: (typeof DEVICE_TO_CLOUD)[number],
    topic: string,
    payload: Buffer,
    qos: 0 | 1,
    ack: (stored: boolean) => void,
  ) => {
    if (!ingest.knows(deviceId)) {
      refused.inc({ reason: 'unknown_device' });
      ack(true);
      return;
    }
    // A commit failure (or a control plane shutting down) withholds the PUBACK: the broker sends it again.
    ingest.offer({ deviceId, channel, topic, payload, qos, will: false, liveSession: false }, (error) => ack(!error));
  };

  const onMessage = (topic: string, payload: Buffer, ack: (stored: boolean) => void, _dup: boolean, qos: 0 | 1) => {
    const parsed = parseTopic(topic);
    if (parsed === null || !isDeviceToCloud(parsed.channel)) {
      refused.inc({ reason: 'bad_topic' });
      ack(true);
      return;
    }
    const { deviceId, channel } = parsed;
    if (ingest.knows(deviceId) && !learning.has(deviceId)) {
      offer(deviceId, channel, topic, payload, qos, ack);
      return;
    }
    if ((unknownUntil.get(deviceId) ?? 0) > clock.now() && !learning.has(deviceId)) {
      refused.inc({ reason: 'unknown_device' });
      ack(true);
      return;
    }
    learn(deviceId, 'first_message', (failed) => {
      if (failed) ack(false);
      else offer(deviceId, channel, topic, payload, qos, ack);
    });
  };

  const replyFilter = fleetFilter('reply');
  const onClientMessage = (topic: string, payload: Buffer) => {
    if (topicMatches(replyFilter, topic) && waiters.size > 0) {
      const parsed = parseTopic(topic);
      const reply = decode('reply', payload);
      // Whichever replica stores it: the one holding the request answers it now.
      if (parsed && reply.ok) waiters.resolve(parsed.deviceId, reply.value);
    }
    for (const { filter, handler } of handlers) {
      if (!topicMatches(filter, topic)) continue;
      try {
        handler(topic, payload);
      } catch (error) {
        logger.error({ err: error }, 'internal subscriber failed');
      }
    }
  };

  const connectClient = (): Promise<MqttClient> => {
    const options: IClientOptions = {
      clientId: `${deps.replicaId}-pub`,
      username: deps.username,
      password: deps.password,
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: deps.reconnectMs ?? 1_000,
      connectTimeout: deps.connectTimeoutMs ?? 10_000,
    };
    const opened = mqtt.connect(deps.url, options);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => settle(new Error(`no CONNACK within ${options.connectTimeout} ms`)),
        options.connectTimeout,
      );
      const settle = (error: Error | null) => {
        clearTimeout(timer);
        opened.off('connect', onConnect);
        opened.off('error', onFirstError);
        if (error === null) {
          resolve(opened);
          return;
        }
        opened.end(true);
        reject(
          new ExternalBrokerError(`cannot connect to the broker at ${deps.url}: ${error.message}`, { cause: error }),
        );
      };
      const onConnect = () => settle(null);
      const onFirstError = (error: Error) => settle(error);
      opened.once('connect', onConnect);
      opened.once('error', onFirstError);
      // Always a listener: an 'error' without one would crash the process.
      opened.on('error', (error) => {
        errors.inc({ client: 'publish' });
        logger.warn({ err: error }, 'external broker client error');
      });
      opened.on('offline', () => {
        if (!closed) logger.warn({ url: deps.url }, 'lost the connection to the external broker; reconnecting');
      });
      opened.on('message', onClientMessage);
    });
  };

  const publish = async (topic: string, payload: string, retain: boolean) => {
    if (!client) throw new ExternalBrokerError('the external broker is not started');
    await client.publishAsync(topic, payload, { qos: 1, retain });
  };

  const broker: ExternalBroker = {
    url: deps.url,
    get connected() {
      return client?.connected === true && subscriber?.connected === true;
    },

    async start() {
      for (const id of await deps.onlineDevices()) online.add(id);
      client = await connectClient().catch((error: unknown) => {
        unsubscribeBus();
        throw error;
      });
      try {
        await deps.prepare?.(client);
        const granted = await client.subscribeAsync(replyFilter, { qos: 0 }).catch((error: Error) => {
          throw new ExternalBrokerError(`the broker refused the subscription to ${replyFilter}: ${error.message}`);
        });
        if (granted.some((grant) => grant.qos >= 0x80)) {
          throw new ExternalBrokerError(`the broker refused the subscription to ${replyFilter}`);
        }
        subscriber = createSharedSubscriber({
          url: deps.url,
          username: deps.username,
          password: deps.password,
          clientId: deps.replicaId,
          shareGroup,
          filters: DEVICE_TO_CLOUD.map((channel) => fleetFilter(channel)),
          onMessage,
          onError: (error) => {
            errors.inc({ client: 'ingest' });
            logger.warn({ err: error }, 'external broker ingest connection error');
          },
          sessionExpiryS: deps.sessionExpiryS ?? 3_600,
          ...(deps.reconnectMs !== undefined ? { reconnectMs: deps.reconnectMs } : {}),
        });
        await subscriber.start().catch((error: Error) => {
          throw new ExternalBrokerError(`the broker at ${deps.url} refused the ingest subscription: ${error.message}`, {
            cause: error,
          });
        });
      } catch (error) {
        unsubscribeBus();
        subscriber?.kill();
        await client.endAsync(true).catch(() => undefined);
        client = null;
        subscriber = null;
        throw error;
      }
    },

    isConnected(deviceId) {
      return online.has(deviceId);
    },
    get connectedCount() {
      return online.size;
    },

    // The broker's own login is what keeps a device out (the fleet's DeviceAccess deletes it, and
    // Mosquitto disconnects a deleted client at once); there is no session here to close.
    kick: () => Promise.resolve(),

    publishDesired(deviceId, desired) {
      return publish(topicFor(deviceId, 'desired'), encode('desired', desired), true);
    },

    async subscribe(filter, handler) {
      if (!client) throw new ExternalBrokerError('the external broker is not started');
      const entry = { filter, handler };
      handlers.add(entry);
      await client.subscribeAsync(filter, { qos: 1 });
      return async () => {
        handlers.delete(entry);
        const stillWanted = [...handlers].some((other) => other.filter === filter) || filter === replyFilter;
        if (!stillWanted && client) await client.unsubscribeAsync(filter).catch(() => undefined);
      };
    },

    async sendCommand(deviceId, request, timeoutMs, signal, onPublished) {
      if (!online.has(deviceId)) return fail('offline', `device ${deviceId} is not connected`);
      const through = { waiters, clock, publish: (topic: string, payload: string) => publish(topic, payload, false) };
      return sendCommandThrough(through, deviceId, request, timeoutMs, signal, onPublished);
    },

    async close() {
      closed = true;
      unsubscribeBus();
      // The acks in flight first (the ingest is still committing), then the session is left for the next start.
      await subscriber?.stop();
      await client?.endAsync().catch(() => undefined);
      client = null;
      subscriber = null;
    },
  };
  return broker;
}
