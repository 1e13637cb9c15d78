import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { SystemMetrics } from '@edgeloop/protocol';
import { Aedes } from 'aedes';
import mqtt, { type IClientOptions } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAgent } from '../src/agent.ts';
import { loadConfig } from '../src/config.ts';
import { eventually } from './support/broker.ts';

/*
 * A device enrolled with --auth cert: its certificate, key and CA are handed to mqtt.js as TLS
 * options, and its MQTT CONNECT carries no password (the password file serves HTTP only). The
 * TLS handshake itself is the control plane's test (simulator/test/e2e/tls-journey.test.ts); here
 * the client's TLS options are captured and it connects over plain TCP to a real aedes broker
 * that records each CONNECT's credentials.
 */

const DEVICE = 'cam-agent-tls';
const system: SystemMetrics = {
  cpu: { loadPct: 20, cores: 2 },
  memory: { usedBytes: 1, totalBytes: 2 },
  disk: { usedBytes: 1, totalBytes: 2 },
  temperatures: { cpuC: 40, gpuC: null, zones: {} },
  uptimeS: 1,
};

let dir: string;
const cleanups: Array<() => Promise<void> | void> = [];
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-agent-tls-'));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  rmSync(dir, { recursive: true, force: true });
});

type SeenConnect = { readonly username: string | undefined; readonly password: Buffer | undefined };

async function recordingBroker(): Promise<{ url: string; seen: SeenConnect[] }> {
  const seen: SeenConnect[] = [];
  const broker = await Aedes.createBroker({
    authenticate(_client, username, password, done) {
      seen.push({ username, password });
      done(null, true);
    },
  });
  const server = net.createServer(broker.handle as (socket: net.Socket) => void);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  cleanups.push(async () => {
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`, seen };
}

function writeDeviceFiles() {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  // The agent reads these as text and hands them to mqtt.js; only the TLS handshake parses them.
  writeFileSync(path.join(dir, 'device.crt'), '-----BEGIN CERTIFICATE-----\ndevice\n-----END CERTIFICATE-----\n');
  writeFileSync(path.join(dir, 'device.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  writeFileSync(path.join(dir, 'ca.crt'), '-----BEGIN CERTIFICATE-----\nfleet-ca\n-----END CERTIFICATE-----\n');
  writeFileSync(path.join(dir, 'password'), 'http-only-secret\n', { mode: 0o600 });
}

describe('agent with a device certificate', () => {
  it('passes the certificate, key and CA to mqtt.js and sends no password in its CONNECT', async () => {
    writeDeviceFiles();
    const broker = await recordingBroker();
    const loaded = loadConfig({
      filePath: path.join(dir, 'agent.json'),
      fileText: JSON.stringify({
        deviceId: DEVICE,
        mqtt: {
          url: 'mqtts://127.0.0.1:8883',
          certFile: 'device.crt',
          keyFile: 'device.key',
          caFile: 'ca.crt',
          passwordFile: 'password',
        },
        dataDir: 'state',
        telemetry: { intervalS: 60 },
        outbox: { fsync: 'never' },
      }),
      env: {},
    });
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.error.problems));
    expect(loaded.value.mqtt.password).toBe('http-only-secret');
    const captured: IClientOptions[] = [];
    const agent = createAgent({
      config: loaded.value,
      readSystem: async () => system,
      createClient(options) {
        captured.push(options);
        const { cert: _cert, key: _key, ca: _ca, ...plain } = options;
        return mqtt.connect(broker.url, plain);
      },
    });
    cleanups.push(() => agent.stop({ graceful: false }));
    await agent.start();
    await eventually(() => broker.seen.length > 0);
    expect(broker.seen[0]).toEqual({ username: DEVICE, password: undefined });
    const options = captured[0]!;
    expect(options).not.toHaveProperty('password');
    expect(options.cert).toContain('device');
    expect(options.key).toContain('BEGIN PRIVATE KEY');
    expect(options.ca).toContain('fleet-ca');
  });

  it('a password device still sends its password', async () => {
    const broker = await recordingBroker();
    const loaded = loadConfig({
      fileText: JSON.stringify({
        deviceId: DEVICE,
        mqtt: { url: broker.url, password: 'the-secret' },
        dataDir: path.join(dir, 'state'),
        telemetry: { intervalS: 60 },
        outbox: { fsync: 'never' },
      }),
      env: {},
    });
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.error.problems));
    const agent = createAgent({ config: loaded.value, readSystem: async () => system });
    cleanups.push(() => agent.stop({ graceful: false }));
    await agent.start();
    await eventually(() => broker.seen.length > 0);
    expect(broker.seen[0]?.password?.toString()).toBe('the-secret');
  });
});

describe('agent config for a device certificate', () => {
  it('reads the certificate files relative to the config file and needs an mqtts:// URL', () => {
    writeDeviceFiles();
    const file = path.join(dir, 'agent.json');
    const base = { deviceId: DEVICE, dataDir: 'state' };
    const good = loadConfig({
      filePath: file,
      fileText: JSON.stringify({
        ...base,
        mqtt: { url: 'mqtts://cp:8883', certFile: 'device.crt', keyFile: 'device.key', caFile: 'ca.crt' },
      }),
      env: {},
    });
    expect(good.ok).toBe(true);
    if (!good.ok) return;
    expect(good.value.mqtt.certFile).toBe(path.join(dir, 'device.crt'));
    expect(good.value.mqtt.certPem).toContain('BEGIN CERTIFICATE');
    expect(good.value.mqtt.password).toBeUndefined();

    const plain = loadConfig({
      filePath: file,
      fileText: JSON.stringify({
        ...base,
        mqtt: { url: 'mqtt://cp:1883', certFile: 'device.crt', keyFile: 'device.key' },
      }),
      env: {},
    });
    expect(plain.ok).toBe(false);
    if (plain.ok) return;
    expect(plain.error.problems).toEqual([{ path: 'mqtt.url', message: expect.stringMatching(/mqtts:\/\//) }]);
  });

  it('takes the files from EDGELOOP_MQTT_CERT_FILE, _KEY_FILE and _CA_FILE, and names a missing one', () => {
    writeDeviceFiles();
    const loaded = loadConfig({
      cwd: dir,
      env: {
        EDGELOOP_DEVICE_ID: DEVICE,
        EDGELOOP_MQTT_URL: 'mqtts://cp:8883',
        EDGELOOP_MQTT_CERT_FILE: 'device.crt',
        EDGELOOP_MQTT_KEY_FILE: 'device.key',
        EDGELOOP_MQTT_CA_FILE: 'missing-ca.crt',
        EDGELOOP_DATA_DIR: 'state',
      },
    });
    expect(loaded.ok).toBe(false);
    if (loaded.ok) return;
    expect(loaded.error.problems).toEqual([
      { path: 'mqtt.caFile', message: expect.stringContaining(path.join(dir, 'missing-ca.crt')) },
    ]);
  });

  it('a certificate without its key is refused', () => {
    writeDeviceFiles();
    const loaded = loadConfig({
      cwd: dir,
      fileText: JSON.stringify({ deviceId: DEVICE, mqtt: { url: 'mqtts://cp:8883', certFile: 'device.crt' } }),
      env: {},
    });
    expect(loaded.ok).toBe(false);
    if (loaded.ok) return;
    expect(loaded.error.problems).toContainEqual({ path: 'mqtt.keyFile', message: 'certFile and keyFile go together' });
  });
});
