import { describe, expect, it } from 'vitest';
import type { AssignmentRecord, DeviceSnapshot } from '../db/repositories.ts';
import { selectCohorts } from './cohorts.ts';
import {
  buildDeviceFacts,
  type DesiredModelFact,
  desiredPrevious,
  previousModel,
  repairSteps,
  reportedModel,
} from './facts.ts';
import type { AssignmentState, DeviceFacts, RolloutState } from './plan.ts';
import { RolloutSpec } from './spec.ts';

const OLD = { id: 'det@1.0.0', name: 'det', version: '1.0.0', sha256: 'a'.repeat(64) };
const NEW = { id: 'det@2.0.0', name: 'det', version: '2.0.0', sha256: 'b'.repeat(64) };

const rollout: RolloutState = {
  id: 'r1',
  spec: RolloutSpec.parse({ modelId: NEW.id }),
  model: NEW,
  modelSizeBytes: 10,
  status: 'rolled_back',
  stageIndex: 1,
  stageStartedAt: 0,
  failingWindows: 0,
  lastEvaluatedAt: null,
  cohorts: selectCohorts('r1', [], RolloutSpec.parse({ modelId: NEW.id }).canary),
  reason: 'stage canary failed',
};

function facts(id: string, state: AssignmentState | null, mode: 'shadow' | 'active' = 'active'): DeviceFacts {
  return {
    id,
    online: true,
    activeSha256: OLD.sha256,
    shadowSha256: null,
    update: null,
    assignment: state ? { mode, stageIndex: 1, state, previous: OLD, assignedAt: 0 } : null,
  };
}

describe('reportedModel and previousModel', () => {
  it('reads the model section of a report defensively', () => {
    const reported = {
      model: { active: NEW, previous: OLD, update: { rolloutId: 'r1', target: NEW, state: 'reverted', reason: 'x' } },
    };
    expect(reportedModel(reported)).toEqual({
      active: NEW,
      previous: OLD,
      shadow: null,
      update: { rolloutId: 'r1', state: 'reverted', reason: 'x' },
    });
    expect(reportedModel(null)).toEqual({ active: null, previous: null, shadow: null, update: null });
    expect(reportedModel({ model: { active: { id: 'junk' }, update: { state: 7 } } }).active).toBeNull();
  });

  it('remembers the active model, or the one before when the device already runs the candidate', () => {
    expect(previousModel({ model: { active: OLD } }, NEW.sha256)).toEqual(OLD);
    expect(previousModel({ model: { active: NEW, previous: OLD } }, NEW.sha256)).toEqual(OLD);
    expect(previousModel({ model: { active: NEW, previous: NEW } }, NEW.sha256)).toBeNull();
    expect(previousModel(null, NEW.sha256)).toBeNull();
  });
});

describe('buildDeviceFacts', () => {
  it('knows revoked or unknown devices only as offline with nothing reported', () => {
    const snapshot: DeviceSnapshot = {
      id: 'cam-1',
      labels: {},
      status: 'online',
      reported: { model: { active: OLD, shadow: NEW } },
      desired: null,
    };
    const assignment: AssignmentRecord = {
      rolloutId: 'r1',
      deviceId: 'cam-2',
      mode: 'shadow',
      stageIndex: 0,
      state: 'assigned',
      previous: OLD,
      assignedAt: 5,
      updatedAt: 5,
      reason: null,
    };
    const built = buildDeviceFacts(['cam-1'], new Map([['cam-1', snapshot]]), new Map([['cam-2', assignment]]));
    expect(built.get('cam-1')).toMatchObject({ online: true, activeSha256: OLD.sha256, shadowSha256: NEW.sha256 });
    expect(built.get('cam-2')).toMatchObject({
      online: false,
      activeSha256: null,
      assignment: { mode: 'shadow', state: 'assigned', previous: OLD },
    });
  });
});

describe('reported update state', () => {
  it('counts only once the device applied its latest desired state', () => {
    const failed = { rolloutId: 'r1', target: NEW, state: 'reverted', reason: 'cancelled' };
    const snapshot = (applied: number, wanted: number): DeviceSnapshot => ({
      id: 'cam-1',
      labels: {},
      status: 'online',
      reported: { desiredVersion: applied, model: { active: OLD, update: failed } },
      desired: { version: wanted, issuedAt: 0 },
    });
    const update = (s: DeviceSnapshot) =>
      buildDeviceFacts(['cam-1'], new Map([['cam-1', s]]), new Map()).get('cam-1')?.update;
    // The shadow update of version 4 was cancelled when version 5 made the model active.
    expect(update(snapshot(4, 5))).toBeNull();
    expect(update(snapshot(5, 5))).toEqual({ rolloutId: 'r1', state: 'reverted', reason: 'cancelled' });
  });
});

describe('repairSteps', () => {
  const desired = (entries: [string, DesiredModelFact][]) => new Map(entries);

  it('re-assigns devices whose desired state lost the candidate, and re-reverts those that still have it', () => {
    const devices = new Map([
      ['a', facts('a', 'assigned')],
      ['b', facts('b', 'assigned', 'shadow')],
      ['c', facts('c', 'assigned')],
      ['d', facts('d', 'reverting')],
      ['e', facts('e', 'reverting')],
      ['f', facts('f', 'active')],
    ]);
    const steps = repairSteps(
      rollout,
      devices,
      desired([
        ['a', null],
        ['b', { rolloutId: 'r1', sha256: NEW.sha256, mode: 'active' }],
        ['c', { rolloutId: 'r1', sha256: NEW.sha256, mode: 'active' }],
        ['d', { rolloutId: 'r1', sha256: NEW.sha256, mode: 'active' }],
        ['e', { rolloutId: 'r1', sha256: OLD.sha256, mode: 'active' }],
        ['f', null],
      ]),
      [],
    );
    expect(steps).toEqual([
      { type: 'assign', deviceIds: ['a'], mode: 'active', stageIndex: 1 },
      { type: 'assign', deviceIds: ['b'], mode: 'shadow', stageIndex: 1 },
      { type: 'revert', deviceIds: ['d'], reason: 'stage canary failed' },
    ]);
  });

  it('leaves alone devices the planner already acts on, and devices whose desired state is unknown', () => {
    const devices = new Map([
      ['a', facts('a', 'assigned')],
      ['b', facts('b', 'assigned')],
    ]);
    const steps = repairSteps(rollout, devices, desired([['a', null]]), [
      { type: 'mark', deviceId: 'a', state: 'active' },
    ]);
    expect(steps).toEqual([]);
  });
});

describe('desiredPrevious', () => {
  const snapshot = (model: typeof OLD | null) =>
    ({
      id: 'cam-1',
      labels: {},
      status: 'online',
      reported: null,
      desired: model
        ? { version: 3, issuedAt: 0, model: { rolloutId: 'r0', model, mode: 'active', url: '/x', signed: {} } }
        : null,
    }) as unknown as DeviceSnapshot;

  it('falls back to the model desired state names when the device reported none, unless it is the candidate', () => {
    expect(previousModel(null, NEW.sha256)).toBeNull();
    expect(desiredPrevious(snapshot(OLD), NEW.sha256)).toEqual(OLD);
    expect(desiredPrevious(snapshot(NEW), NEW.sha256)).toBeNull();
    expect(desiredPrevious(snapshot(null), NEW.sha256)).toBeNull();
    expect(desiredPrevious(undefined, NEW.sha256)).toBeNull();
  });
});
