/*
 * Group commit: requests that finish at about the same time share one commit. Each `submit` joins
 * the next batch and resolves (or rejects) on its own once that batch is committed; a batch starts
 * on the next turn of the event loop after its first item, or as soon as the batch before it is
 * done, so while one commit is under way the next one fills up. `commit` settles every item of a
 * batch by itself (one bad item does not fail the others); if it throws, every item of that batch
 * gets the error.
 */

export type Settled<R> = { readonly ok: true; readonly value: R } | { readonly ok: false; readonly error: unknown };

export type GroupCommit<T, R> = {
  /** Joins the next batch; resolves with this item's result once its batch is committed. */
  submit(item: T): Promise<R>;
  /** Resolves once every item submitted so far is settled. */
  idle(): Promise<void>;
};

export type GroupCommitDeps<T, R> = {
  /** Commits a batch, in submission order; returns one outcome per item, in the same order. */
  commit(items: readonly T[]): Promise<readonly Settled<R>[]>;
  /** Largest batch (default 256); more items wait for the next one. */
  readonly maxBatch?: number;
  /** Called with the size of each batch committed (for a metric). */
  readonly onBatch?: (size: number) => void;
};

type Waiting<T, R> = { readonly item: T; resolve(value: R): void; reject(error: unknown): void };

export function createGroupCommit<T, R>(deps: GroupCommitDeps<T, R>): GroupCommit<T, R> {
  const maxBatch = deps.maxBatch ?? 256;
  const queue: Waiting<T, R>[] = [];
  let running: Promise<void> | null = null;

  const drain = async () => {
    // One turn of the loop first, so the requests finishing in this one join the batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (queue.length > 0) {
      const batch = queue.splice(0, maxBatch);
      let outcomes: readonly Settled<R>[];
      try {
        outcomes = await deps.commit(batch.map((w) => w.item));
        if (outcomes.length !== batch.length) {
          throw new Error(`group commit: ${outcomes.length} outcomes for ${batch.length} items`);
        }
      } catch (error) {
        for (const waiting of batch) waiting.reject(error);
        continue;
      }
      deps.onBatch?.(batch.length);
      batch.forEach((waiting, i) => {
        const outcome = outcomes[i]!;
        if (outcome.ok) waiting.resolve(outcome.value);
        else waiting.reject(outcome.error);
      });
    }
  };

  const start = () => {
    running ??= drain().finally(() => {
      running = null;
      // An item that arrived after the loop's last check starts the next run.
      if (queue.length > 0) start();
    });
  };

  return {
    submit(item) {
      return new Promise<R>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        start();
      });
    },
    async idle() {
      while (running) await running;
    },
  };
}
