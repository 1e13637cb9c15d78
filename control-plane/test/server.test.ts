import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Desired, encode, messageId, topicFor } from '@edgeloop/protocol';
import mqtt from 'mqtt';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.ts';
import { loadConfig } from '../src/config.ts';
import { createControlPlane, PortInUseError } from '../src/control-plane.ts';
import { createSqliteStore } from '../src/db/sqlite/store.ts';
import { newBootId, SYSTEM, startTestControlPlane } from './harness.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'edgeloop-server-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function occupyPort(): Promise<Server & { port: number }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return Object.assign(server, { port: (server.address() as { port: number }).port });
}

const silent = pino({ level: 'silent' });

describe('start and stop', () => {
  it('fails with a one-line error naming --mqtt-port when the MQTT port is taken, and releases what it opened', async () => {
    const busy = await occupyPort();
    const config = loadConfig({
      overrides: { httpPort: 0, mqttPort: busy.port, host: '127.0.0.1', dataDir: tempDir(), logLevel: 'silent' },
    });
    const error = await createControlPlane(config, { logger: silent })
      .start()
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(PortInUseError);
    const portError = error as PortInUseError;
    expect(portError.message).toBe(`MQTT port ${busy.port} is already in use; choose another with --mqtt-port`);
    expect(portError.message).not.toContain('\n');
    expect(portError).toMatchObject({ code: 'port_in_use', port: busy.port, flag: '--mqtt-port' });
    // The database was closed again: a second control plane can open the same data dir.
    const again = createControlPlane({ ...config, mqttPort: 0 }, { logger: silent });
    await again.start();
    await again.stop();
  });

  it('fails with a one-line error naming --http-port when the HTTP port is taken', async () => {
    const busy = await occupyPort();
    const config = loadConfig({
      overrides: { httpPort: busy.port, mqttPort: 0, host: '127.0.0.1', dataDir: tempDir(), logLevel: 'silent' },
    });
    const error = await createControlPlane(config, { logger: silent })
      .start()
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'port_in_use',
      flag: '--http-port',
      message: `HTTP port ${busy.port} is already in use; choose another with --http-port`,
    });
  });

  it('stores everything still queued when stopped', async () => {
    const t = await startTestControlPlane({ ingest: { flushIntervalMs: 10_000, batchSize: 5_000 } });
    const d = await t.device('stop-flush');
    const bootId = newBootId();
    const ingest = t.cp.internals.ingest;
    const results: (Error | null | undefined)[] = [];
    for (let seq = 1; seq <= 300; seq++) {
      const payload = encode('telemetry', {
        msgId: messageId(bootId, seq),
        bootId,
        seq,
        ts: Date.now(),
        intervalS: 10,
        system: SYSTEM,
      });
      ingest.offer(
        {
          deviceId: d.id,
          channel: 'telemetry',
          topic: topicFor(d.id, 'telemetry'),
          payload: Buffer.from(payload),
          qos: 1,
          will: false,
          liveSession: true,
        },
        (error) => results.push(error),
      );
    }
    expect(ingest.stats().queueDepth).toBeGreaterThanOrEqual(300);
    const dataDir = t.dataDir;
    await d.client.endAsync(true);
    await t.cp.stop();
    expect(results).toHaveLength(300);
    expect(results.every((error) => error === null)).toBe(true);
    const store = createSqliteStore({ dataDir });
    expect(await store.messages.count('stop-flush')).toBe(300);
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('re-publishes retained desired state after a restart, and devices keep their credentials', async () => {
    const dataDir = tempDir();
    const adminToken = `restart-admin-${randomBytes(8).toString('hex')}`;
    const overrides = { httpPort: 0, mqttPort: 0, host: '127.0.0.1', dataDir, adminToken, logLevel: 'silent' as const };
    const first = createControlPlane(loadConfig({ overrides }), { logger: silent });
    await first.start();
    const enrolled = await first.internals.fleet.enroll({ id: 'restart-cam', labels: {} });
    if (!enrolled.ok) throw new Error(enrolled.error.message);
    const desired = await first.internals.fleet.setDesired('restart-cam', { telemetryIntervalS: 3 });
    await first.stop();

    const second = createControlPlane(loadConfig({ overrides }), { logger: silent });
    const started = await second.start();
    cleanups.push(() => second.stop());
    const client = await mqtt.connectAsync(started.mqttUrl, {
      clientId: 'restart-cam',
      username: 'restart-cam',
      password: enrolled.value.credentials.password,
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    cleanups.push(() => client.endAsync(true));
    const topic = topicFor('restart-cam', 'desired');
    const received = new Promise<Buffer>((resolve) => client.on('message', (_t, payload) => resolve(payload)));
    await client.subscribeAsync(topic, { qos: 1 });
    expect(Desired.parse(JSON.parse((await received).toString()))).toEqual(desired);
    expect(started.adminToken).toBeNull();
  });

  it('generates an admin token once when none is configured, and not again on the next start', async () => {
    const dataDir = tempDir();
    const overrides = { httpPort: 0, mqttPort: 0, host: '127.0.0.1', dataDir, logLevel: 'silent' as const };
    const first = createControlPlane(loadConfig({ overrides }), { logger: silent });
    const started = await first.start();
    expect(started.adminToken).toMatch(/^elt_[A-Za-z0-9_-]{43}$/);
    const response = await first.internals.app.request('/api/v1/fleet/summary', {
      headers: { authorization: `Bearer ${started.adminToken}` },
    });
    expect(response.status).toBe(200);
    await first.stop();
    const second = createControlPlane(loadConfig({ overrides }), { logger: silent });
    expect((await second.start()).adminToken).toBeNull();
    const still = await second.internals.app.request('/api/v1/fleet/summary', {
      headers: { authorization: `Bearer ${started.adminToken}` },
    });
    expect(still.status).toBe(200);
    await second.stop();
    // EDGELOOP_ADMIN_TOKEN replaces the bootstrap token.
    const third = createControlPlane(
      loadConfig({ overrides: { ...overrides, adminToken: 'chosen-admin-token-0123' } }),
      {
        logger: silent,
      },
    );
    await third.start();
    const old = await third.internals.app.request('/api/v1/fleet/summary', {
      headers: { authorization: `Bearer ${started.adminToken}` },
    });
    expect(old.status).toBe(401);
    const chosen = await third.internals.app.request('/api/v1/fleet/summary', {
      headers: { authorization: 'Bearer chosen-admin-token-0123' },
    });
    expect(chosen.status).toBe(200);
    await third.stop();
  });
});

describe('edgeloop CLI', () => {
  function io() {
    const out: string[] = [];
    const err: string[] = [];
    return {
      out,
      err,
      io: {
        out: (text: string) => out.push(text),
        err: (text: string) => err.push(text),
        waitForShutdown: () => new Promise<string>(() => undefined),
      },
    };
  }

  it('prints help and refuses unknown commands and bad flags with exit code 2', async () => {
    const help = io();
    expect(await runCli(['--help'], {}, help.io)).toBe(0);
    expect(help.out.join('')).toContain('--mqtt-port');
    const unknown = io();
    expect(await runCli(['fly'], {}, unknown.io)).toBe(2);
    expect(unknown.err.join('')).toContain('unknown command');
    const badFlags = io();
    expect(await runCli(['serve', '--http-port', 'abc', '--nope', 'x'], {}, badFlags.io)).toBe(2);
    expect(badFlags.err.join('')).toContain('unknown flag --nope');
    expect(badFlags.err.join('')).toContain('--http-port / EDGELOOP_HTTP_PORT');
  });

  it('lists, enrolls, gets and deletes devices against a running server', async () => {
    const t = await startTestControlPlane();
    cleanups.push(() => t.stop());
    const env = { EDGELOOP_URL: t.started.httpUrl, EDGELOOP_TOKEN: t.adminToken };
    const enroll = io();
    expect(await runCli(['devices', 'enroll', 'cli-cam', '--label', 'site=lab'], env, enroll.io)).toBe(0);
    expect(JSON.parse(enroll.out.join('')).credentials.username).toBe('cli-cam');
    const list = io();
    expect(await runCli(['devices', 'list', '--label', 'site=lab'], env, list.io)).toBe(0);
    expect(list.out.join('')).toMatch(/ID\s+STATUS[\s\S]*cli-cam\s+unknown/);
    const get = io();
    expect(await runCli(['devices', 'get', 'cli-cam'], env, get.io)).toBe(0);
    expect(JSON.parse(get.out.join('')).device.labels).toEqual({ site: 'lab' });
    const del = io();
    expect(await runCli(['devices', 'delete', 'cli-cam'], env, del.io)).toBe(0);
    const missing = io();
    expect(await runCli(['devices', 'get', 'cli-cam'], env, missing.io)).toBe(1);
    expect(missing.err.join('')).toContain('404');
    const noToken = io();
    expect(await runCli(['devices', 'list'], { EDGELOOP_URL: t.started.httpUrl }, noToken.io)).toBe(2);
  });

  it('serves from the bin script, prints the port error on one line and exits 3 when a port is taken', async () => {
    const busy = await occupyPort();
    const bin = fileURLToPath(new URL('../bin/edgeloop.js', import.meta.url));
    const child = spawn(process.execPath, [bin, 'serve', '--http-port', String(busy.port), '--mqtt-port', '0'], {
      env: { ...process.env, EDGELOOP_DATA_DIR: tempDir(), EDGELOOP_HOST: '127.0.0.1', EDGELOOP_LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(3);
    expect(stderr).toBe(`HTTP port ${busy.port} is already in use; choose another with --http-port\n`);
  });

  it('shuts down cleanly on SIGTERM with exit code 0, printing a generated admin token once', async () => {
    const bin = fileURLToPath(new URL('../bin/edgeloop.js', import.meta.url));
    const child = spawn(process.execPath, [bin, 'serve', '--http-port', '0', '--mqtt-port', '0'], {
      env: { ...process.env, EDGELOOP_DATA_DIR: tempDir(), EDGELOOP_HOST: '127.0.0.1', EDGELOOP_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (stdout.includes('Admin token')) resolve();
      });
    });
    expect(stdout).toMatch(/shown ONCE[\s\S]*elt_[A-Za-z0-9_-]{43}/);
    const url = /HTTP\s+(http:\/\/\S+)/.exec(stdout)![1]!;
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
  });
});
