import { type ChildProcess, fork } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { type DurableWrite, writeDurably } from './durable-write.ts';
import { type EncodedSample, type EncodeInput, type EncodeOptions, redactAndEncode } from './encode.ts';
import type { EncoderReply, EncoderRequest } from './encoder-child.ts';

/*
 * Where the capture worker's redact + JPEG + sha256 runs.
 *
 *   inline   in this process (sharp on the libuv pool): the simulator and tests, many captures
 *            in one process, no extra process each.
 *   child    one long-lived child process at a low CPU priority (nice 19 by default, every one of
 *            its threads), for the agent: on a saturated CPU the scheduler gives the encoder what
 *            inference leaves, so capture lags but inference does not. The capture's bounded
 *            queue turns a lagging encoder into counted 'queue-full' drops, never a stall.
 *
 * The frame travels to the child by IPC (advanced serialization: the bytes of the view only);
 * the JPEG comes back. The spool's and the budget's file writes (write(): temp, fsync, rename,
 * directory fsync) run in the child too, at its priority; their index and counters stay in this
 * process. A kill -9 of the child fails what it was doing: a frame being encoded counts as
 * 'encode-failed', a write in flight rejects and leaves at most a temp file (the spool removes
 * those when it opens), and nothing already spooled is touched. A child
 * that dies is started again on the next frame, at most once per `respawnDelayMs`; frames in
 * between fail at once.
 */

export interface SampleEncoder {
  encode(input: EncodeInput, options: EncodeOptions): Promise<EncodedSample>;
  /** Puts a file on disk durably (durable-write.ts), where the encoder runs. */
  readonly write: DurableWrite;
  /** Resolves once the encoder takes work without a start-up delay (a child encoder: started). */
  ready(): Promise<void>;
  /** Ends the child (pending encodes fail); a later encode starts a new one. */
  stop(): Promise<void>;
  stats(): EncoderStats;
}

export type EncoderStats = {
  readonly kind: 'inline' | 'child';
  readonly encoded: number;
  readonly failed: number;
  /** Durable file writes done (child encoder). */
  readonly writes?: number;
  /** Children started (child encoder). */
  readonly spawned?: number;
  /** Children that exited without stop() (killed, crashed). */
  readonly crashes?: number;
  /** The running child's pid, or null. */
  readonly pid?: number | null;
  readonly priority?: number;
};

export function createInlineEncoder(): SampleEncoder {
  let encoded = 0;
  let failed = 0;
  return {
    async encode(input, options) {
      try {
        const out = await redactAndEncode(input, options);
        encoded++;
        return out;
      } catch (error) {
        failed++;
        throw error;
      }
    },
    write: writeDurably,
    ready: () => Promise.resolve(),
    stop: () => Promise.resolve(),
    stats: () => ({ kind: 'inline', encoded, failed }),
  };
}

export type ChildEncoderDeps = {
  /** Nice value of the child's threads, 0 (as this process) to 19 (lowest; default). */
  readonly priority?: number;
  /** Least time between two starts of the child after it died (default 1000 ms). */
  readonly respawnDelayMs?: number;
  /**
   * A request unanswered this long (default 30 s: a nice-19 child on a saturated CPU is slow, not
   * this slow) fails, and the child is killed, so a hung child never holds the capture's queue.
   */
  readonly requestTimeoutMs?: number;
  readonly clock?: { now(): number };
  /** Starts the child (tests); default: fork of encoder-child.ts through tsx. */
  readonly fork?: (priority: number) => ChildProcess;
};

const here = path.dirname(new URL(import.meta.url).pathname);
const CHILD = path.join(here, 'encoder-child.ts');

function forkChild(priority: number): ChildProcess {
  // The agent runs its TypeScript through tsx; the child does the same, with tsx resolved from
  // this package (not from the working directory).
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return fork(CHILD, [String(priority)], {
    execArgv: ['--import', tsx],
    serialization: 'advanced',
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
}

type Pending = { resolve: (reply: EncoderReply & { ok: true }) => void; reject: (error: Error) => void };

export function createChildEncoder(deps: ChildEncoderDeps = {}): SampleEncoder {
  const priority = Math.min(19, Math.max(0, Math.trunc(deps.priority ?? 19)));
  const respawnDelayMs = deps.respawnDelayMs ?? 1000;
  const requestTimeoutMs = deps.requestTimeoutMs ?? 30_000;
  const clock = deps.clock ?? Date;
  const start = deps.fork ?? forkChild;
  let child: ChildProcess | null = null;
  let started: Promise<void> | null = null;
  let lastStart = Number.NEGATIVE_INFINITY;
  let stopping = false;
  let nextId = 1;
  const pending = new Map<number, Pending>();
  let encoded = 0;
  let failed = 0;
  let spawned = 0;
  let crashes = 0;
  let writes = 0;

  function failAll(error: Error): void {
    const waiting = [...pending.values()];
    pending.clear();
    for (const p of waiting) p.reject(error);
  }

  function spawnChild(): Promise<void> {
    lastStart = clock.now();
    spawned++;
    const proc = start(priority);
    child = proc;
    const up = new Promise<void>((resolve, reject) => {
      proc.on('message', (message: EncoderReply | { ready: true }) => {
        if ('ready' in message) {
          resolve();
          return;
        }
        const p = pending.get(message.id);
        if (!p) return;
        pending.delete(message.id);
        if (message.ok) {
          p.resolve(message);
        } else {
          p.reject(new Error(message.error));
        }
      });
      proc.once('error', (error) => {
        // Not started (or not killable): the next request tries a new child after the delay.
        reject(error);
        if (child === proc) {
          child = null;
          started = null;
        }
        failAll(error);
      });
      proc.once('exit', (code, signal) => {
        const why = `sample encoder child exited (${signal ?? `code ${code}`})`;
        reject(new Error(why));
        if (child === proc) {
          child = null;
          started = null;
        }
        if (!stopping) crashes++;
        failAll(new Error(why));
      });
    });
    // A start that fails is reported to the encode waiting on it; nothing else listens.
    up.catch(() => {});
    return up;
  }

  function ensureChild(): Promise<void> {
    if (started) return started;
    if (clock.now() - lastStart < respawnDelayMs) {
      return Promise.reject(new Error('sample encoder child restarting'));
    }
    started = spawnChild();
    return started;
  }

  /** One request to the child, started when needed; rejects when it fails or the child dies. */
  async function request(message: EncoderRequest): Promise<EncoderReply & { ok: true }> {
    await ensureChild();
    const proc = child;
    if (!proc?.connected) throw new Error('sample encoder child not connected');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!pending.delete(message.id)) return;
        reject(new Error(`sample encoder child did not answer in ${requestTimeoutMs} ms; killed`));
        proc.kill('SIGKILL');
      }, requestTimeoutMs);
      timer.unref();
      pending.set(message.id, {
        resolve(reply) {
          clearTimeout(timer);
          resolve(reply);
        },
        reject(error) {
          clearTimeout(timer);
          reject(error);
        },
      });
      proc.send(message, (error) => {
        if (!error || !pending.delete(message.id)) return;
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  return {
    async encode(input, options) {
      try {
        const reply = await request({
          op: 'encode',
          id: nextId++,
          rgb: input.rgb,
          width: input.width,
          height: input.height,
          detections: input.detections,
          options: { jpegQuality: options.jpegQuality, maxWidth: options.maxWidth, redaction: options.redaction },
        });
        if (reply.op !== 'encode') throw new Error('sample encoder child answered an encode with a write');
        encoded++;
        const bytes = Buffer.from(reply.bytes.buffer, reply.bytes.byteOffset, reply.bytes.byteLength);
        return { ...reply.sample, bytes };
      } catch (error) {
        failed++;
        throw error;
      }
    },
    async write(temp, file, data, fsync) {
      await request({ op: 'write', id: nextId++, temp, file, data, fsync });
      writes++;
    },
    ready() {
      return ensureChild();
    },
    async stop() {
      const proc = child;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      stopping = true;
      try {
        const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
        proc.kill('SIGTERM');
        await exited;
      } finally {
        stopping = false;
        lastStart = Number.NEGATIVE_INFINITY;
      }
    },
    stats: () => ({
      kind: 'child',
      encoded,
      failed,
      writes,
      spawned,
      crashes,
      pid: child?.pid ?? null,
      priority,
    }),
  };
}
