/*
 * Timers of the control plane: the health sweeper (every second: silent devices go offline,
 * telemetry-stale is judged) and retention pruning (old messages and dead letters, in chunks).
 * Timers come through deps so tests drive them.
 */

import type { Timers } from './time.ts';

// Temporary: control-plane.ts, readiness.ts and others still import Timers from here (another
// change edits them); they move to time.ts when it lands, and this line goes.
export { systemTimers, type Timers } from './time.ts';

/** Queues an ingest sweep every `intervalMs`. */
export function createHealthSweeper(deps: {
  readonly ingest: { sweep(): void };
  readonly timers: Timers;
  readonly intervalMs: number;
}) {
  let handle: unknown = null;
  return {
    start() {
      handle ??= deps.timers.setInterval(() => deps.ingest.sweep(), deps.intervalMs);
    },
    stop() {
      if (handle !== null) deps.timers.clearInterval(handle);
      handle = null;
    },
  };
}

/**
 * Deletes through `prune(limit)` a chunk at a time, with a setImmediate between chunks so that a
 * large backlog never blocks the broker, until a chunk comes back short; resolves with the total.
 */
export async function drainInChunks(prune: (limit: number) => Promise<number>, chunk: number): Promise<number> {
  let total = 0;
  for (;;) {
    const deleted = await prune(chunk);
    total += deleted;
    if (deleted < chunk) return total;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * Runs `run` every `intervalMs` once started, and whenever `runNow` is called, never two at once:
 * a call while a run is under way gets that run. A timer's run that fails goes to `onError`.
 */
export function createPeriodicTask<T>(deps: {
  readonly timers: Timers;
  readonly intervalMs: number;
  readonly run: () => Promise<T>;
  readonly onError?: ((error: unknown) => void) | undefined;
}): { start(): void; stop(): void; runNow(): Promise<T> } {
  let handle: unknown = null;
  let running: Promise<T> | null = null;
  const runNow = () => {
    running ??= deps.run().finally(() => {
      running = null;
    });
    return running;
  };
  return {
    start() {
      handle ??= deps.timers.setInterval(() => {
        runNow().catch((error: unknown) => deps.onError?.(error));
      }, deps.intervalMs);
    },
    stop() {
      if (handle !== null) deps.timers.clearInterval(handle);
      handle = null;
    },
    runNow,
  };
}

export type PruneCounts = { messages: number; deadLetters: number; samples?: number };
export type Pruner = { start(): void; stop(): void; pruneNow(): Promise<PruneCounts> };

/**
 * Deletes messages and dead letters older than their retention, a chunk per step with a
 * setImmediate between chunks so pruning a large backlog never blocks the broker.
 */
export function createRetentionPruner(deps: {
  readonly messages: { pruneOlderThan(cutoff: number, limit: number): Promise<number> };
  readonly deadLetters: { pruneOlderThan(cutoff: number, limit: number): Promise<number> };
  readonly clock: { now(): number };
  readonly timers: Timers;
  readonly retention: {
    readonly messagesDays: number;
    readonly deadLettersDays: number;
    readonly pruneIntervalS: number;
  };
  /** Sample retention (age, quota, stale uploads), run after the messages. */
  readonly samples?: { prune(): Promise<{ readonly aged: number; readonly overQuota: number }> };
  readonly chunk?: number;
  readonly onError?: (error: unknown) => void;
}): Pruner {
  const chunk = deps.chunk ?? 2_000;
  const day = 86_400_000;
  const task = createPeriodicTask({
    timers: deps.timers,
    intervalMs: deps.retention.pruneIntervalS * 1000,
    onError: deps.onError,
    async run(): Promise<PruneCounts> {
      const now = deps.clock.now();
      const messages = await drainInChunks(
        (limit) => deps.messages.pruneOlderThan(now - deps.retention.messagesDays * day, limit),
        chunk,
      );
      const deadLetters = await drainInChunks(
        (limit) => deps.deadLetters.pruneOlderThan(now - deps.retention.deadLettersDays * day, limit),
        chunk,
      );
      if (!deps.samples) return { messages, deadLetters };
      const samples = await deps.samples.prune();
      return { messages, deadLetters, samples: samples.aged + samples.overQuota };
    },
  });
  return { start: task.start, stop: task.stop, pruneNow: task.runNow };
}
