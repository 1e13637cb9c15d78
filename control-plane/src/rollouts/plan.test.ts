import { describe, expect, it } from 'vitest';
import { selectCohorts } from './cohorts.ts';
import type { DeviceWindow } from './gates.ts';
import { type DeviceFacts, dryRun, plan, type RolloutState, type Step } from './plan.ts';
import { RolloutSpec } from './spec.ts';

const OLD = { id: 'det@1.0.0', name: 'det', version: '1.0.0', sha256: 'a'.repeat(64) };
const NEW = { id: 'det@2.0.0', name: 'det', version: '2.0.0', sha256: 'b'.repeat(64) };
const hist = (peak: number) => Array.from({ length: 20 }, (_, bin) => (bin === peak ? 80 : 5));

const fleet = Array.from({ length: 100 }, (_, i) => ({
  id: `cam-${String(i).padStart(3, '0')}`,
  hardware: ['orin-nano', 'rpi5'][i % 2] ?? null,
  site: ['lyon', 'oslo'][Math.floor(i / 2) % 2] ?? null,
}));

type Behaviour = { latency: number; detections: number; revert?: boolean; silent?: Set<string> };

/** A tiny in-memory world: applies steps the way the executors do and lets devices obey. */
function world(specInput: Parameters<typeof RolloutSpec.parse>[0], behaviour: Behaviour) {
  const spec = RolloutSpec.parse(specInput);
  let rollout: RolloutState = {
    id: 'r1',
    spec,
    model: NEW,
    modelSizeBytes: 1000,
    status: 'running',
    stageIndex: 0,
    stageStartedAt: 0,
    failingWindows: 0,
    lastEvaluatedAt: null,
    cohorts: selectCohorts('r1', fleet, spec.canary),
    reason: null,
  };
  const devices = new Map<string, DeviceFacts>(
    fleet.map((d) => [
      d.id,
      { id: d.id, online: true, activeSha256: OLD.sha256, shadowSha256: null, update: null, assignment: null },
    ]),
  );
  const log: Step[] = [];
  const step = (now: number) => {
    // devices obey desired state, then report a window of metrics
    for (const [id, device] of devices) {
      const a = device.assignment;
      if (!a) continue;
      if (a.state === 'reverting') devices.set(id, { ...device, activeSha256: OLD.sha256, shadowSha256: null });
      else if (a.state === 'assigned' && behaviour.revert)
        devices.set(id, { ...device, update: { rolloutId: 'r1', state: 'reverted', reason: 'crash on load' } });
      else if (a.state === 'assigned' && a.mode === 'active')
        devices.set(id, { ...device, activeSha256: NEW.sha256, shadowSha256: null });
      else if (a.state === 'assigned' && a.mode === 'shadow') devices.set(id, { ...device, shadowSha256: NEW.sha256 });
    }
    const windows = new Map<string, DeviceWindow[]>();
    for (const [id, device] of devices) {
      if (behaviour.silent?.has(id)) continue;
      const onNew = device.activeSha256 === NEW.sha256;
      const w: DeviceWindow = {
        deviceId: id,
        modelSha256: device.activeSha256 ?? '',
        frames: 1000,
        errors: 0,
        seconds: onNew ? 100 * (behaviour.latency / 20) : 100,
        latencyP95: onNew ? behaviour.latency : 20,
        detections: onNew ? behaviour.detections : 3000,
        confidence: hist(15),
        shadow:
          device.shadowSha256 === NEW.sha256
            ? {
                candidateSha256: NEW.sha256,
                compared: 500,
                precision: 0.95,
                recall: behaviour.detections / 3000,
                candidateLatencyP95: behaviour.latency,
              }
            : null,
      };
      windows.set(id, [w]);
    }
    const steps = plan({ rollout, devices, windows, now });
    log.push(...steps);
    for (const s of steps) {
      if (s.type === 'update') rollout = { ...rollout, ...s.patch };
      if (s.type === 'assign')
        for (const id of s.deviceIds) {
          const d = devices.get(id)!;
          devices.set(id, {
            ...d,
            assignment: { mode: s.mode, stageIndex: s.stageIndex, state: 'assigned', previous: OLD, assignedAt: now },
          });
        }
      if (s.type === 'unchanged')
        for (const id of s.deviceIds) {
          const d = devices.get(id)!;
          devices.set(id, {
            ...d,
            assignment: { mode: s.mode, stageIndex: s.stageIndex, state: 'unchanged', previous: NEW, assignedAt: now },
          });
        }
      if (s.type === 'mark' || s.type === 'revert')
        for (const id of s.type === 'mark' ? [s.deviceId] : s.deviceIds) {
          const d = devices.get(id)!;
          devices.set(id, { ...d, assignment: { ...d.assignment!, state: s.type === 'mark' ? s.state : 'reverting' } });
        }
    }
    return steps;
  };
  return {
    step,
    devices,
    log,
    get rollout() {
      return rollout;
    },
  };
}

const fast = { modelId: NEW.id, evidence: { soakS: 20, minFrames: 100 }, gates: { windowS: 30 } };

describe('plan', () => {
  it('takes a good model through every stage to 100%', () => {
    const w = world(fast, { latency: 20, detections: 3000 });
    for (let t = 0; t <= 1000_000 && w.rollout.status === 'running'; t += 10_000) w.step(t);
    expect(w.rollout.status).toBe('completed');
    const onNew = [...w.devices.values()].filter((d) => d.activeSha256 === NEW.sha256).length;
    expect(onNew).toBe(100);
    const transitions = w.log.flatMap((s) => (s.type === 'update' ? [s.transition] : []));
    expect(transitions.filter((t) => t === 'advanced')).toHaveLength(5);
  });

  it('rolls a bad model back before it passes the canary stage, and every device returns', () => {
    const w = world(fast, { latency: 60, detections: 1200 });
    let maxOnNew = 0;
    for (let t = 0; t <= 600_000; t += 10_000) {
      w.step(t);
      maxOnNew = Math.max(maxOnNew, [...w.devices.values()].filter((d) => d.assignment).length);
    }
    expect(w.rollout.status).toBe('rolled_back');
    expect(maxOnNew).toBeLessThanOrEqual(w.rollout.cohorts.canary.length);
    expect([...w.devices.values()].every((d) => d.activeSha256 === OLD.sha256 && d.shadowSha256 === null)).toBe(true);
    expect(
      [...w.devices.values()].filter((d) => d.assignment).every((d) => d.assignment?.state === 'rolled_back'),
    ).toBe(true);
  });

  it('rolls back a model that devices revert locally', () => {
    const w = world(
      {
        ...fast,
        stages: [
          { name: 'canary', kind: 'canary' },
          { name: 'all', kind: 'percent', percent: 100 },
        ],
      },
      { latency: 20, detections: 3000, revert: true },
    );
    for (let t = 0; t <= 200_000; t += 10_000) w.step(t);
    expect(w.rollout.status).toBe('rolled_back');
    expect(w.rollout.reason).toMatch(/failed/);
  });

  it('holds as inconclusive while 30% of a stage is silent', () => {
    const canarySilent = (spec: RolloutState['cohorts']) =>
      new Set(spec.canary.slice(0, Math.ceil(spec.canary.length * 0.3)));
    const probe = world(fast, { latency: 20, detections: 3000 });
    const silent = canarySilent(probe.rollout.cohorts);
    const w = world(
      {
        ...fast,
        stages: [
          { name: 'canary', kind: 'canary' },
          { name: 'all', kind: 'percent', percent: 100 },
        ],
      },
      { latency: 20, detections: 3000, silent },
    );
    for (let t = 0; t <= 300_000; t += 10_000) w.step(t);
    expect(w.rollout.status).toBe('running');
    expect(w.rollout.stageIndex).toBe(0);
    const last = w.log.filter((s) => s.type === 'verdict').at(-1);
    expect(last?.type === 'verdict' && last.evaluation.verdict).toBe('inconclusive');
  });

  it('completes only once every device of the last stage was handed the model (jitter longer than the soak)', () => {
    const w = world(
      {
        ...fast,
        stages: [{ name: 'all', kind: 'percent', percent: 100 }],
        evidence: { soakS: 20, minFrames: 100, minReportingShare: 0.5 },
        jitterS: 200,
      },
      { latency: 20, detections: 3000 },
    );
    let completedWithUnassigned = false;
    for (let t = 0; t <= 400_000 && w.rollout.status === 'running'; t += 10_000) {
      w.step(t);
      const unassigned = [...w.devices.values()].filter((d) => !d.assignment).length;
      const status: string = w.rollout.status;
      if (status === 'completed' && unassigned > 0) completedWithUnassigned = true;
    }
    expect(w.rollout.status).toBe('completed');
    expect(completedWithUnassigned).toBe(false);
    expect(w.log.some((s) => s.type === 'update' && /waiting for \d+ devices/.test(s.reason))).toBe(true);
  });

  it('is pure: the same input plans the same steps', () => {
    const a = world(fast, { latency: 20, detections: 3000 });
    const b = world(fast, { latency: 20, detections: 3000 });
    expect(a.step(0)).toEqual(b.step(0));
  });

  it('dry-runs devices per stage, earliest duration and bytes', () => {
    const spec = RolloutSpec.parse({ ...fast, jitterS: 5 });
    const cohorts = selectCohorts('r1', fleet, spec.canary);
    const result = dryRun(spec, cohorts, 5_000_000, { fps: 10, shadowSampleShare: 0.2, unchanged: new Set() });
    expect(result.stages.map((s) => s.devices)).toEqual([4, 4, 4, 10, 50, 100]);
    expect(result.stages.reduce((sum, s) => sum + s.newDevices, 0)).toBe(100);
    expect(result.bytesToDownload).toBe(500_000_000);
    // Each stage passes at the first window close after soak (20 s) and jitter (5 s): one 30 s window.
    expect(result.earliestDurationS).toBe(6 * 30);
    expect(result.warnings).toEqual([]);
    expect(result.stages.every((s) => s.gates.every((g) => g.feasible))).toBe(true);
  });
});

describe('plan, rolling back', () => {
  it('hands out no new assignments in the pass that rolls back', () => {
    const spec = RolloutSpec.parse({
      modelId: NEW.id,
      stages: [{ name: 'canary', kind: 'canary' }],
      canary: { perGroup: 2, minSize: 8 },
      evidence: { minDevices: 3, soakS: 0, minFrames: 10, failMinS: 0 },
      gates: { windowS: 20, failingWindowsRequired: 2 },
    });
    const cohorts = selectCohorts('r9', fleet, spec.canary);
    const assigned = new Set(cohorts.canary.slice(0, cohorts.canary.length - 2));
    const devices = new Map<string, DeviceFacts>(
      fleet.map((d) => [
        d.id,
        {
          id: d.id,
          online: true,
          activeSha256: assigned.has(d.id) ? NEW.sha256 : OLD.sha256,
          shadowSha256: null,
          update: null,
          assignment: assigned.has(d.id)
            ? { mode: 'active', stageIndex: 0, state: 'active', previous: OLD, assignedAt: 0 }
            : null,
        },
      ]),
    );
    const window = (id: string, onNew: boolean): DeviceWindow => ({
      deviceId: id,
      modelSha256: onNew ? NEW.sha256 : OLD.sha256,
      frames: 1000,
      errors: 0,
      seconds: 100,
      latencyP95: onNew ? 80 : 20,
      detections: onNew ? 900 : 3000,
      confidence: hist(15),
      shadow: null,
    });
    const windows = new Map(fleet.map((d) => [d.id, [window(d.id, assigned.has(d.id))]]));
    const rollout: RolloutState = {
      id: 'r9',
      spec,
      model: NEW,
      modelSizeBytes: 1,
      status: 'running',
      stageIndex: 0,
      stageStartedAt: 0,
      failingWindows: 1,
      lastEvaluatedAt: null,
      cohorts,
      reason: null,
    };
    const steps = plan({ rollout, devices, windows, now: 60_000 });
    expect(steps.some((step) => step.type === 'assign')).toBe(false);
    expect(steps.find((step) => step.type === 'update')).toMatchObject({ patch: { status: 'rolled_back' } });
    const revert = steps.find((step) => step.type === 'revert');
    expect(revert?.type === 'revert' && [...revert.deviceIds].sort()).toEqual([...assigned].sort());
  });
});

describe('plan, windows and deadlines', () => {
  const twoStages = [
    { name: 'canary', kind: 'canary' as const },
    { name: 'all', kind: 'percent' as const, percent: 100 },
  ];
  const verdicts = (log: readonly Step[]) => log.flatMap((s) => (s.type === 'verdict' ? [s] : []));

  it('judges consecutive, non-overlapping windows once each: N failing windows are N distinct windows', () => {
    const w = world({ ...fast, stages: twoStages }, { latency: 60, detections: 1200 });
    for (let t = 0; t <= 300_000 && w.rollout.status === 'running'; t += 5_000) w.step(t);
    expect(w.rollout.status).toBe('rolled_back');
    const seen = verdicts(w.log);
    expect(seen.map((v) => v.window.index)).toEqual(seen.map((_, i) => i));
    for (const [i, v] of seen.entries()) {
      expect(v.window).toEqual({ index: i, from: i * 30_000, to: (i + 1) * 30_000 });
    }
    const failing = seen.filter((v) => v.evaluation.verdict === 'fail');
    expect(failing.map((v) => v.failingWindows)).toEqual([1, 2]);
    expect(new Set(failing.map((v) => v.window.index)).size).toBe(2);
    // The first window ends 30 s in, before failMinS (60 s): no fail on it.
    expect(seen[0]?.evaluation.verdict).toBe('inconclusive');
    expect(w.rollout.reason).toMatch(/failed in 2 consecutive windows/);
  });

  it('judges no window before it closes', () => {
    const w = world({ ...fast, stages: twoStages }, { latency: 20, detections: 3000 });
    for (let t = 0; t < 30_000; t += 5_000) w.step(t);
    expect(verdicts(w.log)).toEqual([]);
  });

  const unreachable = {
    ...fast,
    stages: [
      { name: 'canary', kind: 'canary' as const, maxDurationS: 120 },
      { name: 'all', kind: 'percent' as const, percent: 100 },
    ],
    evidence: { soakS: 20, minFrames: 1_000_000 },
  };

  it('pauses a stage that reaches its deadline inconclusive, recording the timeout in the verdict', () => {
    const w = world(unreachable, { latency: 20, detections: 3000 });
    for (let t = 0; t <= 400_000 && w.rollout.status === 'running'; t += 5_000) w.step(t);
    expect(w.rollout.status).toBe('paused');
    expect(w.rollout.reason).toMatch(
      /stage canary reached its deadline \(120 s\) inconclusive: .*frames, need 1000000/,
    );
    const last = verdicts(w.log).at(-1);
    expect(last).toMatchObject({ timedOut: true, action: 'pause', window: { index: 3, to: 120_000 } });
    expect(verdicts(w.log).filter((v) => v.timedOut)).toHaveLength(1);
    expect(w.log.some((s) => s.type === 'update' && s.transition === 'paused')).toBe(true);
  });

  it('aborts or promotes at the deadline when the spec says so', () => {
    const aborting = world({ ...unreachable, onTimeout: 'abort' }, { latency: 20, detections: 3000 });
    for (let t = 0; t <= 400_000 && aborting.rollout.status === 'running'; t += 5_000) aborting.step(t);
    expect(aborting.rollout.status).toBe('aborted');
    expect(verdicts(aborting.log).at(-1)).toMatchObject({ timedOut: true, action: 'abort' });
    expect(aborting.log.some((s) => s.type === 'revert')).toBe(true);

    const promoting = world({ ...unreachable, onTimeout: 'promote' }, { latency: 20, detections: 3000 });
    for (let t = 0; t <= 130_000; t += 5_000) promoting.step(t);
    expect(promoting.rollout.stageIndex).toBe(1);
    expect(verdicts(promoting.log).at(-1)).toMatchObject({ timedOut: true, action: 'promote' });
  });
});

describe('plan, same bytes and honest state', () => {
  it('records devices already on the candidate bytes as unchanged: no assignment, no fake active, no revert', () => {
    const w = world(
      {
        ...fast,
        stages: [
          { name: 'canary', kind: 'canary' },
          { name: 'all', kind: 'percent', percent: 100 },
        ],
      },
      { latency: 60, detections: 1200 },
    );
    const same = w.rollout.cohorts.canary[0]!;
    w.devices.set(same, { ...w.devices.get(same)!, activeSha256: NEW.sha256 });
    const first = w.step(0);
    expect(first.find((s) => s.type === 'unchanged')).toMatchObject({ deviceIds: [same] });
    const assign = first.find((s) => s.type === 'assign');
    expect(assign?.type === 'assign' && assign.deviceIds.includes(same)).toBe(false);
    for (let t = 5_000; t <= 300_000 && w.rollout.status === 'running'; t += 5_000) w.step(t);
    expect(w.rollout.status).toBe('rolled_back');
    expect(w.devices.get(same)?.assignment?.state).toBe('unchanged');
    expect(w.log.some((s) => s.type === 'revert' && s.deviceIds.includes(same))).toBe(false);
    expect(w.log.some((s) => s.type === 'mark' && s.deviceId === same)).toBe(false);
  });

  it('passes a stage whose every device already runs the candidate bytes, with nothing to judge', () => {
    const w = world(
      {
        ...fast,
        stages: [
          { name: 'canary', kind: 'canary' },
          { name: 'all', kind: 'percent', percent: 100 },
        ],
      },
      { latency: 20, detections: 3000 },
    );
    for (const id of w.rollout.cohorts.canary) w.devices.set(id, { ...w.devices.get(id)!, activeSha256: NEW.sha256 });
    for (let t = 0; t <= 40_000; t += 5_000) w.step(t);
    expect(w.rollout.stageIndex).toBe(1);
    const verdict = w.log.find((s) => s.type === 'verdict');
    expect(verdict?.type === 'verdict' && verdict.evaluation.reason).toMatch(/already runs the candidate's bytes/);
  });

  it("counts control devices by assignment, not by sha: a control device on the candidate's bytes still compares", () => {
    const w = world(
      {
        ...fast,
        stages: [
          { name: 'canary', kind: 'canary' },
          { name: 'all', kind: 'percent', percent: 100 },
        ],
      },
      { latency: 20, detections: 3000 },
    );
    for (const id of w.rollout.cohorts.control) w.devices.set(id, { ...w.devices.get(id)!, activeSha256: NEW.sha256 });
    for (let t = 0; t <= 40_000; t += 5_000) w.step(t);
    const verdict = w.log.find((s) => s.type === 'verdict');
    expect(verdict?.type === 'verdict' && verdict.evaluation.evidence.controlDevices).toBe(
      w.rollout.cohorts.control.length,
    );
  });

  it('ends reverting as soon as the device reports its previous model', () => {
    const w = world(fast, { latency: 20, detections: 3000 });
    const id = w.rollout.cohorts.canary[0]!;
    w.devices.set(id, {
      ...w.devices.get(id)!,
      activeSha256: OLD.sha256,
      assignment: { mode: 'active', stageIndex: 1, state: 'reverting', previous: OLD, assignedAt: 0 },
    });
    const steps = plan({ rollout: w.rollout, devices: w.devices, windows: new Map(), now: 1 });
    expect(steps).toContainEqual({ type: 'mark', deviceId: id, state: 'rolled_back' });
  });
});
