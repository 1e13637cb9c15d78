import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type ApiClient,
  type Command,
  createApiClient,
  type EnrollDeviceResponse,
  encode,
  type MessageInputOf,
  messageId,
  type Reply,
  topicFor,
  unwrap,
} from '@edgeloop/protocol';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pino from 'pino';
import { type ConfigInput, loadConfig } from '../src/config.ts';
import {
  type ControlPlane,
  type ControlPlaneDeps,
  createControlPlane,
  type StartedControlPlane,
} from '../src/control-plane.ts';
import type { SqliteStore } from '../src/db/sqlite/store.ts';

/*
 * A real control plane for integration tests: ports 0 on 127.0.0.1, a temp data dir, the real
 * migrations, a known admin token. Devices are real mqtt.js clients. Tests call the API through
 * the typed client (`client`, `clientFor`, `createToken`); `raw` is for the tests of the server's
 * own handling of requests that client would never send.
 */

export type TestControlPlane = {
  readonly cp: ControlPlane;
  readonly started: StartedControlPlane;
  readonly dataDir: string;
  readonly adminToken: string;
  readonly store: SqliteStore;
  /** The typed API client with the admin token, over app.request (no socket): every well-formed call. */
  readonly client: ApiClient;
  /** The typed API client with another token (null: none), over app.request. */
  clientFor(token: string | null): ApiClient;
  /** Creates an operator or viewer token (through the admin client): its id, secret and client. */
  createToken(role: 'operator' | 'viewer', name?: string): Promise<TestToken>;
  /**
   * One raw HTTP request through app.request, with the admin token unless given. Not a client:
   * nothing is parsed or checked. It is for tests of how the server answers bad input, status
   * codes, headers and auth (a malformed body, a wrong token, a bad query, a method it refuses);
   * a well-formed API call goes through `client`.
   */
  raw(method: string, path: string, options?: RawRequestOptions): Promise<Response>;
  enroll(id: string, labels?: Record<string, string>): Promise<EnrollDeviceResponse>;
  connect(id: string, password: string, options?: IClientOptions): Promise<MqttClient>;
  /** Enrolls and connects a device. */
  device(id: string, options?: IClientOptions & { labels?: Record<string, string> }): Promise<TestDevice>;
  /** Stops; removes the data dir unless `keepData` (or unless it was given in the overrides). */
  stop(options?: { keepData?: boolean }): Promise<void>;
};

export type RawRequestOptions = {
  /** Sent as JSON. */
  readonly body?: unknown;
  /** The bearer token; null sends none; the admin token when left out. */
  readonly token?: string | null;
  /** Sent as it is, as application/json unless `headers` name another type (a malformed body). */
  readonly raw?: string | Uint8Array;
  /** Sent as multipart/form-data (fetch writes the boundary). */
  readonly form?: FormData;
  readonly headers?: Readonly<Record<string, string>>;
};

export type TestToken = { readonly id: string; readonly secret: string; readonly client: ApiClient };

export type TestDevice = {
  readonly id: string;
  readonly password: string;
  readonly client: MqttClient;
  readonly bootId: string;
  /** Publishes a message of the channel with the next seq; resolves after PUBACK (QoS 1). */
  send<C extends 'status' | 'telemetry' | 'events' | 'reported' | 'reply'>(
    channel: C,
    body: Omit<MessageInputOf<C>, 'msgId' | 'bootId' | 'seq' | 'ts'> &
      Partial<Pick<MessageInputOf<C>, 'msgId' | 'bootId' | 'seq' | 'ts'>>,
    options?: { qos?: 0 | 1; retain?: boolean },
  ): Promise<{ msgId: string; seq: number }>;
  nextSeq(): number;
  /**
   * Subscribes to the device's cmd topic and answers every command with `answer(command)` as a
   * reply (the next seq, the command's requestId); resolves once subscribed.
   */
  answerCommands(answer: (command: Command) => CommandAnswer): Promise<void>;
};

/** A reply without its envelope and request id: `{ ok: true, data }` or `{ ok: false, error }`. */
export type CommandAnswer = Reply extends infer R
  ? R extends unknown
    ? Omit<R, 'msgId' | 'bootId' | 'seq' | 'ts' | 'requestId'>
    : never
  : never;

export const SYSTEM = {
  cpu: { loadPct: 12.5, cores: 4 },
  memory: { usedBytes: 1e9, totalBytes: 8e9 },
  disk: { usedBytes: 5e9, totalBytes: 64e9 },
  temperatures: { cpuC: 48, gpuC: null },
  uptimeS: 100,
};

export function newBootId(): string {
  return `boot${randomBytes(6).toString('hex')}`;
}

export async function startTestControlPlane(
  overrides: ConfigInput = {},
  deps: ControlPlaneDeps = {},
): Promise<TestControlPlane> {
  // A given dataDir is another instance's (a restart): it is kept at stop.
  const ownDataDir = overrides.dataDir === undefined;
  const dataDir = overrides.dataDir ?? mkdtempSync(join(tmpdir(), 'edgeloop-cp-'));
  const adminToken = `test-admin-${randomBytes(12).toString('hex')}`;
  const config = loadConfig({
    overrides: { httpPort: 0, mqttPort: 0, host: '127.0.0.1', adminToken, logLevel: 'silent', ...overrides, dataDir },
  });
  const cp = createControlPlane(config, { logger: pino({ level: 'silent' }), ...deps });
  const started = await cp.start();
  const clients = new Set<MqttClient>();
  const store = cp.internals.store as SqliteStore;

  const raw: TestControlPlane['raw'] = (method, path, options = {}) => {
    const token = options.token === undefined ? adminToken : options.token;
    const headers: Record<string, string> = {};
    if (token !== null) headers.authorization = `Bearer ${token}`;
    let body: string | Uint8Array | FormData | undefined;
    if (options.form !== undefined) body = options.form;
    else if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined && options.form === undefined) headers['content-type'] = 'application/json';
    Object.assign(headers, options.headers);
    return Promise.resolve(
      cp.internals.app.request(path, { method, headers, ...(body !== undefined ? { body } : {}) }),
    );
  };

  // The typed client's requests go to Hono's app.request: the same routes, no socket.
  const appFetch: typeof fetch = (input, init) =>
    Promise.resolve(cp.internals.app.request(input instanceof URL ? input.href : input, init));
  const clientFor = (token: string | null) => createApiClient({ baseUrl: 'http://cp.test', token, fetch: appFetch });
  const client = clientFor(adminToken);

  const createToken: TestControlPlane['createToken'] = async (role, name = `test-${role}`) => {
    const created = await unwrap(client.tokens.create({ name, role }));
    return { id: created.token.id, secret: created.secret, client: clientFor(created.secret) };
  };

  const enroll = async (id: string, labels: Record<string, string> = {}) => {
    const enrolled = await client.devices.enroll({ id, labels });
    if (!enrolled.ok) throw new Error(`enroll ${id}: ${enrolled.error.status} ${enrolled.error.message}`);
    return enrolled.value;
  };

  const connect = async (id: string, password: string, options: IClientOptions = {}) => {
    const client = await mqtt.connectAsync(started.mqttUrl, {
      clientId: id,
      username: id,
      password,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      ...options,
    });
    clients.add(client);
    return client;
  };

  const device: TestControlPlane['device'] = async (id, options = {}) => {
    const { labels, ...mqttOptions } = options;
    const enrolled = await enroll(id, labels);
    const client = await connect(id, enrolled.credentials.password, mqttOptions);
    const bootId = newBootId();
    let seq = 0;
    const send: TestDevice['send'] = async (channel, body, sendOptions = {}) => {
      const s = body.seq ?? ++seq;
      const boot = body.bootId ?? bootId;
      const msgId = body.msgId ?? messageId(boot, s);
      const payload = encode(channel, { ts: Date.now(), ...body, msgId, bootId: boot, seq: s } as never);
      await client.publishAsync(topicFor(id, channel), payload, {
        qos: sendOptions.qos ?? 1,
        retain: sendOptions.retain ?? false,
      });
      return { msgId, seq: s };
    };
    return {
      id,
      password: enrolled.credentials.password,
      client,
      bootId,
      nextSeq: () => ++seq,
      send,
      async answerCommands(answer) {
        const cmdTopic = topicFor(id, 'cmd');
        client.on('message', (topic, payload) => {
          if (topic !== cmdTopic) return;
          const command = JSON.parse(payload.toString()) as Command;
          // A publish that fails (the test ended and closed the client) has nobody to tell.
          send('reply', { ...answer(command), requestId: command.requestId }).catch(() => undefined);
        });
        await client.subscribeAsync(cmdTopic, { qos: 1 });
      },
    };
  };

  return {
    cp,
    started,
    dataDir,
    adminToken,
    store,
    client,
    clientFor,
    createToken,
    raw,
    enroll,
    connect,
    device,
    async stop(options = {}) {
      await Promise.all([...clients].map((client) => client.endAsync(true).catch(() => undefined)));
      await cp.stop();
      if (ownDataDir && !options.keepData) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Polls until `check` returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 5_000, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** The first Server-Sent Event of `type` in a stream's text so far: its block and its parsed data line. */
export function sseEvent(text: string, type: string): { block: string; data: unknown } | null {
  const block = text.split('\n\n').find((chunk) => chunk.includes(`event: ${type}`));
  const line = block?.split('\n').find((l) => l.startsWith('data: '));
  return block && line ? { block, data: JSON.parse(line.slice(6)) } : null;
}
