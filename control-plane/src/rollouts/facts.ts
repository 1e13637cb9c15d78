import { ModelRef, RolloutSpec } from '@edgeloop/protocol';
import type { AssignmentRecord, DeviceSnapshot, ModelRecord, RolloutRecord } from '../db/repositories.ts';
import type { Cohorts } from './cohorts.ts';
import type { Assignment, AssignmentState, DeviceFacts, RolloutState, RolloutStatus, Step } from './plan.ts';

/*
 * From stored rows to the planner's input, and the repairs the planner does not see. Pure.
 */

/** What a device's desired state says about models: the assignment it carries, if any. */
export type DesiredModelFact = {
  readonly rolloutId: string | null;
  readonly sha256: string;
  readonly mode: 'active' | 'shadow';
} | null;

export function toRolloutState(record: RolloutRecord, model: ModelRecord): RolloutState {
  return {
    id: record.id,
    spec: RolloutSpec.parse(record.spec),
    model: { id: model.id, name: model.name, version: model.version, sha256: model.sha256 },
    modelSizeBytes: model.sizeBytes,
    status: record.status as RolloutStatus,
    stageIndex: record.stageIndex,
    stageStartedAt: record.stageStartedAt,
    failingWindows: record.failingWindows,
    lastEvaluatedAt: record.lastEvaluatedAt,
    cohorts: record.cohorts as Cohorts,
    reason: record.reason,
  };
}

export function toAssignment(record: AssignmentRecord): Assignment {
  const previous = ModelRef.safeParse(record.previous);
  return {
    mode: record.mode === 'shadow' ? 'shadow' : 'active',
    stageIndex: record.stageIndex,
    state: record.state as AssignmentState,
    previous: previous.success ? previous.data : null,
    assignedAt: record.assignedAt,
  };
}

function asRecord(value: unknown): Record<string, unknown> | null {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

/** The `model` section of a stored Reported message (validated at ingest; read defensively). */
export function reportedModel(reported: unknown): {
  active: ModelRef | null;
  previous: ModelRef | null;
  shadow: ModelRef | null;
  update: DeviceFacts['update'];
} {
  const model = asRecord(asRecord(reported)?.model);
  const ref = (value: unknown) => {
    const parsed = ModelRef.safeParse(value);
    return parsed.success ? parsed.data : null;
  };
  const update = asRecord(model?.update);
  return {
    active: ref(model?.active),
    previous: ref(model?.previous),
    shadow: ref(model?.shadow),
    update:
      update && typeof update.state === 'string'
        ? {
            rolloutId: typeof update.rolloutId === 'string' ? update.rolloutId : null,
            state: update.state,
            ...(typeof update.reason === 'string' ? { reason: update.reason } : {}),
          }
        : null,
  };
}

/** The hardware profile a device reported, or null. */
export function reportedHardware(reported: unknown): string | null {
  const profile = asRecord(asRecord(reported)?.hardware)?.profile;
  return typeof profile === 'string' && profile.length > 0 ? profile : null;
}

export function desiredModelFact(snapshot: DeviceSnapshot | undefined): DesiredModelFact {
  const model = snapshot?.desired?.model;
  if (!model) return null;
  return { rolloutId: model.rolloutId, sha256: model.model.sha256, mode: model.mode };
}

/**
 * Whether a device's report covers its current desired state: its `desiredVersion` (the last
 * version it applied) is at least the desired version stored. Until then its model-update state
 * may describe an assignment that has been replaced (a shadow update cancelled on the way to
 * active reports `reverted`), which must not count as a failure of the new one.
 */
export function reportIsCurrent(snapshot: DeviceSnapshot | undefined): boolean {
  const wanted = snapshot?.desired?.version;
  if (wanted === undefined) return true;
  const applied = asRecord(snapshot?.reported)?.desiredVersion;
  return typeof applied === 'number' && applied >= wanted;
}

/**
 * What the planner knows about each target device. A device missing from the snapshots (revoked)
 * is offline with nothing reported: it never counts as success. The model-update state counts
 * only once the device has applied its latest desired state (reportIsCurrent).
 */
export function buildDeviceFacts(
  targets: readonly string[],
  snapshots: ReadonlyMap<string, DeviceSnapshot>,
  assignments: ReadonlyMap<string, AssignmentRecord>,
): Map<string, DeviceFacts> {
  const facts = new Map<string, DeviceFacts>();
  const ids = new Set([...targets, ...assignments.keys()]);
  for (const id of ids) {
    const snapshot = snapshots.get(id);
    const model = reportedModel(snapshot?.reported ?? null);
    const assignment = assignments.get(id);
    facts.set(id, {
      id,
      online: snapshot?.status === 'online',
      activeSha256: model.active?.sha256 ?? null,
      shadowSha256: model.shadow?.sha256 ?? null,
      update: reportIsCurrent(snapshot) ? model.update : null,
      assignment: assignment ? toAssignment(assignment) : null,
    });
  }
  return facts;
}

/**
 * What a rollback returns a device to: the model it reported as active, unless that already is
 * the candidate (then the one before it, if it is not the candidate either).
 */
export function previousModel(reported: unknown, candidateSha256: string): ModelRef | null {
  const model = reportedModel(reported);
  if (model.active && model.active.sha256 !== candidateSha256) return model.active;
  if (model.previous && model.previous.sha256 !== candidateSha256) return model.previous;
  return null;
}

/**
 * The fallback for what a rollback returns a device to when it has reported no model yet (or only
 * the candidate): the model its desired state names now, unless that is the candidate.
 */
export function desiredPrevious(snapshot: DeviceSnapshot | undefined, candidateSha256: string): ModelRef | null {
  const model = snapshot?.desired?.model?.model;
  if (!model || model.sha256 === candidateSha256) return null;
  return { id: model.id, name: model.name, version: model.version, sha256: model.sha256 };
}

/**
 * Steps that put desired state back in line with the assignments, for what the planner cannot
 * see: a control plane killed between writing an assignment and publishing desired state (or an
 * operator who changed it). `assigned` devices must have the candidate in desired state, in their
 * mode; `reverting` devices must not. Devices the planner already has steps for are left alone.
 */
export function repairSteps(
  rollout: RolloutState,
  facts: ReadonlyMap<string, DeviceFacts>,
  desired: ReadonlyMap<string, DesiredModelFact>,
  planned: readonly Step[],
): Step[] {
  const touched = new Set<string>();
  for (const step of planned) {
    if (step.type === 'mark') touched.add(step.deviceId);
    else if (step.type === 'assign' || step.type === 'revert' || step.type === 'unchanged')
      for (const id of step.deviceIds) touched.add(id);
  }
  const reassign = new Map<string, { mode: 'shadow' | 'active'; stageIndex: number; ids: string[] }>();
  const revert: string[] = [];
  for (const device of facts.values()) {
    const assignment = device.assignment;
    if (!assignment || touched.has(device.id) || !desired.has(device.id)) continue;
    const wanted = desired.get(device.id) ?? null;
    const namesCandidate = wanted !== null && wanted.sha256 === rollout.model.sha256;
    if (assignment.state === 'assigned') {
      const matches = namesCandidate && wanted.rolloutId === rollout.id && wanted.mode === assignment.mode;
      if (!matches) {
        const key = `${assignment.mode}/${assignment.stageIndex}`;
        const group = reassign.get(key) ?? { mode: assignment.mode, stageIndex: assignment.stageIndex, ids: [] };
        group.ids.push(device.id);
        reassign.set(key, group);
      }
    } else if (assignment.state === 'reverting' && namesCandidate && wanted.rolloutId === rollout.id) {
      revert.push(device.id);
    }
  }
  const steps: Step[] = [];
  for (const group of reassign.values()) {
    steps.push({ type: 'assign', deviceIds: group.ids, mode: group.mode, stageIndex: group.stageIndex });
  }
  if (revert.length > 0) {
    steps.push({ type: 'revert', deviceIds: revert, reason: rollout.reason ?? 'desired state repaired' });
  }
  return steps;
}
