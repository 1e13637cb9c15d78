import type { ModelRef } from '@edgeloop/protocol';
import { type Cohorts, controlAt, dueAt, inMaintenanceWindow, stageSize, type TargetDevice } from './cohorts.ts';
import { type DeviceWindow, evaluateStage, type StageEvaluation } from './gates.ts';
import type { RolloutSpec } from './spec.ts';

/* The rollout reconcile loop's brain: a pure function from (rollout state, device facts, metric
 * windows, now) to a list of steps. Executors apply the steps (database + desired state) and the
 * loop runs again. Every step is idempotent, so a restart mid-way simply plans again. */

export type RolloutStatus = 'running' | 'paused' | 'completed' | 'rolled_back' | 'aborted';

export type RolloutState = {
  readonly id: string;
  readonly spec: RolloutSpec;
  readonly model: ModelRef;
  readonly modelSizeBytes: number;
  readonly status: RolloutStatus;
  readonly stageIndex: number;
  readonly stageStartedAt: number;
  /** Consecutive failing evaluations in this stage. */
  readonly failingWindows: number;
  readonly lastEvaluatedAt: number | null;
  readonly cohorts: Cohorts;
  readonly reason: string | null;
};

/**
 * assigned:    desired state names the candidate; the device has not confirmed yet
 * active:      the device runs the candidate (or shadows it, for a shadow assignment)
 * failed:      the device reported a failed update or reverted locally
 * reverting:   desired state names the previous model again; not confirmed yet
 * rolled_back: the device is back on the previous model
 */
export type AssignmentState = 'assigned' | 'active' | 'failed' | 'reverting' | 'rolled_back';

export type Assignment = {
  readonly mode: 'shadow' | 'active';
  readonly stageIndex: number;
  readonly state: AssignmentState;
  /** The model the device ran before the rollout (what a rollback returns it to). */
  readonly previous: ModelRef | null;
  readonly assignedAt: number;
};

/** What the loop knows about one target device. */
export type DeviceFacts = {
  readonly id: string;
  readonly online: boolean;
  readonly activeSha256: string | null;
  readonly shadowSha256: string | null;
  /** The device's model-update state machine as last reported. */
  readonly update: { readonly rolloutId: string | null; readonly state: string; readonly reason?: string } | null;
  readonly assignment: Assignment | null;
};

export type PlanInput = {
  readonly rollout: RolloutState;
  readonly devices: ReadonlyMap<string, DeviceFacts>;
  /** Metric windows per device inside `evaluationWindow(rollout, now)`, one per model seen. */
  readonly windows: ReadonlyMap<string, readonly DeviceWindow[]>;
  readonly now: number;
};

export type RolloutPatch = Partial<
  Pick<RolloutState, 'status' | 'stageIndex' | 'stageStartedAt' | 'failingWindows' | 'lastEvaluatedAt' | 'reason'>
>;

export type Step =
  | {
      readonly type: 'assign';
      readonly deviceIds: readonly string[];
      readonly mode: 'shadow' | 'active';
      readonly stageIndex: number;
    }
  | { readonly type: 'revert'; readonly deviceIds: readonly string[]; readonly reason: string }
  | { readonly type: 'mark'; readonly deviceId: string; readonly state: AssignmentState; readonly reason?: string }
  | {
      readonly type: 'verdict';
      readonly stageIndex: number;
      readonly stage: string;
      readonly evaluation: StageEvaluation;
      readonly failingWindows: number;
    }
  | { readonly type: 'update'; readonly transition: string; readonly patch: RolloutPatch; readonly reason: string };

const FAILED_UPDATE_STATES = new Set(['reverted', 'failed']);

/** The metrics window a gate evaluation at `now` compares. */
export function evaluationWindow(rollout: RolloutState, now: number): { from: number; to: number } {
  return { from: Math.max(rollout.stageStartedAt, now - rollout.spec.gates.windowS * 1000), to: now };
}

/** Steps that bring device assignment states in line with what devices report. */
function syncSteps(rollout: RolloutState, devices: ReadonlyMap<string, DeviceFacts>): Step[] {
  const steps: Step[] = [];
  const candidate = rollout.model.sha256;
  for (const device of devices.values()) {
    const assignment = device.assignment;
    if (!assignment) continue;
    const update = device.update;
    const reportedFailure =
      update !== null && update.rolloutId === rollout.id && FAILED_UPDATE_STATES.has(update.state);
    if ((assignment.state === 'assigned' || assignment.state === 'active') && reportedFailure) {
      steps.push({
        type: 'mark',
        deviceId: device.id,
        state: 'failed',
        reason: update?.reason ?? update?.state ?? 'failed',
      });
      continue;
    }
    if (assignment.state === 'assigned') {
      const running =
        assignment.mode === 'active' ? device.activeSha256 === candidate : device.shadowSha256 === candidate;
      if (running) steps.push({ type: 'mark', deviceId: device.id, state: 'active' });
    } else if (assignment.state === 'reverting') {
      const back = device.activeSha256 !== candidate && device.shadowSha256 !== candidate;
      if (back) steps.push({ type: 'mark', deviceId: device.id, state: 'rolled_back' });
    }
  }
  return steps;
}

/** Devices that got the model in any form and are not yet being returned to the previous one. */
function revertTargets(devices: ReadonlyMap<string, DeviceFacts>): string[] {
  const ids: string[] = [];
  for (const device of devices.values()) {
    const state = device.assignment?.state;
    if (state === 'assigned' || state === 'active' || state === 'failed') ids.push(device.id);
  }
  return ids;
}

function rollback(
  devices: ReadonlyMap<string, DeviceFacts>,
  status: 'rolled_back' | 'aborted',
  reason: string,
): Step[] {
  const ids = revertTargets(devices);
  const steps: Step[] = [
    { type: 'update', transition: status === 'aborted' ? 'aborted' : 'rolled-back', patch: { status, reason }, reason },
  ];
  if (ids.length > 0) steps.push({ type: 'revert', deviceIds: ids, reason });
  return steps;
}

/** Plans one reconcile pass. Pure: same input, same steps. */
export function plan(input: PlanInput): Step[] {
  const { rollout, devices, now } = input;
  const { spec, cohorts } = rollout;
  const steps = syncSteps(rollout, devices);
  const marked = new Map(steps.flatMap((step) => (step.type === 'mark' ? [[step.deviceId, step.state] as const] : [])));
  const stateOf = (id: string) => marked.get(id) ?? devices.get(id)?.assignment?.state ?? null;

  if (rollout.status === 'rolled_back' || rollout.status === 'aborted') {
    // Keep converging: anything still pointing at the candidate goes back.
    const ids = revertTargets(devices).filter((id) => stateOf(id) !== 'rolled_back');
    if (ids.length > 0) steps.push({ type: 'revert', deviceIds: ids, reason: rollout.reason ?? 'rollout rolled back' });
    return steps;
  }
  if (rollout.status !== 'running') return steps;

  const stage = spec.stages[rollout.stageIndex];
  if (!stage) {
    steps.push({ type: 'update', transition: 'completed', patch: { status: 'completed' }, reason: 'no stages left' });
    return steps;
  }

  // Abort criteria: too many devices failed the update, whatever the gates say.
  let assigned = 0;
  let failed = 0;
  for (const device of devices.values()) {
    if (!device.assignment) continue;
    assigned++;
    if (stateOf(device.id) === 'failed') failed++;
  }
  if (failed >= spec.abort.minFailures && failed / Math.max(1, assigned) >= spec.abort.maxFailureShare) {
    return [
      ...steps,
      ...rollback(devices, 'rolled_back', `${failed} of ${assigned} devices failed the update (abort criteria)`),
    ];
  }

  // Hand the model to the stage's devices that are due (jitter) inside a maintenance window.
  const size = stageSize(stage, cohorts);
  const stageIds = cohorts.order.slice(0, size);
  const mode = stage.kind === 'shadow' ? 'shadow' : 'active';
  const needsModel = (id: string) => {
    const assignment = devices.get(id)?.assignment;
    return !assignment || (assignment.mode === 'shadow' && mode === 'active' && assignment.state !== 'failed');
  };
  // Stage devices still waiting for the model (their jitter, a maintenance window), or getting it now.
  const waiting = stageIds.filter(needsModel).length;
  if (inMaintenanceWindow(spec.maintenanceWindows, now)) {
    const due = stageIds.filter((id) => needsModel(id) && dueAt(rollout.id, id, rollout.stageStartedAt, spec) <= now);
    if (due.length > 0) steps.push({ type: 'assign', deviceIds: due, mode, stageIndex: rollout.stageIndex });
  }

  if (rollout.lastEvaluatedAt !== null && now - rollout.lastEvaluatedAt < spec.gates.intervalS * 1000) return steps;

  // Gate evaluation over the window.
  const stageSet = new Set(stageIds);
  const candidateWindows: DeviceWindow[] = [];
  for (const id of stageIds) {
    for (const window of input.windows.get(id) ?? []) {
      const useful =
        mode === 'shadow'
          ? window.shadow !== null && window.shadow.candidateSha256 === rollout.model.sha256
          : window.modelSha256 === rollout.model.sha256;
      if (useful) candidateWindows.push(window);
    }
  }
  const controlIds = controlAt(stage, cohorts).filter((id) => !stageSet.has(id));
  const controlWindows: DeviceWindow[] = [];
  for (const id of controlIds) {
    for (const window of input.windows.get(id) ?? []) {
      if (window.modelSha256 !== rollout.model.sha256) controlWindows.push(window);
    }
  }
  const failedInStage = stageIds.filter((id) => stateOf(id) === 'failed').length;
  const evaluation = evaluateStage(
    {
      kind: mode === 'shadow' ? 'shadow' : 'live',
      stageDevices: stageIds.length,
      candidate: candidateWindows,
      control: mode === 'shadow' ? null : controlIds.length > 0 ? controlWindows : null,
      failedDevices: failedInStage,
      soakedS: (now - rollout.stageStartedAt) / 1000,
    },
    spec.gates,
    spec.evidence,
  );
  const failingWindows = evaluation.verdict === 'fail' ? rollout.failingWindows + 1 : 0;
  steps.push({ type: 'verdict', stageIndex: rollout.stageIndex, stage: stage.name, evaluation, failingWindows });

  if (evaluation.verdict === 'fail' && failingWindows >= spec.gates.failingWindowsRequired) {
    // No new assignments in the pass that rolls back: they would race the revert.
    return [
      ...steps.filter((step) => step.type !== 'assign'),
      ...rollback(devices, 'rolled_back', `stage ${stage.name} failed: ${evaluation.reason}`),
    ];
  }
  if (evaluation.verdict === 'pass') {
    const next = rollout.stageIndex + 1;
    if (next >= spec.stages.length && waiting > 0) {
      // The last stage passes only once every device has been handed the model: completing
      // earlier would leave the devices that were waiting (jitter, maintenance window) behind.
      steps.push({
        type: 'update',
        transition: 'holding',
        patch: { lastEvaluatedAt: now, failingWindows: 0 },
        reason: `stage ${stage.name} passed; waiting for ${waiting} devices to be handed the model before completing`,
      });
      return steps;
    }
    if (next >= spec.stages.length) {
      steps.push({
        type: 'update',
        transition: 'completed',
        patch: { status: 'completed', lastEvaluatedAt: now, failingWindows: 0 },
        reason: `stage ${stage.name} passed; rollout complete`,
      });
    } else {
      steps.push({
        type: 'update',
        transition: 'advanced',
        patch: { stageIndex: next, stageStartedAt: now, failingWindows: 0, lastEvaluatedAt: null },
        reason: `stage ${stage.name} passed; entering ${spec.stages[next]?.name}`,
      });
    }
    return steps;
  }
  steps.push({
    type: 'update',
    transition: evaluation.verdict === 'fail' ? 'failing' : 'holding',
    patch: { lastEvaluatedAt: now, failingWindows },
    reason: evaluation.reason,
  });
  return steps;
}

export type DryRunPlan = {
  readonly targetDevices: number;
  readonly canary: readonly string[];
  readonly control: readonly string[];
  readonly stages: readonly { name: string; kind: string; devices: number; newDevices: number }[];
  /** Fastest possible time to 100% if every gate passes at its first chance. */
  readonly earliestDurationS: number;
  /** Bytes the devices will download (each device fetches the model once). */
  readonly bytesToDownload: number;
};

/** What a rollout would do, without doing it. */
export function dryRun(spec: RolloutSpec, cohorts: Cohorts, modelSizeBytes: number): DryRunPlan {
  let previous = 0;
  let earliest = 0;
  const stages = spec.stages.map((stage) => {
    const devices = stageSize(stage, cohorts);
    const newDevices = Math.max(0, devices - previous);
    previous = Math.max(previous, devices);
    // A stage passes at the first evaluation after its soak and its devices' jitter.
    const interval = spec.gates.intervalS;
    earliest += Math.max(interval, Math.ceil((spec.evidence.soakS + spec.jitterS) / interval) * interval);
    return { name: stage.name, kind: stage.kind, devices, newDevices };
  });
  return {
    targetDevices: cohorts.order.length,
    canary: cohorts.canary,
    control: cohorts.control,
    stages,
    earliestDurationS: earliest,
    bytesToDownload: previous * modelSizeBytes,
  };
}

export type { TargetDevice };
