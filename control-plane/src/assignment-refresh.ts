import type { Desired, ModelAssignment } from '@edgeloop/protocol';
import type { DeviceRepository } from './db/repositories.ts';
import type { MetricsRegistry } from './metrics.ts';
import { createPeriodicTask } from './sweeper.ts';
import type { Timers } from './time.ts';

/*
 * Keeps the model assignments in desired state from lapsing. Every assignment carries an expiresAt
 * (stamped now + TTL by the rollout executors); an agent ignores one whose expiresAt is past its
 * clock, so a stale retained message or a replay cannot start an update. A healthy control plane
 * must therefore renew every assignment well before it lapses: this task looks at every stored
 * desired state and, where the assignment has a third of its TTL left or less (or none at all: a
 * desired state stored before expiresAt existed), writes the same assignment with a new expiresAt
 * as a new desired version and publishes it (retained), so an online device gets it now and a
 * reconnecting one gets it from the broker.
 *
 * The renewal is conditional, inside the desired state's own transaction: it applies only while
 * the stored assignment is still the one read (same rollout, bytes, mode and signature) and still
 * due, so it never undoes an assignment a rollout wrote in between, and two replicas running it
 * at once renew a device once. The agent treats a renewed assignment of the update it runs or has
 * finished as the same assignment (same rollout, sha256 and signature): nothing restarts.
 */

/** An assignment is renewed once no more than this share of its TTL is left. */
export const REFRESH_SHARE = 1 / 3;

/** Whether the assignment needs a new expiresAt at `now`: a third of the TTL left or less, or none. */
export function refreshDue(assignment: ModelAssignment | null | undefined, now: number, ttlMs: number): boolean {
  if (!assignment) return false;
  if (assignment.expiresAt === undefined) return true;
  return assignment.expiresAt - now <= ttlMs * REFRESH_SHARE;
}

/** Same rollout, bytes, mode and signed release: a renewal of it is not a new assignment. */
export function sameAssignment(a: ModelAssignment | null | undefined, b: ModelAssignment | null | undefined): boolean {
  if (!a || !b) return false;
  return (
    a.rolloutId === b.rolloutId &&
    a.model.sha256 === b.model.sha256 &&
    a.model.id === b.model.id &&
    a.mode === b.mode &&
    a.signed.signature === b.signed.signature
  );
}

/** How often the task looks: a twelfth of the TTL, between one second and one hour. */
export function refreshIntervalMs(ttlMs: number): number {
  return Math.min(3_600_000, Math.max(1_000, Math.floor(ttlMs / 12)));
}

export type AssignmentRefreshDeps = {
  readonly devices: Pick<DeviceRepository, 'listDesired' | 'updateDesired'>;
  /** Publishes a device's desired state, retained (the broker's publishDesired). */
  readonly publishDesired: (deviceId: string, desired: Desired) => Promise<void>;
  readonly clock: { now(): number };
  readonly timers: Timers;
  readonly metrics: MetricsRegistry;
  readonly ttlMs: number;
  /** Timer runs happen only while this is true (the rollout leader); runNow always runs. */
  readonly isLeader?: () => boolean;
  readonly intervalMs?: number;
  readonly onError?: (error: unknown) => void;
};

export type AssignmentRefresher = {
  start(): void;
  stop(): void;
  /** One pass now: how many assignments were renewed. */
  runNow(): Promise<number>;
};

/** Thrown inside the transaction to leave a desired state as it is (nothing written). */
class Unchanged extends Error {}

export function createAssignmentRefresher(deps: AssignmentRefreshDeps): AssignmentRefresher {
  const { ttlMs } = deps;
  const renewed = deps.metrics.counter(
    'edgeloop_assignment_refreshes_total',
    'Model assignments in desired state given a new expiresAt before they lapsed',
  );
  const pass = async (): Promise<number> => {
    const now = deps.clock.now();
    let count = 0;
    for (const { id, desired } of await deps.devices.listDesired()) {
      if (!refreshDue(desired.model, now, ttlMs)) continue;
      const read = desired.model;
      let next: Desired | null;
      try {
        next = await deps.devices.updateDesired(id, (current) => {
          const model = current?.model;
          if (!current || !model || !sameAssignment(model, read) || !refreshDue(model, now, ttlMs)) {
            throw new Unchanged();
          }
          return {
            ...current,
            version: current.version + 1,
            issuedAt: now,
            model: { ...model, expiresAt: now + ttlMs },
          };
        });
      } catch (error) {
        if (error instanceof Unchanged) continue;
        throw error;
      }
      if (!next) continue;
      await deps.publishDesired(id, next);
      renewed.inc();
      count++;
    }
    return count;
  };
  let running: Promise<number> | null = null;
  const runNow = (): Promise<number> => {
    running ??= pass().finally(() => {
      running = null;
    });
    return running;
  };
  const task = createPeriodicTask({
    timers: deps.timers,
    intervalMs: deps.intervalMs ?? refreshIntervalMs(ttlMs),
    onError: deps.onError,
    run: () => (deps.isLeader && !deps.isLeader() ? Promise.resolve(0) : runNow()),
  });
  return { start: task.start, stop: task.stop, runNow };
}
