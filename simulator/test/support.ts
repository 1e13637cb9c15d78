import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConfigInput } from '@edgeloop/control-plane';
import { type ControlPlane, createControlPlane, loadConfig, type StartedControlPlane } from '@edgeloop/control-plane';
import pino from 'pino';

/* A real control plane (embedded aedes, SQLite with the real migrations) on ports 0 for
 * whole-system tests, plus small HTTP helpers that go over the real socket. */

export type RunningControlPlane = {
  readonly cp: ControlPlane;
  readonly started: StartedControlPlane;
  readonly dataDir: string;
  readonly token: string;
  get(path: string): Promise<unknown>;
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
    async get(path) {
      const response = await fetch(new URL(path, started.httpUrl), { headers: { authorization: `Bearer ${token}` } });
      if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status} ${await response.text()}`);
      return response.json();
    },
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
