import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EnrollDeviceResponse, encode, type MessageInputOf, messageId, topicFor } from '@edgeloop/protocol';
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
 * migrations, a known admin token. Devices are real mqtt.js clients.
 */

export type TestControlPlane = {
  readonly cp: ControlPlane;
  readonly started: StartedControlPlane;
  readonly dataDir: string;
  readonly adminToken: string;
  readonly store: SqliteStore;
  /** A request through Hono's app.request (no socket), with the admin token unless given. */
  api(
    method: string,
    path: string,
    options?: { body?: unknown; token?: string | null; raw?: string },
  ): Promise<Response>;
  enroll(id: string, labels?: Record<string, string>): Promise<EnrollDeviceResponse>;
  connect(id: string, password: string, options?: IClientOptions): Promise<MqttClient>;
  /** Enrolls and connects a device. */
  device(id: string, options?: IClientOptions & { labels?: Record<string, string> }): Promise<TestDevice>;
  /** Stops; removes the data dir unless `keepData` (or unless it was given in the overrides). */
  stop(options?: { keepData?: boolean }): Promise<void>;
};

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
};

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

  const api: TestControlPlane['api'] = (method, path, options = {}) => {
    const token = options.token === undefined ? adminToken : options.token;
    const headers: Record<string, string> = {};
    if (token !== null) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined) headers['content-type'] = 'application/json';
    return Promise.resolve(
      cp.internals.app.request(path, { method, headers, ...(body !== undefined ? { body } : {}) }),
    );
  };

  const enroll = async (id: string, labels: Record<string, string> = {}) => {
    const response = await api('POST', '/api/v1/devices', { body: { id, labels } });
    if (response.status !== 201) throw new Error(`enroll ${id}: ${response.status} ${await response.text()}`);
    return (await response.json()) as EnrollDeviceResponse;
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
    return {
      id,
      password: enrolled.credentials.password,
      client,
      bootId,
      nextSeq: () => ++seq,
      async send(channel, body, sendOptions = {}) {
        const s = body.seq ?? ++seq;
        const boot = body.bootId ?? bootId;
        const msgId = body.msgId ?? messageId(boot, s);
        const payload = encode(channel, { ts: Date.now(), ...body, msgId, bootId: boot, seq: s } as never);
        await client.publishAsync(topicFor(id, channel), payload, {
          qos: sendOptions.qos ?? 1,
          retain: sendOptions.retain ?? false,
        });
        return { msgId, seq: s };
      },
    };
  };

  return {
    cp,
    started,
    dataDir,
    adminToken,
    store,
    api,
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
