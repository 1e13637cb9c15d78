import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

/*
 * Control-plane replicas as real `edgeloop serve` processes behind one external MQTT broker and
 * one PostgreSQL database: what the scale-out test (control-plane/test/scale-out.test.ts) and
 * `npm run bench:scale` both start. Each replica is its own process so that a SIGKILL is a real
 * one (no DISCONNECT, unacknowledged messages left in its broker session) and a SIGTERM runs the
 * real shutdown path.
 */

const BIN = fileURLToPath(new URL('../control-plane/bin/edgeloop.js', import.meta.url));

export type ReplicaSetup = {
  readonly brokerUrl: string;
  readonly brokerUsername: string;
  readonly brokerPassword: string;
  readonly databaseUrl: string;
  /** Shared by every replica: the secret pepper lives there, so all of them accept every device. */
  readonly dataDir: string;
  readonly adminToken: string;
  /** Extra environment (EDGELOOP_INGEST_BATCH_SIZE, ...). */
  readonly env?: Readonly<Record<string, string>>;
};

export type Replica = {
  readonly replicaId: string;
  readonly http: string;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or the signal's name) once the process is gone. */
  readonly exited: Promise<number | string>;
  /** SIGTERM: the clean shutdown (acks in flight settle, the broker session is kept). */
  stop(): Promise<number | string>;
  /** SIGKILL: nothing settles; the broker keeps the session and its unacknowledged messages. */
  kill(): Promise<number | string>;
  /** The last few KiB of its stderr, for failure messages. */
  log(): string;
};

/** Starts one replica and resolves once it printed its HTTP URL (it is then subscribed and ready). */
export function startReplica(setup: ReplicaSetup, replicaId: string, timeoutMs = 30_000): Promise<Replica> {
  const child = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--http-port',
      '0',
      '--broker-url',
      setup.brokerUrl,
      '--broker-username',
      setup.brokerUsername,
      '--database-url',
      setup.databaseUrl,
      '--replica-id',
      replicaId,
      '--data-dir',
      setup.dataDir,
    ],
    {
      env: {
        ...process.env,
        EDGELOOP_HOST: '127.0.0.1',
        EDGELOOP_LOG_LEVEL: 'warn',
        EDGELOOP_ADMIN_TOKEN: setup.adminToken,
        EDGELOOP_BROKER_PASSWORD: setup.brokerPassword,
        ...setup.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-6000);
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  const signal = (name: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(name);
    return exited;
  };
  return new Promise<Replica>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`replica ${replicaId} did not start within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      const http = /HTTP\s+(http:\/\/\S+)/.exec(stdout)?.[1];
      if (!http) return;
      clearTimeout(timer);
      resolve({
        replicaId,
        http,
        child,
        exited,
        stop: () => signal('SIGTERM'),
        kill: () => signal('SIGKILL'),
        log: () => stderr,
      });
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`replica ${replicaId} exited with ${code} before it was ready: ${stderr}`));
    });
  });
}

/** Rows in `messages` of one channel (or all), read straight from PostgreSQL. */
export async function countStored(db: pg.Client, channel?: string): Promise<number> {
  const result = channel
    ? await db.query<{ n: string }>('SELECT count(*) AS n FROM messages WHERE channel = $1', [channel])
    : await db.query<{ n: string }>('SELECT count(*) AS n FROM messages');
  return Number(result.rows[0]?.n ?? 0);
}

/** Polls `read` every `everyMs` until it returns `target` or more; the last value read either way. */
export async function waitForCount(
  read: () => Promise<number>,
  target: number,
  timeoutMs: number,
  everyMs = 100,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (value >= target || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** The sum of one counter over its labels, from a replica's /metrics (Prometheus text). */
export async function metricTotal(replica: Replica, adminToken: string, name: string): Promise<number> {
  const response = await fetch(`${replica.http}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } });
  if (!response.ok) throw new Error(`GET ${replica.http}/metrics: ${response.status}`);
  let total = 0;
  for (const line of (await response.text()).split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

export { pg };
