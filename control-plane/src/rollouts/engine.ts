import { EvaluationBaseline, EvaluationMetrics } from '@edgeloop/protocol';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit.ts';
import type {
  AssignmentRecord,
  DeviceRepository,
  EvaluationRecord,
  EvaluationRepository,
  LeaderLock,
  MessageRepository,
  ModelRecord,
  ModelRepository,
  RolloutRecord,
  RolloutRepository,
  TelemetrySample,
} from '../db/repositories.ts';
import type { EventBus } from '../events.ts';
import type { DesiredChange } from '../fleet.ts';
import type { MetricsRegistry } from '../metrics.ts';
import type { Timers } from '../time.ts';
import { createExecutors, type Executors, executeSteps, StaleRolloutError } from './executors.ts';
import { buildDeviceFacts, type DesiredModelFact, desiredModelFact, repairSteps, toRolloutState } from './facts.ts';
import type { DeviceWindow, ValidationEvidence } from './gates.ts';
import { dueWindow, plan, type Step } from './plan.ts';
import { buildDeviceWindows } from './windows.ts';

/*
 * The rollout reconcile loop. Every tick, for each rollout with work left (pending, running, paused, or
 * rolled back with devices not yet home):
 *
 *   read   the rollout row, its assignments, the target devices' reported and desired state, and
 *          (only when a gate evaluation is due) the telemetry of the evaluation window
 *   plan   the pure planner (plan.ts) plus desired-state repairs (facts.ts)
 *   apply  the steps through the executors (executors.ts)
 *
 * All state lives in the database, so a restarted control plane simply plans again. Only the
 * leader ticks: on PostgreSQL a session advisory lock decides among replicas; SQLite's single
 * process always leads.
 *
 * Metric windows are read from stored telemetry per evaluation (messages received in the window,
 * in slices of received time; SQLite extracts the gate fields in SQL), not kept as an in-memory
 * aggregate: with several replicas splitting the ingest (shared subscriptions), the leader has
 * not seen every message, but the database has; and a restarted leader needs no warm-up.
 */

/** A stored evaluation as the validation gate reads it; a row that no longer parses counts as none. */
function toValidationEvidence(row: EvaluationRecord): ValidationEvidence | null {
  const metrics = EvaluationMetrics.safeParse(row.metrics);
  const baseline = EvaluationBaseline.nullable().safeParse(row.baseline);
  if (!metrics.success || !baseline.success) return null;
  return { id: row.id, createdAt: row.createdAt, metrics: metrics.data, baseline: baseline.data };
}

/** The advisory-lock key of the rollout leader (an arbitrary constant: "edge" in ASCII). */
export const ROLLOUT_LEADER_LOCK_KEY = 0x6564_6765;

export type RolloutEngineDeps = {
  readonly store: {
    readonly rollouts: RolloutRepository;
    readonly models: Pick<ModelRepository, 'get'>;
    readonly devices: Pick<DeviceRepository, 'snapshots'>;
    readonly messages: Pick<MessageRepository, 'telemetrySamples'>;
    /** Evaluation reports, for the validation gate of pending rollouts (they wait without it). */
    readonly evaluations?: Pick<EvaluationRepository, 'list'>;
  };
  readonly fleet: { setDesired(id: string, change: DesiredChange): Promise<unknown> };
  readonly bus: EventBus;
  readonly clock: { now(): number };
  readonly timers: Timers;
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
  /** The audit log: the engine's own changes are entered as `system:rollouts`. */
  readonly audit?: AuditLog;
  readonly lock: LeaderLock;
  readonly tickMs: number;
  readonly leaderRetryMs: number;
  /**
   * The evaluation window is read in slices of this much received time, with a turn of the event
   * loop between slices, so a big window never blocks ingest for long (SQLite is synchronous).
   */
  readonly windowSliceMs?: number;
  /** How long each model assignment written stays valid (its expiresAt); default 7 days. */
  readonly assignmentTtlMs?: number;
};

export type TickReport = {
  readonly leader: boolean;
  /** Rollouts reconciled in this tick. */
  readonly rollouts: number;
  readonly steps: number;
  readonly evaluations: number;
  readonly errors: number;
};

export type RolloutEngine = {
  start(): void;
  /** Stops ticking, waits for a tick in progress, and gives up leadership. */
  stop(): Promise<void>;
  /** One reconcile pass now (tests and benchmarks drive the loop with it). */
  tick(): Promise<TickReport>;
  readonly isLeader: boolean;
};

export function createRolloutEngine(deps: RolloutEngineDeps): RolloutEngine {
  const { store, clock, logger, lock } = deps;
  const executors: Executors = createExecutors({
    rollouts: store.rollouts,
    models: store.models,
    fleet: deps.fleet,
    bus: deps.bus,
    ...(deps.audit ? { audit: deps.audit } : {}),
    ...(deps.assignmentTtlMs !== undefined ? { assignmentTtlMs: deps.assignmentTtlMs } : {}),
  });
  const metrics = {
    ticks: deps.metrics.counter('edgeloop_rollout_ticks_total', 'Rollout reconcile passes, by outcome'),
    errors: deps.metrics.counter('edgeloop_rollout_errors_total', 'Rollout reconcile failures, by kind'),
    steps: deps.metrics.counter('edgeloop_rollout_steps_total', 'Rollout steps applied, by type'),
    tickSeconds: deps.metrics.summary('edgeloop_rollout_tick_seconds', 'Duration of one reconcile pass (seconds)'),
    evaluationSeconds: deps.metrics.summary(
      'edgeloop_rollout_window_query_seconds',
      'Reading and summing one evaluation window of telemetry (seconds)',
    ),
  };
  deps.metrics.gauge('edgeloop_rollout_leader', 'Whether this replica drives rollouts (1) or not (0)', () =>
    lock.held ? 1 : 0,
  );

  // Models are immutable: cache them by id.
  const models = new Map<string, ModelRecord>();
  const modelOf = async (id: string) => {
    const cached = models.get(id);
    if (cached) return cached;
    const found = await store.models.get(id);
    if (found) models.set(id, found);
    return found;
  };

  const sliceMs = Math.max(1, deps.windowSliceMs ?? 30_000);
  const readWindow = async (range: { from: number; to: number }): Promise<TelemetrySample[]> => {
    const samples: TelemetrySample[] = [];
    for (let from = range.from; from <= range.to; from += sliceMs) {
      const to = Math.min(range.to, from + sliceMs - 1);
      for (const sample of await store.messages.telemetrySamples({ from, to })) samples.push(sample);
      if (to < range.to) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return samples;
  };

  let handle: unknown = null;
  let running: Promise<TickReport> | null = null;
  let stopped = false;
  let lastLeaderAttempt = Number.NEGATIVE_INFINITY;

  const reconcile = async (record: RolloutRecord, now: number) => {
    const model = await modelOf(record.modelId);
    if (!model) throw new Error(`rollout ${record.id}: model ${record.modelId} is not registered`);
    const rollout = toRolloutState(record, model);
    const assignmentRows = await store.rollouts.assignments(record.id);
    const assignments = new Map<string, AssignmentRecord>(assignmentRows.map((row) => [row.deviceId, row]));
    const targets = rollout.cohorts.order;
    const ids = [...new Set([...targets, ...assignments.keys()])];
    const snapshots = new Map((await store.devices.snapshots({ ids })).map((snapshot) => [snapshot.id, snapshot]));
    const facts = buildDeviceFacts(targets, snapshots, assignments);

    // A gate window is read once, when it has closed (plan.ts judges it in the same pass).
    const window = rollout.status === 'running' ? dueWindow(rollout, now) : null;
    const due = window !== null;
    let windows: ReadonlyMap<string, readonly DeviceWindow[]> = new Map();
    if (window) {
      const started = performance.now();
      const samples = await readWindow({ from: window.from, to: window.to - 1 });
      windows = buildDeviceWindows(samples, new Set(ids));
      metrics.evaluationSeconds.observe((performance.now() - started) / 1000);
    }

    // A pending rollout's validation gate reads the newest evaluation with a champion beside it.
    let validation: ValidationEvidence | null = null;
    const wanted = rollout.spec.validation;
    if (rollout.status === 'pending' && wanted && store.evaluations) {
      const [row] = await store.evaluations.list({
        modelId: rollout.model.id,
        datasetId: wanted.dataset,
        withBaseline: true,
        limit: 1,
      });
      if (row) validation = toValidationEvidence(row);
    }

    const steps: Step[] = plan({ rollout, devices: facts, windows, validation, now });
    const desired = new Map<string, DesiredModelFact>();
    for (const [id, snapshot] of snapshots) desired.set(id, desiredModelFact(snapshot));
    const all = [...steps, ...repairSteps(rollout, facts, desired, steps)];
    await executeSteps(executors, all, { record, rollout, model, facts, snapshots, now });
    for (const step of all) metrics.steps.inc({ type: step.type });
    return { steps: all.length, evaluated: due };
  };

  const tick = async (): Promise<TickReport> => {
    const now = clock.now();
    if (stopped) return { leader: false, rollouts: 0, steps: 0, evaluations: 0, errors: 0 };
    if (!lock.held && now - lastLeaderAttempt < deps.leaderRetryMs) {
      return { leader: false, rollouts: 0, steps: 0, evaluations: 0, errors: 0 };
    }
    // Holding the lock: check the session is alive. Not holding: try to take it.
    if (!lock.held) lastLeaderAttempt = now;
    const leader = await lock.acquire();
    if (!leader) {
      metrics.ticks.inc({ outcome: 'follower' });
      return { leader: false, rollouts: 0, steps: 0, evaluations: 0, errors: 0 };
    }
    const started = performance.now();
    let steps = 0;
    let evaluations = 0;
    let errors = 0;
    const work = await store.rollouts.listWork();
    for (const record of work) {
      if (stopped) break;
      try {
        const result = await reconcile(record, now);
        steps += result.steps;
        if (result.evaluated) evaluations++;
      } catch (error) {
        errors++;
        if (error instanceof StaleRolloutError) {
          metrics.errors.inc({ kind: 'stale' });
        } else {
          metrics.errors.inc({ kind: 'failed' });
          logger.error({ err: error, rolloutId: record.id }, 'rollout reconcile failed');
        }
      }
    }
    metrics.tickSeconds.observe((performance.now() - started) / 1000);
    metrics.ticks.inc({ outcome: 'leader' });
    return { leader: true, rollouts: work.length, steps, evaluations, errors };
  };

  const runTick = (): Promise<TickReport> => {
    if (running) return running;
    running = tick().finally(() => {
      running = null;
    });
    return running;
  };

  return {
    start() {
      if (handle !== null || stopped) return;
      handle = deps.timers.setInterval(() => {
        runTick().catch((error: unknown) => {
          metrics.errors.inc({ kind: 'tick' });
          logger.error({ err: error }, 'rollout tick failed');
        });
      }, deps.tickMs);
    },

    async stop() {
      stopped = true;
      if (handle !== null) deps.timers.clearInterval(handle);
      handle = null;
      await running?.catch(() => undefined);
      await lock.release();
    },

    tick: runTick,

    get isLeader() {
      return lock.held;
    },
  };
}
