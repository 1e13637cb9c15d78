import net from 'node:net';
import { parseTopic } from '@edgeloop/protocol';
import { Aedes } from 'aedes';
import { connect, type MqttClient } from 'mqtt';

/*
 * A real aedes 1.2.0 broker for the agent's integration tests, on port 0 (or a given port, to
 * restart on the same one). Devices authenticate with username = client id = device id and a
 * password; they may publish only under their own device-to-cloud topics and subscribe only to
 * their own desired/cmd topics. The `observer` user may do anything (it plays the control plane).
 */

export const OBSERVER = { username: 'observer', password: 'observer-secret' };

export type TestBroker = {
  readonly port: number;
  readonly url: string;
  readonly broker: Aedes;
  /** Destroys every client socket (no DISCONNECT: wills fire) and closes the broker. */
  close(): Promise<void>;
};

export async function startBroker(options: {
  readonly credentials: Readonly<Record<string, string>>;
  readonly port?: number;
  /** Devices (not the observer) are let in only once this resolves. */
  readonly admitDevices?: Promise<void>;
  /** Awaited before a device's publish is accepted (and so before its PUBACK). */
  readonly beforeDevicePublish?: () => Promise<void>;
}): Promise<TestBroker> {
  const credentials = { ...options.credentials, [OBSERVER.username]: OBSERVER.password };
  const broker = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      const expected = username === undefined ? undefined : credentials[username];
      const okay =
        expected !== undefined &&
        password?.toString() === expected &&
        (username === OBSERVER.username || client.id === username);
      if (!okay) return done(Object.assign(new Error('bad credentials'), { returnCode: 4 }), false);
      if (username === OBSERVER.username || !options.admitDevices) return done(null, true);
      options.admitDevices.then(
        () => done(null, true),
        () => done(Object.assign(new Error('refused'), { returnCode: 3 }), false),
      );
    },
    authorizePublish(client, packet, callback) {
      if (!client || client.id.startsWith(OBSERVER.username)) return callback(null);
      const parsed = parseTopic(packet.topic);
      const allowed =
        parsed !== null &&
        parsed.deviceId === client.id &&
        ['status', 'telemetry', 'events', 'reported', 'reply'].includes(parsed.channel);
      if (!allowed) return callback(new Error('not authorized'));
      if (!options.beforeDevicePublish) return callback(null);
      options.beforeDevicePublish().then(
        () => callback(null),
        (error: Error) => callback(error),
      );
    },
    authorizeSubscribe(client, subscription, callback) {
      if (client.id.startsWith(OBSERVER.username)) return callback(null, subscription);
      const parsed = parseTopic(subscription.topic);
      const allowed = parsed !== null && parsed.deviceId === client.id && ['desired', 'cmd'].includes(parsed.channel);
      callback(allowed ? null : new Error('not authorized'), allowed ? subscription : null);
    },
  });
  const server = net.createServer(broker.handle as (socket: net.Socket) => void);
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    broker,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export type Observed = { readonly topic: string; readonly payload: string; readonly retain: boolean };

/** A subscriber (the control plane's seat) recording every message on the given filters. */
export async function startObserver(url: string, filters: string[], clientSuffix = '1') {
  const client: MqttClient = connect(url, {
    clientId: `${OBSERVER.username}-${clientSuffix}`,
    username: OBSERVER.username,
    password: OBSERVER.password,
    reconnectPeriod: 200,
    clean: true,
    log: () => {},
  });
  client.on('error', () => {});
  const messages: Observed[] = [];
  const waiters: Array<{ test: () => boolean; resolve: () => void }> = [];
  client.on('message', (topic, payload, packet) => {
    messages.push({ topic, payload: payload.toString('utf8'), retain: packet.retain });
    for (const waiter of [...waiters]) {
      if (waiter.test()) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  });
  client.on('connect', () => {
    client.subscribe(filters, { qos: 1 });
  });
  await new Promise<void>((resolve) => client.once('connect', () => resolve()));
  await client.subscribeAsync(filters, { qos: 1 });
  return {
    client,
    messages,
    /** Messages on one topic, parsed. */
    json(topic: string): Array<Record<string, unknown>> {
      return messages.filter((m) => m.topic === topic).map((m) => JSON.parse(m.payload) as Record<string, unknown>);
    },
    waitFor(test: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
      if (test()) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(entry), 1);
          reject(new Error(`timed out waiting for ${what}`));
        }, timeoutMs);
        const entry = {
          test,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        };
        waiters.push(entry);
      });
    },
    async close() {
      await client.endAsync(true);
    },
  };
}

export type Observer = Awaited<ReturnType<typeof startObserver>>;

/** Publishes as the control plane would (desired retained, cmd not). */
export async function publishAs(
  observer: Observer,
  topic: string,
  message: unknown,
  options: { retain?: boolean } = {},
): Promise<void> {
  await observer.client.publishAsync(topic, typeof message === 'string' ? message : JSON.stringify(message), {
    qos: 1,
    retain: options.retain ?? false,
  });
}

/** Polls until `test` holds (for state that is not a message). */
export async function eventually(test: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
