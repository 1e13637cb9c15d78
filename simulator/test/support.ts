import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ConfigInput } from '@edgeloop/control-plane';
import { type ControlPlane, createControlPlane, loadConfig, type StartedControlPlane } from '@edgeloop/control-plane';
import { type ApiClient, createApiClient } from '@edgeloop/protocol';
import pino from 'pino';

/* A real control plane (embedded aedes, SQLite with the real migrations) on ports 0 for
 * whole-system tests, with the typed API client (admin token) over the real socket. */

export type RunningControlPlane = {
  readonly cp: ControlPlane;
  readonly started: StartedControlPlane;
  readonly dataDir: string;
  readonly token: string;
  /** The typed API client with the admin token. */
  readonly client: ApiClient;
  stop(): Promise<void>;
};

export async function runControlPlane(overrides: ConfigInput = {}, dataDir?: string): Promise<RunningControlPlane> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'edgeloop-e2e-'));
  const token = `e2e-${randomBytes(16).toString('hex')}`;
  const config = loadConfig({
    overrides: {
      httpPort: 0,
      mqttPort: 0,
      host: '127.0.0.1',
      dataDir: dir,
      adminToken: token,
      logLevel: 'silent',
      ...overrides,
    },
  });
  const cp = createControlPlane(config, { logger: pino({ level: 'silent' }) });
  const started = await cp.start();
  return {
    cp,
    started,
    dataDir: dir,
    token,
    client: createApiClient({ baseUrl: started.httpUrl, token }),
    async stop() {
      await cp.stop();
      if (!dataDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function eventually<T>(
  check: () => T | Promise<T>,
  timeoutMs: number,
  what: string,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${String(last)})`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** A port free right now on 127.0.0.1 (for a child process that must keep it across restarts). */
export function freePort(): Promise<number> {
  return new Promise((done, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => done(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');

export type ControlPlaneProcess = {
  readonly child: ChildProcess;
  readonly url: string;
  readonly mqttUrl: string;
  /** The process's stdout and stderr so far (the last 4 KiB). */
  log(): string;
  /** Resolves with the exit code once the process has exited. */
  exited(): Promise<number | null>;
};

export type ControlPlaneProcessOptions = {
  readonly httpPort: number;
  readonly mqttPort: number;
  readonly dataDir: string;
  readonly token: string;
  readonly trustedKeys?: string;
  readonly rolloutsTickMs?: number;
};

/** `edgeloop serve` as a real child process (SIGKILL-able), up when /healthz answers. */
export async function spawnControlPlane(options: ControlPlaneProcessOptions): Promise<ControlPlaneProcess> {
  const args = [
    join(repoRoot, 'control-plane/bin/edgeloop.js'),
    'serve',
    ...['--http-port', String(options.httpPort), '--mqtt-port', String(options.mqttPort), '--host', '127.0.0.1'],
    ...['--data-dir', options.dataDir],
    ...(options.trustedKeys ? ['--trusted-keys', options.trustedKeys] : []),
    ...(options.rolloutsTickMs ? ['--rollouts-tick-ms', String(options.rolloutsTickMs)] : []),
  ];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, EDGELOOP_ADMIN_TOKEN: options.token, EDGELOOP_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-4096);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const url = `http://127.0.0.1:${options.httpPort}`;
  const exited = () =>
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve(child.exitCode)
      : new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  await eventually(
    async () => {
      if (child.exitCode !== null) throw new Error(`edgeloop serve exited ${child.exitCode}: ${log}`);
      return (await createApiClient({ baseUrl: url, token: null }).healthz()).ok;
    },
    30_000,
    'control plane up',
    100,
  );
  return { child, url, mqttUrl: `mqtt://127.0.0.1:${options.mqttPort}`, log: () => log, exited };
}
