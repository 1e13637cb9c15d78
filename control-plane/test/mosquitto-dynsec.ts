import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/*
 * A Mosquitto 2 of a suite's own: a free port on 127.0.0.1, its own config and data dir (never
 * the system broker's), no anonymous clients, and the dynamic security plugin with one admin
 * client created by mosquitto_ctrl (Debian's mosquitto and mosquitto-clients).
 */

export const MOSQUITTO = '/usr/sbin/mosquitto';
export const MOSQUITTO_CTRL = '/usr/bin/mosquitto_ctrl';
export const DYNSEC_PLUGIN = '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so';

/** Why a dynsec Mosquitto cannot start here, or null when it can. */
export function mosquittoMissing(): string | null {
  const missing = [MOSQUITTO, MOSQUITTO_CTRL, DYNSEC_PLUGIN].filter((path) => !existsSync(path));
  return missing.length === 0 ? null : `missing ${missing.join(', ')} (Debian packages mosquitto, mosquitto-clients)`;
}

export type DynsecMosquitto = {
  readonly url: string;
  readonly port: number;
  readonly admin: { readonly username: string; readonly password: string };
  stop(): Promise<void>;
};

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitForPort(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited with ${child.exitCode}: ${log()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
      socket.connect(port, '127.0.0.1');
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port}: ${log()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export type DynsecMosquittoOptions = {
  /**
   * More mosquitto.conf lines. bench:scale sets `max_queued_messages 0`: by default Mosquitto
   * queues at most 1000 messages per client beyond those in flight and drops the rest, so a
   * subscriber that lags (an ingest replica under a flood) would lose messages.
   */
  readonly extraConfig?: readonly string[];
};

export async function startDynsecMosquitto(options: DynsecMosquittoOptions = {}): Promise<DynsecMosquitto> {
  const missing = mosquittoMissing();
  if (missing) throw new Error(missing);
  const dir = mkdtempSync(join(tmpdir(), 'edgeloop-mosquitto-'));
  const admin = { username: 'edgeloop-admin', password: randomBytes(18).toString('base64url') };
  const dynsecFile = join(dir, 'dynamic-security.json');
  // mosquitto_ctrl reads the admin password twice from stdin.
  execFileSync(MOSQUITTO_CTRL, ['dynsec', 'init', dynsecFile, admin.username], {
    input: `${admin.password}\n${admin.password}\n`,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  if (!existsSync(dynsecFile)) throw new Error('mosquitto_ctrl dynsec init wrote no file');
  const port = await freePort();
  const config = join(dir, 'mosquitto.conf');
  writeFileSync(
    config,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous false',
      // As root, Mosquitto would switch to the mosquitto user, who cannot read this directory.
      'user root',
      'persistence false',
      `plugin ${DYNSEC_PLUGIN}`,
      `plugin_opt_config_file ${dynsecFile}`,
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      ...(options.extraConfig ?? []),
      '',
    ].join('\n'),
  );
  const child = spawn(MOSQUITTO, ['-c', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString('utf8')).slice(-4000);
  });
  try {
    await waitForPort(port, child, () => log);
  } catch (error) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    admin,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
