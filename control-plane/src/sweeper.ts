/*
 * Timers of the control plane: the health sweeper (every second: silent devices go offline,
 * telemetry-stale is judged) and retention pruning (old messages and dead letters, in chunks).
 * Timers come through deps so tests drive them.
 */

export type Timers = {
  setInterval(callback: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
};

export const systemTimers: Timers = {
  setInterval: (callback, ms) => {
    const handle = setInterval(callback, ms);
    handle.unref();
    return handle;
  },
  clearInterval: (handle) => clearInterval(handle as ReturnType<typeof setInterval>),
};

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
  let handle: unknown = null;
  let running: Promise<PruneCounts> | null = null;
  const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

  const drain = async (prune: (cutoff: number, limit: number) => Promise<number>, cutoff: number) => {
    let total = 0;
    for (;;) {
      const deleted = await prune(cutoff, chunk);
      total += deleted;
      if (deleted < chunk) return total;
      await yieldToLoop();
    }
  };

  const pruneNow = () => {
    running ??= (async () => {
      const now = deps.clock.now();
      const messages = await drain(
        (cutoff, limit) => deps.messages.pruneOlderThan(cutoff, limit),
        now - deps.retention.messagesDays * day,
      );
      const deadLetters = await drain(
        (cutoff, limit) => deps.deadLetters.pruneOlderThan(cutoff, limit),
        now - deps.retention.deadLettersDays * day,
      );
      if (!deps.samples) return { messages, deadLetters };
      const samples = await deps.samples.prune();
      return { messages, deadLetters, samples: samples.aged + samples.overQuota };
    })().finally(() => {
      running = null;
    });
    return running;
  };

  return {
    start() {
      handle ??= deps.timers.setInterval(() => {
        pruneNow().catch((error: unknown) => deps.onError?.(error));
      }, deps.retention.pruneIntervalS * 1000);
    },
    stop() {
      if (handle !== null) deps.timers.clearInterval(handle);
      handle = null;
    },
    pruneNow,
  };
}
