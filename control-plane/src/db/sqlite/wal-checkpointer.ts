import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';

/*
 * WAL checkpoints on a worker thread, so that the ingest writer's commits never carry one.
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL past
 * `wal_autocheckpoint` pages (1,000 by default): it copies the WAL into the database file and
 * fsyncs both, on the committing thread. In the 2x overload of bench:ingest such commits took
 * 125-150 ms of the main thread each (sqliteTransaction's self time in the profile), while an
 * ordinary batch commit takes 2-10 ms. With synchronous=NORMAL in WAL mode the commit itself does
 * not fsync; the checkpoint does.
 *
 * So, once a connection has written enough to need checkpoints, a worker thread opens its own
 * connection to the same file and runs `PRAGMA wal_checkpoint(PASSIVE)` every `intervalMs`.
 * PASSIVE never waits for and never blocks the writer (SQLite's WAL design). The main
 * connection keeps an automatic checkpoint as a backstop at `backstopPages` (4x the default), so
 * the WAL stays bounded should the worker fall behind or fail. The worker is unref'd and stopped
 * with the store.
 */

export type WalCheckpointer = {
  /** Starts the worker once (later calls do nothing). A ':memory:' database has no WAL: nothing starts. */
  start(): void;
  stop(): Promise<void>;
  readonly running: boolean;
};

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = 0');
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (error) {
    parentPort.postMessage({ error: String(error && error.message || error) });
  }
}, workerData.intervalMs);
parentPort.on('message', (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

export function createWalCheckpointer(deps: {
  readonly client: Database.Database;
  readonly file: string;
  readonly intervalMs?: number;
  readonly backstopPages?: number;
  readonly onError?: (message: string) => void;
}): WalCheckpointer {
  let worker: Worker | null = null;
  let exited: Promise<void> | null = null;
  return {
    get running() {
      return worker !== null;
    },
    start() {
      if (worker || deps.file === ':memory:' || !deps.client.open) return;
      const module = createRequire(import.meta.url).resolve('better-sqlite3');
      worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { module, file: deps.file, intervalMs: deps.intervalMs ?? 250 },
      });
      worker.unref();
      worker.on('message', (message: { error?: string }) => {
        if (message.error) deps.onError?.(message.error);
      });
      worker.on('error', (error) => {
        deps.onError?.(error.message);
        // The worker is gone: the main connection checkpoints at SQLite's default again.
        if (deps.client.open) deps.client.pragma('wal_autocheckpoint = 1000');
      });
      const running = worker;
      exited = new Promise((resolve) => running.once('exit', () => resolve()));
      deps.client.pragma(`wal_autocheckpoint = ${deps.backstopPages ?? 4000}`);
    },
    async stop() {
      if (!worker) return;
      // Held again until it exits: at shutdown nothing else may keep the event loop alive, and an
      // unref'd worker awaited by nothing alive ends the process (exit 13, unsettled await).
      worker.ref();
      worker.postMessage('stop');
      const stopped = exited;
      worker = null;
      exited = null;
      await stopped;
    },
  };
}
