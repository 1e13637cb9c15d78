import type { Logger } from 'pino';
import type { AuditRepository, NewAuditEntry } from '../db/audit.ts';
import type { Counter } from '../metrics.ts';
import { createPeriodicTask, drainInChunks } from '../sweeper.ts';
import type { Timers } from '../time.ts';

/*
 * The audit log's writer. Entries are appended after the change they describe succeeded (the HTTP
 * wrapper in http/app.ts, the rollout engine's executors). Concurrent entries share one append
 * (group commit): record() queues its entry and resolves once the batch holding it is written, so
 * a burst of 100 device uploads costs one transaction, not 100. A failed append never fails the
 * change that already happened: it is logged and counted (edgeloop_audit_write_failures_total),
 * so an alert can say the log has a gap.
 */

/** The actor of the rollout engine's own changes. */
export const SYSTEM_ROLLOUTS = 'system:rollouts';

export type AuditInput = Omit<NewAuditEntry, 'at'> & { readonly at?: number };

export type AuditLog = {
  record(entry: AuditInput): Promise<void>;
};

/** The most entries one append writes; a larger burst is written in several. */
const MAX_BATCH = 500;

export function createAuditLog(deps: {
  readonly repo: Pick<AuditRepository, 'append'>;
  readonly clock: { now(): number };
  readonly logger: Logger;
  readonly written: Counter;
  readonly failures: Counter;
}): AuditLog {
  type Pending = { readonly entry: NewAuditEntry; readonly actorRole: string; readonly done: () => void };
  let queue: Pending[] = [];
  let flushing = false;

  const flush = async (): Promise<void> => {
    flushing = true;
    while (queue.length > 0) {
      const batch = queue.slice(0, MAX_BATCH);
      queue = queue.slice(batch.length);
      try {
        await deps.repo.append(batch.map((item) => item.entry));
        for (const item of batch) deps.written.inc({ actor: item.actorRole });
      } catch (error) {
        deps.failures.inc({}, batch.length);
        deps.logger.error(
          { err: error, entries: batch.length, actions: [...new Set(batch.map((item) => item.entry.action))] },
          'audit entries not written',
        );
      }
      for (const item of batch) item.done();
    }
    flushing = false;
  };

  return {
    record(entry) {
      return new Promise<void>((resolve) => {
        queue.push({
          entry: { ...entry, at: entry.at ?? deps.clock.now() },
          actorRole: entry.actorRole,
          done: resolve,
        });
        // Entries queued while a batch is written go in the next one; the first waits one turn
        // of the event loop so that the requests finishing together share the append.
        if (!flushing) {
          flushing = true;
          setImmediate(() => void flush());
        }
      });
    },
  };
}

/** An audit log that keeps nothing (routes and engines built without one). */
export const noAudit: AuditLog = { record: async () => {} };

/**
 * Retention of the governance tables: audit entries older than `auditDays` (0 keeps them for good)
 * and expired Idempotency-Key records, pruned in chunks every `intervalS`.
 */
export function createGovernancePruner(deps: {
  readonly audit: Pick<AuditRepository, 'pruneOlderThan'>;
  readonly idempotency: { pruneExpired(now: number, limit: number): Promise<number> };
  readonly clock: { now(): number };
  readonly timers: Timers;
  readonly auditDays: number;
  readonly intervalS: number;
  readonly chunk?: number;
  readonly onError?: (error: unknown) => void;
}): { start(): void; stop(): void; pruneNow(): Promise<{ audit: number; idempotency: number }> } {
  const chunk = deps.chunk ?? 2_000;
  const task = createPeriodicTask({
    timers: deps.timers,
    intervalMs: deps.intervalS * 1000,
    onError: deps.onError,
    async run() {
      const now = deps.clock.now();
      const audit =
        deps.auditDays > 0
          ? await drainInChunks((limit) => deps.audit.pruneOlderThan(now - deps.auditDays * 86_400_000, limit), chunk)
          : 0;
      const idempotency = await drainInChunks((limit) => deps.idempotency.pruneExpired(now, limit), chunk);
      return { audit, idempotency };
    },
  });
  return { start: task.start, stop: task.stop, pruneNow: task.runNow };
}
