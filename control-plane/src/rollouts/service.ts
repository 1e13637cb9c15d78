import { randomBytes } from 'node:crypto';
import {
  type CreateRolloutRequest,
  fail,
  LABEL_KEY_PATTERN,
  ok,
  type Result,
  type RolloutDeviceView,
  type RolloutDryRun,
  type RolloutEventView,
  RolloutSpec,
  type RolloutView,
  type SignedModelRelease,
  type VerdictView,
} from '@edgeloop/protocol';
import type {
  DatasetRepository,
  DeviceRepository,
  EvaluationRepository,
  MessageRepository,
  ModelRecord,
  ModelRepository,
  RolloutPatchRecord,
  RolloutRecord,
  RolloutRepository,
} from '../db/repositories.ts';
import type { EventBus } from '../events.ts';
import { toModelRef } from '../models/registry.ts';
import { type Cohorts, selectCohorts, stageSize, type TargetDevice } from './cohorts.ts';
import { reportedHardware, reportedModel, toAssignment } from './facts.ts';
import { dryRun } from './plan.ts';

/*
 * Rollouts as the API sees them: creation (validation, target selection, frozen cohorts, dry
 * run), operator actions, and views. The engine does the work; this only writes rows that it
 * then reconciles, so an action taken on any replica reaches the leader through the database.
 */

export type RolloutAction = 'pause' | 'resume' | 'abort' | 'promote';

export type RolloutServiceDeps = {
  readonly rollouts: RolloutRepository;
  readonly models: Pick<ModelRepository, 'get'>;
  readonly devices: Pick<DeviceRepository, 'snapshots'>;
  /** Recent telemetry, for the fps the dry run's feasibility figures assume. */
  readonly messages?: Pick<MessageRepository, 'telemetrySamples'>;
  readonly bus: EventBus;
  readonly clock: { now(): number };
  readonly newId?: () => string;
  /** Dataset versions: a validation spec must name one that exists (not checked without). */
  readonly datasets?: Pick<DatasetRepository, 'get'>;
  /** Evaluations: the dry run says whether the validation gate would pass, wait or fail. */
  readonly evaluations?: Pick<EvaluationRepository, 'list'>;
};

/** The fps a dry run assumes when the target devices have sent no telemetry recently. */
export const ASSUMED_FPS = 1;
/** Share of frames the agent's shadow comparison samples (agent/src/model-update/shadow.ts default). */
export const SHADOW_SAMPLE_SHARE = 0.2;
/** How far back the dry run looks for the target devices' fps. */
const FPS_LOOKBACK_MS = 10 * 60_000;

export type CreateOutcome =
  | { readonly kind: 'dry-run'; readonly plan: RolloutDryRun }
  | { readonly kind: 'created'; readonly rollout: RolloutView };

export type RolloutService = {
  create(
    input: CreateRolloutRequest,
    createdBy: string | null,
  ): Promise<Result<CreateOutcome, 'unprocessable' | 'conflict'>>;
  get(id: string): Promise<RolloutView | null>;
  list(query: {
    status?: string;
    modelId?: string;
    before?: { createdAt: number; id: string };
    limit: number;
  }): Promise<{ items: RolloutView[]; last: RolloutRecord | null; more: boolean }>;
  act(
    id: string,
    action: RolloutAction,
    reason: string | undefined,
    by: string | null,
  ): Promise<Result<RolloutView, 'not_found' | 'conflict'>>;
  events(query: { rolloutId: string; type?: string; afterId?: number; limit: number }): Promise<RolloutEventView[]>;
  devices(query: {
    rolloutId: string;
    state?: string;
    afterDeviceId?: string;
    limit: number;
  }): Promise<RolloutDeviceView[]>;
};

/** Statuses that hold their target devices (pending: waiting for its validation gate). */
const ACTIVE_STATUSES = new Set(['pending', 'running', 'paused']);

function toVerdictView(event: { at: number; stage: string | null; data: Readonly<Record<string, unknown>> }) {
  const data = event.data as Partial<Omit<VerdictView, 'at' | 'stage'>> & { stageIndex: number };
  const evidence = (data.evidence ?? {}) as Partial<VerdictView['evidence']>;
  // Verdicts recorded before windows and deadlines existed lack those fields: fill them honestly.
  return {
    at: event.at,
    stage: event.stage ?? '',
    stageIndex: data.stageIndex,
    verdict: data.verdict ?? 'inconclusive',
    reason: data.reason ?? '',
    failingWindows: data.failingWindows ?? 0,
    window: data.window ?? { index: 0, from: event.at, to: event.at },
    timedOut: data.timedOut ?? false,
    action: data.action ?? null,
    gates: (data.gates ?? []).map((gate) => ({
      ...gate,
      canary: typeof gate.canary === 'object' ? gate.canary : null,
      control: typeof gate.control === 'object' ? gate.control : null,
      comparison: gate.comparison ?? null,
      decision: gate.decision ?? '',
    })),
    evidence: {
      stageDevices: evidence.stageDevices ?? 0,
      reporting: evidence.reporting ?? 0,
      frames: evidence.frames ?? 0,
      soakedS: evidence.soakedS ?? 0,
      failed: evidence.failed ?? 0,
      controlDevices: evidence.controlDevices ?? 0,
      controlFrames: evidence.controlFrames ?? 0,
      unchanged: evidence.unchanged ?? 0,
    },
  } satisfies VerdictView;
}

/** Release hardware lists that rule out devices whose profile is known and not on them. */
function compatible(model: ModelRecord, hardware: string | null): boolean {
  if (hardware === null) return true;
  const release = (JSON.parse(model.signed) as SignedModelRelease).release;
  for (const list of [release.hardware, release.manifest.compatibleHardware]) {
    if (list.length > 0 && !list.includes(hardware)) return false;
  }
  return true;
}

export function createRolloutService(deps: RolloutServiceDeps): RolloutService {
  const { rollouts, clock, bus } = deps;
  const newId = deps.newId ?? (() => `r-${randomBytes(6).toString('hex')}`);
  /** Median over the target devices of their fps in the last minutes of telemetry. */
  const recentFps = async (ids: ReadonlySet<string>): Promise<{ value: number; source: 'telemetry' | 'assumed' }> => {
    if (!deps.messages) return { value: ASSUMED_FPS, source: 'assumed' };
    const now = clock.now();
    const perDevice = new Map<string, { frames: number; seconds: number }>();
    for (const sample of await deps.messages.telemetrySamples({ from: now - FPS_LOOKBACK_MS, to: now })) {
      if (!ids.has(sample.deviceId) || sample.windowS <= 0) continue;
      const acc = perDevice.get(sample.deviceId) ?? { frames: 0, seconds: 0 };
      acc.frames += sample.frames;
      acc.seconds += sample.windowS;
      perDevice.set(sample.deviceId, acc);
    }
    const values = [...perDevice.values()].map((acc) => acc.frames / acc.seconds).sort((a, b) => a - b);
    if (values.length === 0) return { value: ASSUMED_FPS, source: 'assumed' };
    const mid = Math.floor(values.length / 2);
    const value =
      values.length % 2 ? (values[mid] as number) : ((values[mid - 1] as number) + (values[mid] as number)) / 2;
    return { value: Math.round(value * 100) / 100, source: 'telemetry' };
  };
  // Creations are serialised within the process so two requests cannot claim the same devices.
  let creating: Promise<unknown> = Promise.resolve();

  const view = async (record: RolloutRecord): Promise<RolloutView> => {
    const spec = RolloutSpec.parse(record.spec);
    const cohorts = record.cohorts as Cohorts;
    const model = await deps.models.get(record.modelId);
    const [counts, verdict] = await Promise.all([
      rollouts.assignmentCounts(record.id),
      rollouts.lastEvent(record.id, 'verdict'),
    ]);
    const [name = record.modelId, version = ''] = record.modelId.split('@');
    return {
      id: record.id,
      modelId: record.modelId,
      model: model ? toModelRef(model) : { id: record.modelId, name, version, sha256: '0'.repeat(64) },
      spec,
      status: record.status as RolloutView['status'],
      stageIndex: record.stageIndex,
      stage: spec.stages[record.stageIndex]?.name ?? null,
      stageStartedAt: record.stageStartedAt,
      failingWindows: record.failingWindows,
      lastEvaluatedAt: record.lastEvaluatedAt,
      reason: record.reason,
      cohorts: { canary: [...cohorts.canary], control: [...cohorts.control], targetDevices: cohorts.order.length },
      counts,
      lastVerdict: verdict ? toVerdictView(verdict) : null,
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
      createdBy: record.createdBy,
    };
  };

  const create = async (
    input: CreateRolloutRequest,
    createdBy: string | null,
  ): Promise<Result<CreateOutcome, 'unprocessable' | 'conflict'>> => {
    const { dryRun: isDryRun, ...specInput } = input;
    const spec = RolloutSpec.parse(specInput);
    const badKeys = Object.keys(spec.selector.labels).filter((key) => !LABEL_KEY_PATTERN.test(key));
    if (badKeys.length > 0)
      return fail('unprocessable', `selector label keys are not label keys: ${badKeys.join(', ')}`);
    const percentless = spec.stages.filter((stage) => stage.kind === 'percent' && stage.percent === undefined);
    if (percentless.length > 0) {
      return fail('unprocessable', `percent stages need a percent: ${percentless.map((s) => s.name).join(', ')}`);
    }
    const model = await deps.models.get(spec.modelId);
    if (!model) return fail('unprocessable', `no model ${spec.modelId} is registered`);
    if (spec.validation && deps.datasets && !(await deps.datasets.get(spec.validation.dataset))) {
      return fail('unprocessable', `validation names dataset version ${spec.validation.dataset}, which does not exist`);
    }

    const matched = await deps.devices.snapshots({ labels: Object.entries(spec.selector.labels) });
    if (matched.length === 0) return fail('unprocessable', 'the selector matches no enrolled device');
    const targets: TargetDevice[] = [];
    let incompatible = 0;
    for (const device of matched) {
      const hardware = reportedHardware(device.reported) ?? device.labels.hardware ?? null;
      if (!compatible(model, hardware)) {
        incompatible++;
        continue;
      }
      targets.push({ id: device.id, hardware, site: device.labels[spec.canary.siteLabel] ?? null });
    }
    if (targets.length === 0) {
      return fail('unprocessable', `none of the ${matched.length} matching devices has hardware the release allows`);
    }

    const busy = new Map<string, string>();
    for (const other of await rollouts.listWork()) {
      if (!ACTIVE_STATUSES.has(other.status)) continue;
      for (const id of (other.cohorts as Cohorts).order) busy.set(id, other.id);
    }
    const taken = targets.filter((target) => busy.has(target.id));
    if (taken.length > 0) {
      const examples = taken
        .slice(0, 5)
        .map((target) => `${target.id} (${busy.get(target.id)})`)
        .join(', ');
      return fail(
        'conflict',
        `${taken.length} target devices are already in a running or paused rollout: ${examples}${taken.length > 5 ? ', ...' : ''}`,
      );
    }

    const id = newId();
    const cohorts = selectCohorts(id, targets, spec.canary);
    if (isDryRun) {
      const targetIds = new Set(cohorts.order);
      const unchanged = new Set(
        matched
          .filter(
            (device) => targetIds.has(device.id) && reportedModel(device.reported).active?.sha256 === model.sha256,
          )
          .map((device) => device.id),
      );
      const fps = await recentFps(targetIds);
      const planned = dryRun(spec, cohorts, model.sizeBytes, {
        fps: fps.value,
        shadowSampleShare: SHADOW_SAMPLE_SHARE,
        unchanged,
      });
      const warnings = [...planned.warnings];
      if (spec.validation && deps.evaluations) {
        const [evaluation] = await deps.evaluations.list({
          modelId: model.id,
          datasetId: spec.validation.dataset,
          withBaseline: true,
          limit: 1,
        });
        if (!evaluation) {
          warnings.unshift(
            `validation: no evaluation of ${model.id} on ${spec.validation.dataset} with a champion beside it yet: ` +
              'the rollout will stay pending until one is posted (edgeloop-agent eval --baseline ...)',
          );
        }
      }
      if (fps.source === 'assumed') {
        warnings.unshift(
          `no recent telemetry from the target devices: the feasibility figures assume ${ASSUMED_FPS} fps per device`,
        );
      }
      return ok({
        kind: 'dry-run',
        plan: {
          dryRun: true,
          modelId: model.id,
          targetDevices: planned.targetDevices,
          incompatibleDevices: incompatible,
          unchangedDevices: planned.unchangedDevices,
          canary: [...planned.canary],
          control: [...planned.control],
          fps,
          shadowSampleShare: SHADOW_SAMPLE_SHARE,
          stages: planned.stages.map((stage) => ({ ...stage, gates: stage.gates.map((gate) => ({ ...gate })) })),
          warnings,
          earliestDurationS: planned.earliestDurationS,
          bytesToDownload: planned.bytesToDownload,
        },
      });
    }
    const now = clock.now();
    const record: RolloutRecord = {
      id,
      modelId: model.id,
      spec,
      status: spec.validation ? 'pending' : 'running',
      stageIndex: 0,
      stageStartedAt: now,
      failingWindows: 0,
      lastEvaluatedAt: null,
      cohorts,
      reason: null,
      version: 1,
      createdAt: now,
      updatedAt: now,
      createdBy,
    };
    const data = {
      modelId: model.id,
      targetDevices: cohorts.order.length,
      incompatibleDevices: incompatible,
      canary: [...cohorts.canary],
      control: [...cohorts.control],
      stages: spec.stages.map((stage) => stage.name),
      by: createdBy,
    };
    await rollouts.create(record, {
      rolloutId: id,
      at: now,
      type: 'created',
      stage: spec.stages[0]?.name ?? null,
      data,
    });
    bus.publish('rollout.created', {
      rolloutId: id,
      status: record.status,
      stage: spec.stages[0]?.name ?? null,
      stageIndex: 0,
      reason: 'created',
      by: createdBy,
      modelId: model.id,
      targetDevices: cohorts.order.length,
      canary: [...cohorts.canary],
      control: [...cohorts.control],
    });
    return ok({ kind: 'created', rollout: await view(record) });
  };

  const act = async (
    id: string,
    action: RolloutAction,
    reason: string | undefined,
    by: string | null,
  ): Promise<Result<RolloutView, 'not_found' | 'conflict'>> => {
    // The engine bumps the row's version as it works; retry a few times on a lost race.
    for (let attempt = 0; attempt < 5; attempt++) {
      const record = await rollouts.get(id);
      if (!record) return fail('not_found', `no rollout ${id}`);
      const spec = RolloutSpec.parse(record.spec);
      const now = clock.now();
      let patch: RolloutPatchRecord;
      let type: 'paused' | 'resumed' | 'aborted' | 'promoted';
      let why: string;
      switch (action) {
        case 'pause':
          if (record.status !== 'running') {
            return fail(
              'conflict',
              `rollout ${id} is ${record.status}, not running${record.status === 'pending' ? ' (waiting for its validation gate; abort it to give up)' : ''}`,
            );
          }
          why = reason ?? 'paused by an operator';
          patch = { status: 'paused', reason: why };
          type = 'paused';
          break;
        case 'resume':
          if (record.status !== 'paused') return fail('conflict', `rollout ${id} is ${record.status}, not paused`);
          why = reason ?? 'resumed by an operator';
          // The stage clock restarts: soak, windows and deadline count from the resume.
          patch = { status: 'running', reason: null, failingWindows: 0, lastEvaluatedAt: null, stageStartedAt: now };
          type = 'resumed';
          break;
        case 'abort':
          if (!ACTIVE_STATUSES.has(record.status)) {
            return fail(
              'conflict',
              `rollout ${id} is ${record.status}; only a pending, running or paused rollout can be aborted`,
            );
          }
          why = `aborted by an operator${reason ? `: ${reason}` : ''}`;
          patch = { status: 'aborted', reason: why };
          type = 'aborted';
          break;
        case 'promote': {
          if (record.status === 'pending') {
            return fail(
              'conflict',
              `rollout ${id} is pending: its validation gate decides (post an evaluation, or abort it)`,
            );
          }
          if (!ACTIVE_STATUSES.has(record.status)) {
            return fail(
              'conflict',
              `rollout ${id} is ${record.status}; only a running or paused rollout can be promoted`,
            );
          }
          const next = record.stageIndex + 1;
          const from = spec.stages[record.stageIndex]?.name ?? 'the last stage';
          const current = spec.stages[record.stageIndex];
          if (next >= spec.stages.length && current) {
            // Completing leaves devices not yet handed the model where they are: refuse until then.
            const cohorts = record.cohorts as Cohorts;
            const mode = current.kind === 'shadow' ? 'shadow' : 'active';
            const assigned = new Map((await rollouts.assignments(id)).map((row) => [row.deviceId, row]));
            const waiting = cohorts.order.slice(0, stageSize(current, cohorts)).filter((deviceId) => {
              const row = assigned.get(deviceId);
              return (
                !row ||
                (row.mode === 'shadow' && mode === 'active' && row.state !== 'failed' && row.state !== 'unchanged')
              );
            }).length;
            if (waiting > 0) {
              return fail(
                'conflict',
                `${from} is the last stage and ${waiting} of its devices have not been handed the model yet ` +
                  '(jitter or maintenance window); promote again once they have',
              );
            }
          }
          why = `${from} promoted by an operator${reason ? `: ${reason}` : ''}`;
          patch =
            next >= spec.stages.length
              ? { status: 'completed', stageIndex: next, stageStartedAt: now, failingWindows: 0, lastEvaluatedAt: null }
              : { stageIndex: next, stageStartedAt: now, failingWindows: 0, lastEvaluatedAt: null };
          type = 'promoted';
          break;
        }
      }
      const stageIndex = patch.stageIndex ?? record.stageIndex;
      const updated = await rollouts.update(id, record.version, patch, now, [
        {
          rolloutId: id,
          at: now,
          type,
          stage: spec.stages[record.stageIndex]?.name ?? null,
          data: { reason: why, by, from: record.stageIndex, to: stageIndex, status: patch.status ?? record.status },
        },
      ]);
      if (!updated) continue;
      bus.publish(`rollout.${type}`, {
        rolloutId: id,
        status: updated.status,
        stage: spec.stages[updated.stageIndex]?.name ?? null,
        stageIndex: updated.stageIndex,
        reason: why,
        by,
      });
      return ok(await view(updated));
    }
    return fail('conflict', `rollout ${id} keeps changing; try again`);
  };

  return {
    create(input, createdBy) {
      const result = creating.then(() => create(input, createdBy));
      creating = result.catch(() => undefined);
      return result;
    },

    async get(id) {
      const record = await rollouts.get(id);
      return record ? view(record) : null;
    },

    async list(query) {
      const rows = await rollouts.list({ ...query, limit: query.limit + 1 });
      const page = rows.slice(0, query.limit);
      return { items: await Promise.all(page.map(view)), last: page.at(-1) ?? null, more: rows.length > query.limit };
    },

    act,

    async events(query) {
      const rows = await rollouts.listEvents(query);
      return rows.map((row) => ({ ...row, data: row.data as RolloutEventView['data'] }));
    },

    async devices(query) {
      const rows = await rollouts.listAssignments(query);
      const snapshots = new Map(
        (await deps.devices.snapshots({ ids: rows.map((row) => row.deviceId) })).map((s) => [s.id, s]),
      );
      return rows.map((row) => {
        const assignment = toAssignment(row);
        return {
          deviceId: row.deviceId,
          mode: assignment.mode,
          stageIndex: row.stageIndex,
          state: assignment.state,
          reason: row.reason,
          previous: assignment.previous,
          assignedAt: row.assignedAt,
          updatedAt: row.updatedAt,
          update: reportedModel(snapshots.get(row.deviceId)?.reported ?? null).update,
        };
      });
    },
  };
}
