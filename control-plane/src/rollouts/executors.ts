import type { ModelAssignment } from '@edgeloop/protocol';
import { type AuditLog, noAudit, SYSTEM_ROLLOUTS } from '../audit/audit.ts';
import type {
  AssignmentRecord,
  DeviceSnapshot,
  ModelRecord,
  ModelRepository,
  NewRolloutEvent,
  RolloutRecord,
  RolloutRepository,
} from '../db/repositories.ts';
import type { BusEvents, EventBus } from '../events.ts';
import type { DesiredChange } from '../fleet.ts';
import { DEFAULT_ASSIGNMENT_TTL_MS, toModelAssignment } from '../models/registry.ts';
import { desiredPrevious, previousModel, reportedModel } from './facts.ts';
import type { DeviceFacts, RolloutState, Step } from './plan.ts';

/*
 * One executor per step type (a typed map, as balena-supervisor runs its composition steps).
 * Executors write the database first and desired state second: if the process dies in between,
 * the next pass finds the assignment and repairs desired state (facts.ts repairSteps). Every
 * executor is idempotent, so replaying a step after a restart does no harm.
 */

export type StepOf<T extends Step['type']> = Extract<Step, { type: T }>;

/** Another writer (an operator action, another replica) changed the rollout during this pass. */
export class StaleRolloutError extends Error {
  readonly code = 'stale_rollout';
  constructor(id: string) {
    super(`rollout ${id} changed while it was being reconciled; planning again`);
    this.name = 'StaleRolloutError';
  }
}

/** What the executors of one reconcile pass share. `record` follows the rollout's own writes. */
export type ExecutionContext = {
  record: RolloutRecord;
  readonly rollout: RolloutState;
  readonly model: ModelRecord;
  readonly facts: ReadonlyMap<string, DeviceFacts>;
  readonly snapshots: ReadonlyMap<string, DeviceSnapshot>;
  readonly now: number;
};

export type ExecutorDeps = {
  readonly rollouts: RolloutRepository;
  readonly models: Pick<ModelRepository, 'get'>;
  readonly fleet: { setDesired(id: string, change: DesiredChange): Promise<unknown> };
  readonly bus: EventBus;
  /** The audit log: transitions, assignments and reverts are entered as `system:rollouts`. */
  readonly audit?: AuditLog;
  /** Desired-state writes in flight at once (each is a transaction and a retained publish). */
  readonly concurrency?: number;
  /** Every assignment written is valid for this long (its expiresAt); default 7 days. */
  readonly assignmentTtlMs?: number;
};

export type Executors = {
  readonly assign: (step: StepOf<'assign'>, context: ExecutionContext) => Promise<void>;
  readonly unchanged: (step: StepOf<'unchanged'>, context: ExecutionContext) => Promise<void>;
  readonly revert: (step: StepOf<'revert'>, context: ExecutionContext) => Promise<void>;
  /** Marks come in runs (one per device); a run is applied as one batch. */
  readonly mark: (steps: readonly StepOf<'mark'>[], context: ExecutionContext) => Promise<void>;
  readonly verdict: (step: StepOf<'verdict'>, context: ExecutionContext) => Promise<void>;
  readonly update: (step: StepOf<'update'>, context: ExecutionContext) => Promise<void>;
};

/** Bus events of the planner's transitions (holding and failing are recorded by the verdict). */
const TRANSITION_EVENTS: Readonly<Record<string, keyof BusEvents>> = {
  advanced: 'rollout.advanced',
  completed: 'rollout.completed',
  'rolled-back': 'rollout.rolled-back',
  aborted: 'rollout.aborted',
  /** A stage deadline's pause: the operator sees it like their own pause. */
  paused: 'rollout.paused',
};

async function eachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function stageName(rollout: RolloutState, index: number): string | null {
  return rollout.spec.stages[index]?.name ?? null;
}

export function createExecutors(deps: ExecutorDeps): Executors {
  const { rollouts, bus } = deps;
  const concurrency = deps.concurrency ?? 16;
  const assignmentTtlMs = deps.assignmentTtlMs ?? DEFAULT_ASSIGNMENT_TTL_MS;

  const event = (
    context: ExecutionContext,
    type: string,
    data: Record<string, unknown>,
    stage = stageName(context.rollout, context.record.stageIndex),
  ): NewRolloutEvent => ({ rolloutId: context.rollout.id, at: context.now, type, stage, data });

  const audit = deps.audit ?? noAudit;
  /** The engine's own change, in the audit log: a few device ids, and how many in all. */
  const enter = (context: ExecutionContext, action: string, summary: Record<string, unknown>) =>
    audit.record({
      at: context.now,
      actor: SYSTEM_ROLLOUTS,
      actorRole: 'system',
      action: `rollout.${action}`,
      resource: 'rollouts',
      target: context.rollout.id,
      requestId: null,
      source: null,
      status: null,
      summary,
    });
  const someIds = (ids: readonly string[]) => ({ devices: ids.length, deviceIds: ids.slice(0, 20) });
  return {
    async assign(step, context) {
      const { rollout, now, model } = context;
      const rows: AssignmentRecord[] = step.deviceIds.map((deviceId) => {
        const existing = context.facts.get(deviceId)?.assignment ?? null;
        // A shadow device moving to active, or a repair, keeps what it ran before the rollout.
        const snapshot = context.snapshots.get(deviceId);
        const previous =
          existing?.previous ??
          previousModel(snapshot?.reported ?? null, rollout.model.sha256) ??
          desiredPrevious(snapshot, rollout.model.sha256);
        return {
          rolloutId: rollout.id,
          deviceId,
          mode: step.mode,
          stageIndex: step.stageIndex,
          state: 'assigned',
          previous,
          assignedAt: existing && existing.mode === step.mode ? existing.assignedAt : now,
          updatedAt: now,
          reason: null,
        };
      });
      await rollouts.putAssignments(rows);
      const assignment = toModelAssignment(model, rollout.id, step.mode, now + assignmentTtlMs);
      await eachLimited(step.deviceIds, concurrency, async (deviceId) => {
        await deps.fleet.setDesired(deviceId, { model: assignment });
      });
      const stage = stageName(rollout, step.stageIndex);
      await rollouts.appendEvents([
        event(
          context,
          'assigned',
          { mode: step.mode, stageIndex: step.stageIndex, deviceIds: [...step.deviceIds] },
          stage,
        ),
      ]);
      await enter(context, 'assigned', { stage, mode: step.mode, ...someIds(step.deviceIds) });
      bus.publish('rollout.assigned', {
        rolloutId: rollout.id,
        stage,
        stageIndex: step.stageIndex,
        mode: step.mode,
        deviceIds: [...step.deviceIds],
      });
    },

    async unchanged(step, context) {
      const { rollout, now } = context;
      const rows: AssignmentRecord[] = step.deviceIds.map((deviceId) => {
        const reported = reportedModel(context.snapshots.get(deviceId)?.reported ?? null);
        return {
          rolloutId: rollout.id,
          deviceId,
          mode: step.mode,
          stageIndex: step.stageIndex,
          state: 'unchanged',
          // What it runs (the candidate's bytes, possibly under another release): nothing to return to.
          previous: reported.active,
          assignedAt: now,
          updatedAt: now,
          reason: step.reason,
        };
      });
      await rollouts.putAssignments(rows);
      const changes = step.deviceIds.map((deviceId) => ({ deviceId, state: 'unchanged', reason: step.reason }));
      await rollouts.appendEvents([
        event(
          context,
          'unchanged',
          { mode: step.mode, stageIndex: step.stageIndex, reason: step.reason, deviceIds: [...step.deviceIds] },
          stageName(rollout, step.stageIndex),
        ),
      ]);
      bus.publish('rollout.devices', { rolloutId: rollout.id, changes });
    },

    async revert(step, context) {
      const { rollout, now } = context;
      // The previous model's assignment when it is registered (same bytes), else null: the agent
      // then returns to its locally configured model.
      const registered = new Map<string, ModelRecord | null>();
      const desiredFor = async (deviceId: string): Promise<ModelAssignment | null> => {
        const previous = context.facts.get(deviceId)?.assignment?.previous ?? null;
        if (!previous) return null;
        if (!registered.has(previous.id)) registered.set(previous.id, await deps.models.get(previous.id));
        const model = registered.get(previous.id);
        return model && model.sha256 === previous.sha256
          ? toModelAssignment(model, rollout.id, 'active', now + assignmentTtlMs)
          : null;
      };
      await rollouts.setAssignmentStates(
        rollout.id,
        step.deviceIds.map((deviceId) => ({ deviceId, state: 'reverting', reason: step.reason })),
        now,
      );
      await eachLimited(step.deviceIds, concurrency, async (deviceId) => {
        await deps.fleet.setDesired(deviceId, { model: await desiredFor(deviceId) });
      });
      await rollouts.appendEvents([
        event(context, 'reverting', { reason: step.reason, deviceIds: [...step.deviceIds] }),
      ]);
      await enter(context, 'reverting', { reason: step.reason, ...someIds(step.deviceIds) });
      bus.publish('rollout.reverting', { rolloutId: rollout.id, reason: step.reason, deviceIds: [...step.deviceIds] });
    },

    async mark(steps, context) {
      if (steps.length === 0) return;
      const changes = steps.map((step) => ({
        deviceId: step.deviceId,
        state: step.state,
        reason: step.reason ?? null,
      }));
      await rollouts.setAssignmentStates(context.rollout.id, changes, context.now);
      await rollouts.appendEvents([event(context, 'devices', { changes })]);
      bus.publish('rollout.devices', { rolloutId: context.rollout.id, changes });
    },

    async verdict(step, context) {
      const { evaluation } = step;
      const data = {
        stageIndex: step.stageIndex,
        verdict: evaluation.verdict,
        reason: evaluation.reason,
        failingWindows: step.failingWindows,
        window: step.window,
        timedOut: step.timedOut,
        action: step.action,
        gates: evaluation.gates,
        evidence: evaluation.evidence,
      };
      await rollouts.appendEvents([event(context, 'verdict', data, step.stage)]);
      bus.publish('rollout.verdict', {
        rolloutId: context.rollout.id,
        stage: step.stage,
        stageIndex: step.stageIndex,
        verdict: evaluation.verdict,
        reason: evaluation.reason,
        failingWindows: step.failingWindows,
        window: step.window,
        timedOut: step.timedOut,
        action: step.action,
        gates: evaluation.gates,
        evidence: evaluation.evidence,
      });
    },

    async update(step, context) {
      const before = context.record;
      const busType = TRANSITION_EVENTS[step.transition];
      const stageIndex = step.patch.stageIndex ?? before.stageIndex;
      const events = busType
        ? [
            event(
              context,
              step.transition,
              {
                reason: step.reason,
                from: before.stageIndex,
                to: stageIndex,
                status: step.patch.status ?? before.status,
              },
              stageName(context.rollout, before.stageIndex),
            ),
          ]
        : [];
      const updated = await rollouts.update(before.id, before.version, step.patch, context.now, events);
      if (!updated) throw new StaleRolloutError(before.id);
      context.record = updated;
      if (busType) {
        await enter(context, step.transition, {
          reason: step.reason,
          from: before.stageIndex,
          to: updated.stageIndex,
          status: updated.status,
        });
        bus.publish(busType as 'rollout.advanced', {
          rolloutId: updated.id,
          status: updated.status,
          stage: stageName(context.rollout, updated.stageIndex),
          stageIndex: updated.stageIndex,
          reason: step.reason,
        });
      }
    },
  };
}

/**
 * Runs a pass's steps in order through the executors; consecutive marks go as one batch. Stops at
 * the first error (a StaleRolloutError means: plan again next pass).
 */
export async function executeSteps(
  executors: Executors,
  steps: readonly Step[],
  context: ExecutionContext,
): Promise<void> {
  let marks: StepOf<'mark'>[] = [];
  const flushMarks = async () => {
    if (marks.length === 0) return;
    const batch = marks;
    marks = [];
    await executors.mark(batch, context);
  };
  for (const step of steps) {
    if (step.type === 'mark') {
      marks.push(step);
      continue;
    }
    await flushMarks();
    switch (step.type) {
      case 'assign':
        await executors.assign(step, context);
        break;
      case 'unchanged':
        await executors.unchanged(step, context);
        break;
      case 'revert':
        await executors.revert(step, context);
        break;
      case 'verdict':
        await executors.verdict(step, context);
        break;
      case 'update':
        await executors.update(step, context);
        break;
    }
  }
  await flushMarks();
}
