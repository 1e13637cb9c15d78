import { randomUUID } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import {
  type Command,
  checkDeviceId,
  type Desired,
  encode,
  fail,
  isDeviceToCloud,
  type JsonObject,
  ok,
  parseTopic,
  type Reply,
  type Result,
  topicFor,
} from '@edgeloop/protocol';
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket, type Subscription } from 'aedes';
import type { Logger } from 'pino';
import type { CommandWaiters } from './command-waiters.ts';
import type { DeviceSecrets } from './device-secrets.ts';
import type { IngestWriter } from './ingest.ts';
import type { MetricsRegistry } from './metrics.ts';
import type { DeviceIssues } from './mqtt-front-issues.ts';
import type { Clock } from './time.ts';
import type { PeerIdentity } from './tls/tls-listeners.ts';

/*
 * The embedded MQTT broker (aedes 1.2, MQTT 3.1.1) with the fleet's access rules:
 *
 *   authenticate        mTLS first (a certificate chaining to the fleet CA, CN = client id, its
 *                       fingerprint the device's; see authenticateWithCertificates), else:
 *                       username = client id = an enrolled, active device id; password checked
 *                       against its keyed hash (constant time), or a rotation's next secret,
 *                       which the first such login promotes (device-secrets.ts; after the
 *                       rotation's deadline the old secret is refused). A last will is allowed only on
 *                       the device's own status topic. Refusals: CONNACK 4 (bad credentials) or
 *                       5 (not authorized). Failures of an enrolled id's credential and takeovers
 *                       of a live session go to the device issues (auth-failing,
 *                       client-id-flapping); while an id flaps, a takeover is refused with
 *                       CONNACK 2. Sockets reach aedes through the MQTT front (mqtt-front.ts),
 *                       which is told when a connection logged in.
 *   authorizePublish    only the device's own status/telemetry/events/reported/reply topics;
 *                       retain only on status. A refusal closes the connection (MQTT 3.1.1 has no
 *                       negative PUBACK). Accepted payloads go to the ingest writer and the
 *                       callback runs only once they are stored (or dead-lettered): aedes writes
 *                       the PUBACK after it, so an acked message is never lost, and it reads no
 *                       more from that socket meanwhile (per-publisher backpressure).
 *   authorizeSubscribe  exactly the device's own desired and cmd topics; anything else (`#`,
 *                       `+/...`, `$SYS/#`, other devices) gets SUBACK 0x80.
 *
 * Last wills: aedes 1.2 passes a will through authorizePublish (client.close and the will
 * sweeper) before publishing it, so they are ingested there; the `published` hook catches any
 * status packet that was not (an untagged one) so that no will can slip past the ingest.
 * The control plane ingests in the hooks, not through a subscription to the broker's internal
 * emitter (mqemitter); in-process subscriptions (subscribe below) release mqemitter's callback
 * asynchronously, so the recursion under load (moscajs/aedes#193) cannot happen.
 */

const INGESTED: unique symbol = Symbol('edgeloop.ingested');
type TaggedPacket = PublishPacket & { [INGESTED]?: true; clientId?: string };

export type BrokerDeps = {
  /** Device secrets (device-secrets.ts): the current one, or a rotation's next one (which it promotes). */
  readonly secrets: Pick<DeviceSecrets, 'check'>;
  readonly ingest: IngestWriter;
  readonly waiters: CommandWaiters;
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Auth failures and takeovers per enrolled device (health reasons); none tracked when absent. */
  readonly issues?: DeviceIssues;
  /** Told of every connection whose CONNECT was accepted (the MQTT front lifts its pre-login limits). */
  readonly front?: { admitted(connection: unknown): void };
  /** aedes's own CONNECT timeout; the front's deadline is meant to come first. Default 30 s. */
  readonly connectTimeoutMs?: number;
  /**
   * X.509 device identity (mTLS): the certificate a TLS connection presented, and the fingerprint
   * stored for a cert device. Absent: no fleet CA, passwords only.
   */
  readonly certificates?: DeviceCertificateAuth;
};

/** What the broker needs for certificate logins (tls/tls-listeners.ts and the devices repository). */
export type DeviceCertificateAuth = {
  identify(connection: unknown): PeerIdentity | null;
  /** The fingerprint of an active device enrolled with a certificate; null for others. */
  fingerprint(deviceId: string): Promise<string | null>;
};

export type CommandRequest = { readonly name: string; readonly args?: JsonObject };
export type CommandError = 'offline' | 'timeout';

/**
 * What the rest of the control plane (fleet, HTTP API, rollouts) uses of a broker: the embedded
 * one below, or an external one (external-broker/external-broker.ts).
 */
export type FleetBroker = {
  /** Whether the device has a connected session that is not closing. */
  isConnected(deviceId: string): boolean;
  readonly connectedCount: number;
  /** Closes the device's live session at once (revocation). */
  kick(deviceId: string): Promise<void>;
  /** Publishes desired state, retained, QoS 1, on the device's desired topic. */
  publishDesired(deviceId: string, desired: Desired): Promise<void>;
  /**
   * Subscribes in-process to a topic filter (a bridge, a dashboard feed). The handler's callback
   * is always released asynchronously: a synchronous callback lets mqemitter recurse through its
   * backlog under load and overflow the stack (moscajs/aedes#193). Returns the unsubscribe.
   */
  subscribe(filter: string, handler: (topic: string, payload: Buffer) => void): Promise<() => Promise<void>>;
  /**
   * Sends a command and waits for its reply. `onPublished` runs once the broker has the command,
   * before the wait (a rotation hands the new secret to a broker that keeps its own copy there).
   */
  sendCommand(
    deviceId: string,
    command: CommandRequest,
    timeoutMs: number,
    signal?: AbortSignal,
    onPublished?: () => Promise<void>,
  ): Promise<Result<Reply, CommandError>>;
  close(): Promise<void>;
};

/** The embedded broker: a FleetBroker that takes the device connections itself. */
export type ControlBroker = FleetBroker & {
  readonly aedes: Aedes;
  /** Hands a new connection (a net.Socket or any duplex stream) to the broker. */
  handle(connection: Parameters<Aedes['handle']>[0]): void;
};

/**
 * A command out on the device's cmd topic through `publish` (QoS 1, not retained), its reply
 * awaited: the same for the embedded broker and an external one. `onPublished` runs once the
 * broker has it.
 */
export async function sendCommandThrough(
  deps: {
    readonly waiters: Pick<CommandWaiters, 'wait'>;
    readonly clock: Clock;
    readonly publish: (topic: string, payload: string) => Promise<void>;
  },
  deviceId: string,
  request: CommandRequest,
  timeoutMs: number,
  signal?: AbortSignal,
  onPublished?: () => Promise<void>,
): Promise<Result<Reply, CommandError>> {
  const now = deps.clock.now();
  const command: Command = {
    requestId: randomUUID(),
    name: request.name,
    args: request.args ?? {},
    issuedAt: now,
    expiresAt: now + timeoutMs,
  };
  const reply = deps.waiters.wait(deviceId, command.requestId, timeoutMs, signal);
  await deps.publish(topicFor(deviceId, 'cmd'), encode('cmd', command));
  await onPublished?.();
  const answer = await reply;
  if (answer) return ok(answer);
  if (signal?.aborted) return fail('timeout', 'the request was cancelled before the device replied');
  return fail('timeout', `no reply from ${deviceId} within ${timeoutMs} ms`);
}

/** CONNACK return codes we use: 2 identifier rejected, 3 server unavailable, 4 bad credentials, 5 not authorized. */
type AuthCode = 2 | 3 | 4 | 5;

function authError(message: string, returnCode: AuthCode): Error & { returnCode: AuthCode } {
  return Object.assign(new Error(message), { returnCode });
}

function capSubscriptionQos(packet: { cmd?: string; subscriptions?: { qos: number }[] }): void {
  if (packet.cmd !== 'subscribe' || !packet.subscriptions) return;
  for (const subscription of packet.subscriptions) {
    if (subscription.qos > 1) subscription.qos = 1;
  }
}

export async function createBroker(deps: BrokerDeps): Promise<ControlBroker> {
  const { ingest, logger, waiters } = deps;
  const authFailures = deps.metrics.counter('edgeloop_mqtt_auth_failures_total', 'Refused MQTT connects, by reason');
  const aclDenials = deps.metrics.counter('edgeloop_mqtt_acl_denials_total', 'Refused publishes and subscriptions');
  const clientErrors = deps.metrics.counter('edgeloop_mqtt_client_errors_total', 'MQTT connections closed on error');
  const wills = deps.metrics.counter('edgeloop_mqtt_wills_total', 'Last wills published by the broker');

  const isLive = (client: Client | undefined | null): boolean => client?.connected === true && !client.closed;

  // Holds the broker once created; the hooks below only run after that.
  let broker: Aedes | null = null;
  const liveClient = (deviceId: string): Client | undefined =>
    (broker as { clients?: Record<string, Client> } | null)?.clients?.[deviceId];

  const refuse = (reason: string, message: string, returnCode: AuthCode) => {
    authFailures.inc({ reason });
    return authError(message, returnCode);
  };

  const authenticate = (
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    callback: (error: (Error & { returnCode: AuthCode }) | null, success: boolean | null) => void,
  ) => {
    const deviceId = client.id;
    if (username === undefined || password === undefined || password.length === 0) {
      callback(refuse('anonymous', 'username and password are required', 4), null);
      return;
    }
    if (username !== deviceId || !checkDeviceId(deviceId).ok) {
      callback(refuse('client_id_mismatch', 'the username must equal the client id, a device id', 5), null);
      return;
    }
    // Set by aedes from CONNECT before authenticate runs.
    const will = (client as Client & { _will?: { topic?: string } | null })._will;
    if (will && will.topic !== topicFor(deviceId, 'status')) {
      callback(refuse('will_topic', 'a last will is allowed only on the device status topic', 5), null);
      return;
    }
    deps.secrets.check(deviceId, password.toString('utf8')).then(
      (checked) => {
        if (checked === 'unknown' || !ingest.knows(deviceId)) {
          callback(refuse('unknown_device', 'unknown or revoked device', 4), null);
        } else if (checked === 'refused' || checked === 'expired') {
          // Counted per id only here, for an enrolled device: unknown ids never get an entry.
          deps.issues?.noteAuthFailure(deviceId);
          const reason = checked === 'expired' ? 'secret_expired' : 'bad_password';
          callback(refuse(reason, 'bad user name or password', 4), null);
        } else if (deps.issues?.noteLogin(deviceId, isLive(liveClient(deviceId))) === 'refuse') {
          callback(refuse('client_id_flapping', 'the client id is held by another live session', 2), null);
        } else {
          deps.front?.admitted(client.conn);
          callback(null, true);
        }
      },
      (error: unknown) => {
        logger.error({ err: error }, 'credential lookup failed');
        callback(authError('server unavailable', 3), null);
      },
    );
  };

  /**
   * mTLS in front of the password check. A connection that presented a certificate is judged by
   * it alone: it must chain to the fleet CA, its CN must be the client id, its fingerprint the one
   * stored for that active device (a superseded certificate is refused); a username, if sent, must
   * be the id; a password is ignored. A device enrolled with a certificate is refused without it:
   * its password serves HTTP only. Everything else goes to the password check unchanged.
   */
  const authenticateWithCertificates =
    (certificates: DeviceCertificateAuth): typeof authenticate =>
    (client, username, password, callback) => {
      const deviceId = client.id;
      const peer = certificates.identify(client.conn);
      if (peer === null) {
        if (!checkDeviceId(deviceId).ok) {
          authenticate(client, username, password, callback);
          return;
        }
        certificates.fingerprint(deviceId).then(
          (fingerprint) => {
            if (fingerprint === null) {
              authenticate(client, username, password, callback);
              return;
            }
            deps.issues?.noteAuthFailure(deviceId);
            callback(refuse('cert_required', 'this device logs in with its certificate (MQTT over TLS)', 4), null);
          },
          (error: unknown) => {
            logger.error({ err: error }, 'certificate lookup failed');
            callback(authError('server unavailable', 3), null);
          },
        );
        return;
      }
      if (!peer.authorized) {
        callback(refuse('cert_untrusted', `the client certificate is not trusted (${peer.reason})`, 4), null);
        return;
      }
      if (
        !checkDeviceId(deviceId).ok ||
        peer.commonName !== deviceId ||
        (username !== undefined && username !== deviceId)
      ) {
        callback(refuse('cert_cn_mismatch', 'the certificate CN must equal the client id, a device id', 5), null);
        return;
      }
      const will = (client as Client & { _will?: { topic?: string } | null })._will;
      if (will && will.topic !== topicFor(deviceId, 'status')) {
        callback(refuse('will_topic', 'a last will is allowed only on the device status topic', 5), null);
        return;
      }
      certificates.fingerprint(deviceId).then(
        (fingerprint) => {
          if (fingerprint === null || !ingest.knows(deviceId)) {
            callback(refuse('unknown_device', 'unknown or revoked device', 4), null);
          } else if (fingerprint !== peer.fingerprint) {
            deps.issues?.noteAuthFailure(deviceId);
            callback(refuse('cert_superseded', 'this certificate is not the one issued to the device', 4), null);
          } else if (deps.issues?.noteLogin(deviceId, isLive(liveClient(deviceId))) === 'refuse') {
            callback(refuse('client_id_flapping', 'the client id is held by another live session', 2), null);
          } else {
            deps.front?.admitted(client.conn);
            callback(null, true);
          }
        },
        (error: unknown) => {
          logger.error({ err: error }, 'certificate lookup failed');
          callback(authError('server unavailable', 3), null);
        },
      );
    };

  const ingestWill = (deviceId: string, packet: TaggedPacket, done: (error?: Error | null) => void) => {
    wills.inc();
    packet[INGESTED] = true;
    // Status lives in the database; nobody but the control plane may read device topics here, so
    // the embedded broker keeps no retained copy (a packet and payload per device saved).
    packet.retain = false;
    ingest.offer(
      {
        deviceId,
        channel: 'status',
        topic: packet.topic,
        payload: packet.payload as Buffer,
        qos: packet.qos,
        will: true,
        liveSession: isLive(liveClient(deviceId)),
      },
      (error) => done(error ?? null),
    );
  };

  const authorizePublish = (client: Client | null, packet: TaggedPacket, callback: (error?: Error | null) => void) => {
    const parsed = parseTopic(packet.topic);
    if (client === null) {
      // A stored will published by the will sweeper after its client vanished.
      if (parsed?.channel === 'status' && packet.clientId === parsed.deviceId && ingest.knows(parsed.deviceId)) {
        ingestWill(parsed.deviceId, packet, callback);
      } else {
        aclDenials.inc({ action: 'publish' });
        callback(new Error('not authorized'));
      }
      return;
    }
    const deviceId = client.id;
    const isOwnWill = (client as Client & { will?: unknown }).will === packet;
    if (isOwnWill && !ingest.knows(deviceId)) {
      // The will of a session kicked at revocation: not published, not an access violation.
      callback(new Error('device revoked'));
      return;
    }
    if (
      parsed === null ||
      parsed.deviceId !== deviceId ||
      !isDeviceToCloud(parsed.channel) ||
      (packet.retain && parsed.channel !== 'status') ||
      !ingest.knows(deviceId)
    ) {
      aclDenials.inc({ action: 'publish' });
      callback(new Error('not authorized'));
      return;
    }
    if (isOwnWill) {
      ingestWill(deviceId, packet, callback);
      return;
    }
    packet[INGESTED] = true;
    packet.retain = false;
    ingest.offer(
      {
        deviceId,
        channel: parsed.channel,
        topic: packet.topic,
        payload: packet.payload as Buffer,
        qos: packet.qos,
        will: false,
        liveSession: isLive(client),
      },
      (error) => callback(error ?? null),
    );
  };

  const authorizeSubscribe = (
    client: Client,
    subscription: Subscription,
    callback: (error: Error | null, subscription?: Subscription | null) => void,
  ) => {
    const deviceId = client.id;
    const allowed =
      subscription.topic === topicFor(deviceId, 'desired') || subscription.topic === topicFor(deviceId, 'cmd');
    if (!allowed) {
      aclDenials.inc({ action: 'subscribe' });
      callback(null, null);
      return;
    }
    callback(null, { ...subscription, qos: Math.min(subscription.qos, 1) as 0 | 1 });
  };

  const published = (packet: AedesPublishPacket, client: Client | null, callback: (error?: Error | null) => void) => {
    const tagged = packet as TaggedPacket;
    if (tagged[INGESTED]) {
      callback(null);
      return;
    }
    const parsed = parseTopic(packet.topic);
    // Only a will can reach here untagged on a device topic (the broker publishes it itself).
    if (parsed?.channel === 'status' && ingest.knows(parsed.deviceId)) {
      const owner = client?.id ?? tagged.clientId;
      if (owner === parsed.deviceId) {
        ingestWill(parsed.deviceId, tagged, () => callback(null));
        return;
      }
    }
    callback(null);
  };

  const aedes = await Aedes.createBroker({
    ...(deps.connectTimeoutMs ? { connectTimeout: deps.connectTimeoutMs } : {}),
    authenticate: (deps.certificates ? authenticateWithCertificates(deps.certificates) : authenticate) as never,
    authorizePublish: authorizePublish as never,
    authorizeSubscribe,
    published: published as never,
  });
  broker = aedes;

  aedes.on('clientReady', (client) => ingest.noteConnection(client.id, true));
  aedes.on('clientDisconnect', (client) => {
    // On a takeover the new session is registered after the old one left: it is online.
    ingest.noteConnection(client.id, isLive(liveClient(client.id)));
  });
  aedes.on('clientError', (_client, error) => {
    clientErrors.inc();
    logger.debug({ err: error }, 'mqtt client error');
  });
  aedes.on('connectionError', () => clientErrors.inc());
  // An 'error' event without a listener would crash the process.
  (aedes as EventEmitter).on('error', (error: Error) => logger.error({ err: error }, 'broker error'));

  deps.metrics.gauge('edgeloop_mqtt_connected_clients', 'Connected MQTT clients', () => aedes.connectedClients);

  const publish = (packet: { topic: string; payload: Buffer; qos: 0 | 1; retain: boolean }) =>
    new Promise<void>((resolve, reject) => {
      aedes.publish({ cmd: 'publish', dup: false, ...packet } as PublishPacket, (error?: Error) =>
        error ? reject(error) : resolve(),
      );
    });

  return {
    aedes,
    handle(connection) {
      const client = aedes.handle(connection) as Client & { _parser?: EventEmitter };
      // QoS <= 1 for every subscription. authorizeSubscribe's lowered QoS reaches the routing but
      // not the SUBACK or the persisted session: aedes 1.2 takes the granted QoS from the packet
      // before it asks. So the parsed SUBSCRIBE is capped before aedes sees it (its parser's
      // 'packet' event, ahead of aedes's own listener; aedes is pinned, and a test asks for QoS 2).
      client._parser?.prependListener('packet', capSubscriptionQos);
    },
    isConnected(deviceId) {
      return isLive(liveClient(deviceId));
    },
    get connectedCount() {
      return aedes.connectedClients;
    },
    kick(deviceId) {
      const client = liveClient(deviceId);
      if (!client) return Promise.resolve();
      return new Promise<void>((resolve) => client.close(() => resolve()));
    },
    subscribe(filter, handler) {
      const deliver = (packet: AedesPublishPacket, done: () => void) => {
        try {
          handler(packet.topic, packet.payload as Buffer);
        } catch (error) {
          logger.error({ err: error }, 'internal subscriber failed');
        }
        setImmediate(done);
      };
      return new Promise((resolve) => {
        aedes.subscribe(filter, deliver, () =>
          resolve(() => new Promise<void>((done) => aedes.unsubscribe(filter, deliver, () => done()))),
        );
      });
    },
    publishDesired(deviceId, desired) {
      return publish({
        topic: topicFor(deviceId, 'desired'),
        payload: Buffer.from(encode('desired', desired)),
        qos: 1,
        retain: true,
      });
    },
    async sendCommand(deviceId, request, timeoutMs, signal, onPublished) {
      if (!isLive(liveClient(deviceId))) return fail('offline', `device ${deviceId} is not connected`);
      const through = {
        waiters,
        clock: deps.clock,
        publish: (topic: string, payload: string) =>
          publish({ topic, payload: Buffer.from(payload), qos: 1 as const, retain: false }),
      };
      return sendCommandThrough(through, deviceId, request, timeoutMs, signal, onPublished);
    },
    close() {
      return new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}
