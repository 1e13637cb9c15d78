import type { ModelRef, TimeoutAction } from '@edgeloop/protocol';
import { type Cohorts, controlAt, dueAt, inMaintenanceWindow, stageSize, type TargetDevice } from './cohorts.ts';
import {
  type DeviceWindow,
  evaluateStage,
  evaluateValidation,
  type StageEvaluation,
  type ValidationEvidence,
} from './gates.ts';
import type { RolloutSpec, StageSpec } from './spec.ts';

/* The rollout reconcile loop's brain: a pure function from (rollout state, device facts, metric
 * windows, now) to a list of steps. Executors apply the steps (database + desired state) and the
 * loop runs again. Every step is idempotent, so a restart mid-way simply plans again.
 *
 * Gate windows are consecutive, non-overlapping slices of the stage, [start + k w, start + (k+1) w)
 * with w = gates.windowS, judged once each when they close (telemetry by received time). The
 * rollout row keeps the end of the last window judged (`lastEvaluatedAt`), so the next one follows
 * from it: N failing windows are N distinct windows. */

/** pending: waiting for the validation gate (spec.validation) before the first stage; no device touched. */
export type RolloutStatus = 'pending' | 'running' | 'paused' | 'completed' | 'rolled_back' | 'aborted';

export type RolloutState = {
  readonly id: string;
  readonly spec: RolloutSpec;
  readonly model: ModelRef;
  readonly modelSizeBytes: number;
  readonly status: RolloutStatus;
  readonly stageIndex: number;
  readonly stageStartedAt: number;
  /** Consecutive failing windows in this stage. */
  readonly failingWindows: number;
  /** End of the last window judged in this stage; null before the first. */
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
 * unchanged:   the device already ran the candidate's bytes: a no-op, never switched or reverted
 */
export type AssignmentState = 'assigned' | 'active' | 'failed' | 'reverting' | 'rolled_back' | 'unchanged';

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
  /** Metric windows per device inside `dueWindow(rollout, now)`, one per model seen. */
  readonly windows: ReadonlyMap<string, readonly DeviceWindow[]>;
  /**
   * For a pending rollout with a validation spec: the newest evaluation of the candidate on the
   * spec's dataset version with a champion beside it (null when none exists).
   */
  readonly validation?: ValidationEvidence | null;
  readonly now: number;
};

export type RolloutPatch = Partial<
  Pick<RolloutState, 'status' | 'stageIndex' | 'stageStartedAt' | 'failingWindows' | 'lastEvaluatedAt' | 'reason'>
>;

export type GateWindow = { readonly index: number; readonly from: number; readonly to: number };

export type Step =
  | {
      readonly type: 'assign';
      readonly deviceIds: readonly string[];
      readonly mode: 'shadow' | 'active';
      readonly stageIndex: number;
    }
  /** Devices that already run the candidate's bytes: recorded as such, desired state left alone. */
  | {
      readonly type: 'unchanged';
      readonly deviceIds: readonly string[];
      readonly mode: 'shadow' | 'active';
      readonly stageIndex: number;
      readonly reason: string;
    }
  | { readonly type: 'revert'; readonly deviceIds: readonly string[]; readonly reason: string }
  | { readonly type: 'mark'; readonly deviceId: string; readonly state: AssignmentState; readonly reason?: string }
  | {
      readonly type: 'verdict';
      readonly stageIndex: number;
      readonly stage: string;
      readonly evaluation: StageEvaluation;
      readonly failingWindows: number;
      readonly window: GateWindow;
      readonly timedOut: boolean;
      readonly action: TimeoutAction | null;
    }
  | { readonly type: 'update'; readonly transition: string; readonly patch: RolloutPatch; readonly reason: string };

const FAILED_UPDATE_STATES = new Set(['reverted', 'failed']);

/** Telemetry arrives a little after the window it belongs to closes: wait this long before judging. */
export function windowGraceMs(spec: RolloutSpec): number {
  return Math.min(2000, spec.gates.windowS * 100);
}

/** A stage's deadline in seconds: its maxDurationS, else max(1800, soak + jitter + (failing + 2) windows). */
export function stageMaxDurationS(spec: RolloutSpec, stage: StageSpec): number {
  if (stage.maxDurationS !== undefined) return stage.maxDurationS;
  return Math.max(
    1800,
    spec.evidence.soakS + spec.jitterS + (spec.gates.failingWindowsRequired + 2) * spec.gates.windowS,
  );
}

/** The window after the last one judged in this stage (index from 0). */
export function nextWindow(rollout: RolloutState): GateWindow {
  const width = rollout.spec.gates.windowS * 1000;
  const start = rollout.stageStartedAt;
  const last = rollout.lastEvaluatedAt;
  const index = last === null || last <= start ? 0 : Math.round((last - start) / width);
  return { index, from: start + index * width, to: start + (index + 1) * width };
}

/** The window to judge at `now`, or null while the next one is still open. */
export function dueWindow(rollout: RolloutState, now: number): GateWindow | null {
  const window = nextWindow(rollout);
  return now >= window.to + windowGraceMs(rollout.spec) ? window : null;
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
      // Home once the device reports its previous model, or anything that is not the candidate.
      const previous = assignment.previous?.sha256 ?? null;
      const noCandidateShadow = device.shadowSha256 !== candidate;
      const back =
        noCandidateShadow &&
        device.activeSha256 !== null &&
        (device.activeSha256 === previous || device.activeSha256 !== candidate);
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

/** The validation verdict is recorded in the events as a stage of its own, before the first. */
export const VALIDATION_STAGE = 'validation';

/**
 * A pending rollout: the validation gate judges the newest evaluation. Waiting is recorded once
 * (a verdict and the reason on the row), not on every pass; a pass starts the first stage (its
 * clock from now); a fail ends the rollout as a failed stage does (rolled back, nothing to revert).
 */
function validationSteps(input: PlanInput): Step[] {
  const { rollout, now } = input;
  const validation = rollout.spec.validation;
  const first = rollout.spec.stages[0]?.name ?? 'the first stage';
  const start = (why: string): Step => ({
    type: 'update',
    transition: 'advanced',
    patch: {
      status: 'running',
      stageIndex: 0,
      stageStartedAt: now,
      failingWindows: 0,
      lastEvaluatedAt: null,
      reason: null,
    },
    reason: `${why}; entering ${first}`,
  });
  if (!validation) return [start('no validation required')];
  const evaluation = evaluateValidation(validation, rollout.model.id, input.validation ?? null);
  if (evaluation.verdict === 'inconclusive' && rollout.reason === evaluation.reason) return [];
  const verdict: Step = {
    type: 'verdict',
    stageIndex: 0,
    stage: VALIDATION_STAGE,
    evaluation,
    failingWindows: evaluation.verdict === 'fail' ? 1 : 0,
    window: { index: 0, from: rollout.stageStartedAt, to: Math.max(now, rollout.stageStartedAt) },
    timedOut: false,
    action: null,
  };
  if (evaluation.verdict === 'pass') return [verdict, start(evaluation.reason)];
  if (evaluation.verdict === 'fail') {
    return [verdict, ...rollback(input.devices, 'rolled_back', `validation failed: ${evaluation.reason}`)];
  }
  return [
    verdict,
    { type: 'update', transition: 'waiting', patch: { reason: evaluation.reason }, reason: evaluation.reason },
  ];
}

/** Plans one reconcile pass. Pure: same input, same steps. */
export function plan(input: PlanInput): Step[] {
  const { rollout, devices, now } = input;
  const { spec, cohorts } = rollout;
  const candidateSha = rollout.model.sha256;
  const steps = syncSteps(rollout, devices);
  const marked = new Map<string, AssignmentState>(
    steps.flatMap((step) => (step.type === 'mark' ? [[step.deviceId, step.state] as const] : [])),
  );
  const stateOf = (id: string) => marked.get(id) ?? devices.get(id)?.assignment?.state ?? null;

  if (rollout.status === 'rolled_back' || rollout.status === 'aborted') {
    // Keep converging: anything still pointing at the candidate goes back.
    const ids = revertTargets(devices).filter((id) => stateOf(id) !== 'rolled_back');
    if (ids.length > 0) steps.push({ type: 'revert', deviceIds: ids, reason: rollout.reason ?? 'rollout rolled back' });
    return steps;
  }
  if (rollout.status === 'pending') return [...steps, ...validationSteps(input)];
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
    if (!device.assignment || device.assignment.state === 'unchanged') continue;
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
    return (
      !assignment ||
      (assignment.mode === 'shadow' &&
        mode === 'active' &&
        assignment.state !== 'failed' &&
        assignment.state !== 'unchanged')
    );
  };
  // A device already running the candidate's bytes is a no-op: no fake switch, no revert later.
  const runsCandidate = (id: string) => devices.get(id)?.activeSha256 === candidateSha;
  const unchangedNow = new Set<string>();
  // Stage devices still waiting for the model (their jitter, a maintenance window), or getting it now.
  const waiting = stageIds.filter(needsModel).length;
  if (inMaintenanceWindow(spec.maintenanceWindows, now)) {
    const due = stageIds.filter((id) => needsModel(id) && dueAt(rollout.id, id, rollout.stageStartedAt, spec) <= now);
    const same = due.filter((id) => runsCandidate(id) && !devices.get(id)?.assignment);
    const give = due.filter((id) => !same.includes(id));
    if (same.length > 0) {
      for (const id of same) unchangedNow.add(id);
      steps.push({
        type: 'unchanged',
        deviceIds: same,
        mode,
        stageIndex: rollout.stageIndex,
        reason: "the device already runs the candidate's bytes (same sha256): nothing to switch",
      });
    }
    if (give.length > 0) steps.push({ type: 'assign', deviceIds: give, mode, stageIndex: rollout.stageIndex });
  }
  // Devices on the candidate's bytes still waiting for their turn (jitter) are no-ops as well.
  for (const id of stageIds) if (!devices.get(id)?.assignment && runsCandidate(id)) unchangedNow.add(id);

  const window = dueWindow(rollout, now);
  if (!window) return steps;

  // Gate evaluation over the window.
  const unchangedIds = new Set(stageIds.filter((id) => unchangedNow.has(id) || stateOf(id) === 'unchanged'));
  const judgedIds = stageIds.filter((id) => !unchangedIds.has(id));
  const stageSet = new Set(stageIds);
  const candidateWindows: DeviceWindow[] = [];
  for (const id of judgedIds) {
    for (const w of input.windows.get(id) ?? []) {
      const useful =
        mode === 'shadow'
          ? w.shadow !== null && w.shadow.candidateSha256 === candidateSha
          : w.modelSha256 === candidateSha;
      if (useful) candidateWindows.push(w);
    }
  }
  // Control: devices of the control cohort that this rollout has not assigned, whatever they run.
  const controlIds = controlAt(stage, cohorts).filter((id) => !stageSet.has(id) && !devices.get(id)?.assignment);
  const controlWindows: DeviceWindow[] = [];
  for (const id of controlIds) for (const w of input.windows.get(id) ?? []) controlWindows.push(w);
  const failedInStage = judgedIds.filter((id) => stateOf(id) === 'failed').length;
  const soakedS = (window.to - rollout.stageStartedAt) / 1000;
  const evaluated = evaluateStage(
    {
      kind: mode === 'shadow' ? 'shadow' : 'live',
      stageDevices: judgedIds.length,
      unchanged: unchangedIds.size,
      candidate: candidateWindows,
      control: mode === 'shadow' ? null : controlIds.length > 0 ? controlWindows : null,
      controlCohort: controlIds.length,
      failedDevices: failedInStage,
      soakedS,
    },
    spec.gates,
    spec.evidence,
  );
  // A stage whose every device already runs the candidate's bytes has nothing to judge.
  const vacuous = judgedIds.length === 0 && waiting === 0;
  const evaluation: StageEvaluation = vacuous
    ? {
        ...evaluated,
        verdict: 'pass',
        reason: `every device of the stage (${unchangedIds.size}) already runs the candidate's bytes: nothing to judge`,
      }
    : evaluated;

  const deadline = rollout.stageStartedAt + stageMaxDurationS(spec, stage) * 1000;
  const timedOut = evaluation.verdict === 'inconclusive' && window.to >= deadline;
  const action: TimeoutAction | null = timedOut ? spec.onTimeout : null;
  const failingWindows = evaluation.verdict === 'fail' ? rollout.failingWindows + 1 : 0;
  steps.push({
    type: 'verdict',
    stageIndex: rollout.stageIndex,
    stage: stage.name,
    evaluation,
    failingWindows,
    window,
    timedOut,
    action,
  });

  if (evaluation.verdict === 'fail' && failingWindows >= spec.gates.failingWindowsRequired) {
    // No new assignments in the pass that rolls back: they would race the revert.
    return [
      ...steps.filter((step) => step.type !== 'assign'),
      ...rollback(
        devices,
        'rolled_back',
        `stage ${stage.name} failed in ${failingWindows} consecutive windows: ${evaluation.reason}`,
      ),
    ];
  }
  const timeoutReason = `stage ${stage.name} reached its deadline (${stageMaxDurationS(spec, stage)} s) inconclusive: ${evaluation.reason}`;
  if (timedOut && action === 'abort') {
    return [...steps.filter((step) => step.type !== 'assign'), ...rollback(devices, 'aborted', timeoutReason)];
  }
  if (timedOut && action === 'pause') {
    steps.push({
      type: 'update',
      transition: 'paused',
      patch: {
        status: 'paused',
        reason: `${timeoutReason}; paused for the operator`,
        lastEvaluatedAt: window.to,
        failingWindows: 0,
      },
      reason: `${timeoutReason}; paused for the operator`,
    });
    return steps;
  }
  if (evaluation.verdict === 'pass' || (timedOut && action === 'promote')) {
    const why = evaluation.verdict === 'pass' ? `stage ${stage.name} passed` : `${timeoutReason}; promoted`;
    const next = rollout.stageIndex + 1;
    if (next >= spec.stages.length && waiting > 0) {
      // The last stage passes only once every device has been handed the model: completing
      // earlier would leave the devices that were waiting (jitter, maintenance window) behind.
      steps.push({
        type: 'update',
        transition: 'holding',
        patch: { lastEvaluatedAt: window.to, failingWindows: 0 },
        reason: `${why}; waiting for ${waiting} devices to be handed the model before completing`,
      });
      return steps;
    }
    if (next >= spec.stages.length) {
      steps.push({
        type: 'update',
        transition: 'completed',
        patch: { status: 'completed', lastEvaluatedAt: window.to, failingWindows: 0 },
        reason: `${why}; rollout complete`,
      });
    } else {
      steps.push({
        type: 'update',
        transition: 'advanced',
        patch: { stageIndex: next, stageStartedAt: now, failingWindows: 0, lastEvaluatedAt: null },
        reason: `${why}; entering ${spec.stages[next]?.name}`,
      });
    }
    return steps;
  }
  steps.push({
    type: 'update',
    transition: evaluation.verdict === 'fail' ? 'failing' : 'holding',
    patch: { lastEvaluatedAt: window.to, failingWindows },
    reason: evaluation.reason,
  });
  return steps;
}

export type GateFeasibility = { readonly gate: string; readonly feasible: boolean; readonly reason: string };

export type DryRunStage = {
  readonly name: string;
  readonly kind: string;
  readonly devices: number;
  readonly newDevices: number;
  readonly controlDevices: number;
  readonly maxDurationS: number;
  readonly gates: readonly GateFeasibility[];
};

export type DryRunPlan = {
  readonly targetDevices: number;
  readonly canary: readonly string[];
  readonly control: readonly string[];
  readonly unchangedDevices: number;
  readonly stages: readonly DryRunStage[];
  readonly warnings: readonly string[];
  /** Fastest possible time to 100% if every gate passes at its first chance. */
  readonly earliestDurationS: number;
  /** Bytes the devices will download (each device fetches the model once). */
  readonly bytesToDownload: number;
};

export type DryRunContext = {
  /** Median fps per device the feasibility figures assume. */
  readonly fps: number;
  /** Share of frames a shadow stage compares. */
  readonly shadowSampleShare: number;
  /** Target devices that already run the candidate's bytes. */
  readonly unchanged: ReadonlySet<string>;
};

/** What a rollout would do, without doing it, and whether each gate can collect its evidence. */
export function dryRun(
  spec: RolloutSpec,
  cohorts: Cohorts,
  modelSizeBytes: number,
  context: DryRunContext,
): DryRunPlan {
  let previous = 0;
  let earliest = 0;
  let downloads = 0;
  const warnings: string[] = [];
  const { evidence, gates } = spec;
  const windowS = gates.windowS;
  const perDeviceFrames = context.fps * windowS;
  if (context.unchanged.size > 0) {
    warnings.push(
      `${context.unchanged.size} of ${cohorts.order.length} target devices already run the candidate's bytes: ` +
        'a no-op for them (state unchanged, left out of the gates)',
    );
  }
  const stages = spec.stages.map((stage, index): DryRunStage => {
    const devices = stageSize(stage, cohorts);
    const newDevices = Math.max(0, devices - previous);
    const ids = cohorts.order.slice(0, devices);
    for (const id of cohorts.order.slice(previous, Math.max(previous, devices)))
      if (!context.unchanged.has(id)) downloads++;
    previous = Math.max(previous, devices);
    const judged = ids.filter((id) => !context.unchanged.has(id)).length;
    const control = controlAt(stage, cohorts).length;
    const maxDurationS = stageMaxDurationS(spec, stage);
    // The first window that can pass: its end at or after soak and jitter.
    const windows = Math.max(1, Math.ceil((evidence.soakS + spec.jitterS) / windowS));
    earliest += windows * windowS;
    const shadow = stage.kind === 'shadow';
    const lastLive = !shadow && control === 0;
    const framesPerDevice = shadow ? perDeviceFrames * context.shadowSampleShare : perDeviceFrames;
    const reportingNeeded = Math.min(
      judged,
      Math.max(evidence.minDevices, Math.ceil(evidence.minReportingShare * judged)),
    );
    const expectedFrames = Math.floor(framesPerDevice * reportingNeeded);
    const result: GateFeasibility[] = [];
    const feasible = (gate: string, ok: boolean, reason: string) => {
      result.push({ gate, feasible: ok, reason });
      if (!ok)
        warnings.push(`stage ${stage.name}: ${gate} cannot collect its evidence in one ${windowS} s window: ${reason}`);
    };
    const frameWord = shadow ? 'frames compared' : 'frames';
    const framesOk = expectedFrames >= evidence.minFrames;
    const deviceFramesOk = framesPerDevice >= evidence.minDeviceFrames;
    const framesReason =
      `${reportingNeeded} devices x ${context.fps} fps x ${windowS} s${shadow ? ` x ${context.shadowSampleShare} shadow share` : ''}` +
      ` = ${expectedFrames} ${frameWord} (need ${evidence.minFrames}); ${Math.floor(framesPerDevice)} per device (need ${evidence.minDeviceFrames})`;
    if (judged === 0) {
      result.push({
        gate: 'all',
        feasible: true,
        reason: "every device already runs the candidate's bytes: nothing to judge",
      });
    } else if (shadow) {
      for (const gate of ['shadow-precision', 'shadow-recall', 'latency-p95-ratio'])
        feasible(gate, framesOk && deviceFramesOk, framesReason);
    } else if (lastLive) {
      feasible(
        'error-rate',
        framesOk && deviceFramesOk,
        `${framesReason}; no control cohort left, absolute error rate only`,
      );
    } else {
      const controlOk = control > 0;
      const failOk = Math.min(judged, control) >= Math.min(evidence.failMinDevices, Math.max(2, control));
      for (const gate of ['error-rate', 'latency-p95-ratio', 'fps-ratio', 'detections-change']) {
        const reasons = [framesReason, `${control} control devices`];
        if (!failOk) reasons.push(`a fail needs ${evidence.failMinDevices} devices on each side`);
        feasible(gate, framesOk && deviceFramesOk && controlOk, reasons.join('; '));
      }
      result.push({
        gate: 'confidence-psi',
        feasible: true,
        reason: `needs ${evidence.minDetections} detections on each side; with fewer (a scene with nothing to detect) it is not-applicable and never blocks`,
      });
    }
    if (!shadow && !lastLive && index < spec.stages.length - 1 && control === 0) {
      warnings.push(`stage ${stage.name}: no control devices left to compare against`);
    }
    if (judged > 0 && judged < Math.min(evidence.minDevices, devices)) {
      warnings.push(`stage ${stage.name}: ${judged} devices to judge, fewer than minDevices ${evidence.minDevices}`);
    }
    if (windows * windowS > maxDurationS) {
      warnings.push(
        `stage ${stage.name}: its first passing window ends after ${windows * windowS} s, past its deadline ${maxDurationS} s`,
      );
    }
    return {
      name: stage.name,
      kind: stage.kind,
      devices,
      newDevices,
      controlDevices: control,
      maxDurationS,
      gates: result,
    };
  });
  const canaryJudged = cohorts.canary.filter((id) => !context.unchanged.has(id)).length;
  if (cohorts.canary.length > 0 && canaryJudged === 0) {
    warnings.push("every canary device already runs the candidate's bytes: the canary stages have nothing to judge");
  }
  if (
    cohorts.control.length === 0 &&
    spec.stages.some((stage) => stage.kind !== 'shadow' && stageSize(stage, cohorts) < cohorts.order.length)
  ) {
    warnings.push('the control cohort is empty: live stages cannot compare the candidate with anything');
  }
  return {
    targetDevices: cohorts.order.length,
    canary: cohorts.canary,
    control: cohorts.control,
    unchangedDevices: context.unchanged.size,
    stages,
    warnings,
    earliestDurationS: earliest,
    bytesToDownload: downloads * modelSizeBytes,
  };
}

export type { TargetDevice };
