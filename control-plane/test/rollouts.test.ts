import { type ModelView, type RolloutSpecInput, type RolloutView, unwrap, type VerdictView } from '@edgeloop/protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { serviceGate } from '../../test-services.ts';
import type { Timers } from '../src/time.ts';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';
import { createSigningKit, type SigningKit } from './model-fixtures.ts';
import { admin, type ScratchDatabase, scratchDatabase } from './postgres-service.ts';
import { createVirtualFleet, type VirtualFleet } from './virtual-fleet.ts';

const postgres = serviceGate('postgres');

/*
 * The rollout engine end to end inside one control plane: real SQLite with migrations, real
 * ingest, the real HTTP API, a virtual fleet obeying desired state, and an injected clock. The
 * engine's timer never fires on its own: each cycle ticks it, lets the devices act and report,
 * and moves the clock 5 s.
 */

const T0 = Date.parse('2026-05-01T10:00:00Z');
const STEP_MS = 5_000;

const STAGES = [
  { name: 'shadow', kind: 'shadow' },
  { name: 'canary', kind: 'canary' },
  { name: '50%', kind: 'percent', percent: 50 },
  { name: '100%', kind: 'percent', percent: 100 },
];
const FAST = {
  selector: { labels: { fleet: 'test' } },
  stages: STAGES,
  canary: { minSize: 3, maxSize: 4 },
  evidence: { minDevices: 2, soakS: 10, minFrames: 100, failMinS: 20 },
  gates: { windowS: 20, failingWindowsRequired: 2 },
};

const DEVICES = Array.from({ length: 12 }, (_, i) => {
  const hardware = ['rpi5', 'orin-nano'][Math.floor(i / 2) % 2]!;
  return {
    id: `cam-${String(i).padStart(2, '0')}`,
    labels: { fleet: 'test', site: ['north', 'south'][i % 2]!, hardware },
    hardware,
  };
});

/** Timers that never fire: the test drives the engine. */
const manualTimers: Timers = { setInterval: () => ({}), clearInterval: () => {} };

let kit: SigningKit;
beforeAll(() => {
  kit = createSigningKit();
});
afterAll(() => kit?.dispose());

type Env = {
  t: TestControlPlane;
  fleet: VirtualFleet;
  models: { old: ModelView; good: ModelView; bad: ModelView; same: ModelView | null };
  clock: { now(): number };
  advance(ms: number): void;
  /** Tick the engine, let devices act and report, move the clock. */
  cycle(options?: { silent?: ReadonlySet<string> }): Promise<void>;
  rollout(id: string): Promise<RolloutView>;
  create(spec: Record<string, unknown>): Promise<RolloutView>;
  desiredSha(id: string): Promise<string | null>;
};

const started: TestControlPlane[] = [];
afterEach(async () => {
  // Newest first: a restarted instance stops before the one whose data dir it shares (and removes).
  for (const t of started.splice(0).reverse()) await t.stop();
});

async function setup(
  options: {
    refuse?: (deviceId: string, model: { sha256: string }) => string | null;
    dataDir?: string;
    databaseUrl?: string;
  } = {},
): Promise<Env> {
  let now = T0;
  const clock = { now: () => now };
  const t = await startTestControlPlane(
    {
      trustedKeys: kit.publicKeyPath,
      ...(options.dataDir ? { dataDir: options.dataDir } : {}),
      ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
    },
    { clock, timers: manualTimers },
  );
  started.push(t);
  const register = async (version: string, size: number, given?: Buffer) => {
    const bytes = given ?? kit.modelBytes(size);
    return kit.publish(
      t.client,
      bytes,
      { name: 'det', version, adapter: 'yolo' },
      { issuedAt: T0 - 60_000, ttlMs: 30 * 86_400_000, releaseCounter: Number(version[0]) },
    );
  };
  const registered = (version: string) => unwrap(t.client.models.get('det', version));
  // A restarted instance finds the models the first one registered.
  const oldBytes = kit.modelBytes(4000);
  const models = options.dataDir
    ? { old: await registered('1.0.0'), good: await registered('2.0.0'), bad: await registered('3.0.0'), same: null }
    : {
        old: await register('1.0.0', 4000, oldBytes),
        good: await register('2.0.0', 5000),
        bad: await register('3.0.0', 6000),
        // The old model's bytes released again under a new version.
        same: await register('4.0.0', 4000, oldBytes),
      };
  const behaviours = new Map([
    [models.old.sha256, { latencyP95: 20, detectionsPer1000: 3000 }],
    [models.good.sha256, { latencyP95: 21, detectionsPer1000: 2950, precision: 0.96, recall: 0.94 }],
    // Three times slower and 60% fewer detections.
    [models.bad.sha256, { latencyP95: 60, detectionsPer1000: 1200, precision: 0.9, recall: 0.4 }],
  ]);
  const fleet = createVirtualFleet({
    t,
    devices: DEVICES,
    initial: { id: models.old.id, name: 'det', version: '1.0.0', sha256: models.old.sha256 },
    behaviour: (sha) => behaviours.get(sha) ?? { latencyP95: 20, detectionsPer1000: 3000 },
    ...(options.refuse ? { refuse: options.refuse } : {}),
  });
  if (!options.dataDir) await fleet.enroll();
  const env: Env = {
    t,
    fleet,
    models,
    clock,
    advance(ms) {
      now += ms;
    },
    async cycle(cycleOptions = {}) {
      await t.cp.internals.rollouts.engine.tick();
      await fleet.round(cycleOptions);
      now += STEP_MS;
    },
    rollout: (id) => unwrap(t.client.rollouts.get(id)),
    // The specs of these tests are loose records (the server validates them): cast, not checked here.
    create: (spec) => unwrap(t.client.rollouts.create(spec as RolloutSpecInput)),
    async desiredSha(id) {
      const device = await t.cp.internals.store.devices.get(id);
      return device?.desired?.model?.model.sha256 ?? null;
    },
  };
  return env;
}

async function events(t: TestControlPlane, id: string) {
  return (await unwrap(t.client.rollouts.events(id, { limit: 1000 }))).items;
}

async function goodModelCompletes(env: Env): Promise<void> {
  const rollout = await env.create({ ...FAST, modelId: env.models.good.id });
  expect(rollout).toMatchObject({ status: 'running', stage: 'shadow', cohorts: { targetDevices: 12 } });
  expect(rollout.cohorts.canary).toHaveLength(4);
  const stagesSeen: string[] = [];
  for (let i = 0; i < 40; i++) {
    await env.cycle();
    const now = await env.rollout(rollout.id);
    if (now.stage && stagesSeen.at(-1) !== now.stage) stagesSeen.push(now.stage);
    if (now.status !== 'running') break;
  }
  const done = await env.rollout(rollout.id);
  expect(done.status).toBe('completed');
  expect(stagesSeen).toEqual(['shadow', 'canary', '50%', '100%']);
  for (const device of DEVICES) {
    expect(env.fleet.modelOf(device.id).active?.sha256).toBe(env.models.good.sha256);
    expect(await env.desiredSha(device.id)).toBe(env.models.good.sha256);
  }
  const log = await events(env.t, rollout.id);
  const types = log.map((e) => e.type);
  expect(types.filter((type) => type === 'advanced')).toHaveLength(3);
  expect(types.at(-1)).toBe('completed');
  const passes = log.filter((e) => e.type === 'verdict' && e.data.verdict === 'pass');
  expect(passes.map((e) => e.stage)).toEqual(['shadow', 'canary', '50%', '100%']);
  // The numbers behind a verdict: both cohorts' measured p95, their ratio with its interval, the threshold.
  const canaryPass = passes[1]!.data as unknown as VerdictView;
  const latency = canaryPass.gates.find((g) => g.gate === 'latency-p95-ratio')!;
  expect(latency.comparison?.estimate).toBeCloseTo(21 / 20, 5);
  expect(latency.canary).toMatchObject({ median: 21, devices: 4 });
  expect(latency.control).toMatchObject({ median: 20, devices: 4 });
  expect(latency.canary?.frames).toBeGreaterThan(0);
  expect(latency.threshold).toBe(1.5);
  expect(latency.decision).toMatch(/within the threshold/);
  expect(canaryPass.window).toMatchObject({ index: expect.any(Number) });
  expect(canaryPass.window.to - canaryPass.window.from).toBe(20_000);
  expect(canaryPass.evidence.controlDevices).toBe(4);
  expect(done.counts).toEqual({ active: 12 });
}

async function badModelRollsBack(env: Env): Promise<void> {
  const rollout = await env.create({ ...FAST, stages: STAGES.slice(1), modelId: env.models.bad.id });
  let maxAssigned = 0;
  for (let i = 0; i < 12; i++) {
    await env.cycle();
    const now = await env.rollout(rollout.id);
    maxAssigned = Math.max(
      maxAssigned,
      Object.values(now.counts).reduce((a, b) => a + (b ?? 0), 0),
    );
  }
  const done = await env.rollout(rollout.id);
  expect(done.status).toBe('rolled_back');
  expect(done.reason).toMatch(/stage canary failed in 2 consecutive windows: failing gates: .*latency-p95-ratio/);
  expect(maxAssigned).toBe(done.cohorts.canary.length);
  expect(done.counts).toEqual({ rolled_back: done.cohorts.canary.length });
  for (const id of done.cohorts.canary) {
    // Desired state names the previous model again (registered: its signed release), mode active.
    const desired = (await env.t.cp.internals.store.devices.get(id))?.desired?.model;
    expect(desired).toMatchObject({ rolloutId: rollout.id, mode: 'active', model: { sha256: env.models.old.sha256 } });
    expect(desired?.signed.release.sha256).toBe(env.models.old.sha256);
    expect(env.fleet.modelOf(id).active?.sha256).toBe(env.models.old.sha256);
  }
  const verdicts = (await events(env.t, rollout.id)).filter((e) => e.type === 'verdict');
  const failing = verdicts.filter((e) => e.data.verdict === 'fail');
  expect(failing.length).toBe(2);
  expect(failing.map((e) => e.data.failingWindows)).toEqual([1, 2]);
  // Two distinct, consecutive windows.
  const windows = failing.map((e) => (e.data as unknown as VerdictView).window.index);
  expect(windows[1]).toBe((windows[0] ?? 0) + 1);
  const latency = (failing[1]!.data as unknown as VerdictView).gates.find((g) => g.gate === 'latency-p95-ratio')!;
  expect(latency.comparison?.estimate).toBeCloseTo(3, 5);
  expect(latency.canary?.median).toBeCloseTo(60, 5);
  expect(latency.control?.median).toBeCloseTo(20, 5);
}

describe('rollout engine', () => {
  it('takes a good model through shadow, canary, 50% and 100% to completed, with a verdict per evaluation', async () => {
    await goodModelCompletes(await setup());
  });

  it('rolls a worse model back from its canary stage: no device beyond the canary ever gets it, and all return', async () => {
    await badModelRollsBack(await setup());
  });

  it('rolls back when devices refuse the update, and shows each refusal reason to the operator', async () => {
    const env = await setup({ refuse: () => 'bad_signature: signature does not match the release' });
    const rollout = await env.create({ ...FAST, stages: STAGES.slice(1), modelId: env.models.good.id });
    for (let i = 0; i < 6; i++) await env.cycle();
    const done = await env.rollout(rollout.id);
    expect(done.status).toBe('rolled_back');
    const devices = await unwrap(env.t.client.rollouts.devices(rollout.id));
    expect(devices.items).toHaveLength(done.cohorts.canary.length);
    for (const item of devices.items) {
      expect(item.update).toMatchObject({ rolloutId: rollout.id, state: 'reverted' });
      expect(item.update?.reason).toContain('bad_signature');
    }
    const changes = (await events(env.t, rollout.id))
      .filter((e) => e.type === 'devices')
      .flatMap((e) => e.data.changes as { state: string; reason: string | null }[]);
    expect(changes.filter((c) => c.state === 'failed').every((c) => c.reason?.includes('bad_signature'))).toBe(true);
    const first = done.cohorts.canary[0]!;
    const detail = await unwrap(env.t.client.devices.get(first));
    expect(detail.reported?.message.model?.update?.reason).toContain('bad_signature');
  });

  it('holds a stage as inconclusive while 30% of it is silent, never calling it a success', async () => {
    const env = await setup();
    const rollout = await env.create({ ...FAST, stages: STAGES.slice(1), modelId: env.models.good.id });
    const silent = new Set(rollout.cohorts.canary.slice(0, Math.ceil(rollout.cohorts.canary.length * 0.3)));
    for (let i = 0; i < 12; i++) await env.cycle({ silent });
    const held = await env.rollout(rollout.id);
    expect(held).toMatchObject({ status: 'running', stageIndex: 0, stage: 'canary' });
    expect(held.lastVerdict?.verdict).toBe('inconclusive');
    expect(held.lastVerdict?.reason).toMatch(/\d of 4 devices reporting, need 4/);
    // The silent devices come back: the retained desired state reaches them and the stage passes.
    for (let i = 0; i < 6 && (await env.rollout(rollout.id)).stageIndex === 0; i++) await env.cycle();
    expect((await env.rollout(rollout.id)).stageIndex).toBe(1);
  });

  it('pauses, resumes, promotes by operator override and aborts, each recorded', async () => {
    const env = await setup();
    const rollout = await env.create({ ...FAST, modelId: env.models.good.id });
    const act = async (action: string, body?: unknown) => {
      const response = await env.t.raw('POST', `/api/v1/rollouts/${rollout.id}/${action}`, {
        ...(body ? { body } : {}),
      });
      return { status: response.status, body: (await response.json()) as RolloutView & { error?: { code: string } } };
    };
    await env.cycle();
    expect((await act('pause', { reason: 'night shift' })).body).toMatchObject({
      status: 'paused',
      reason: 'night shift',
    });
    const verdictsBefore = (await events(env.t, rollout.id)).filter((e) => e.type === 'verdict').length;
    for (let i = 0; i < 6; i++) await env.cycle();
    const paused = await env.rollout(rollout.id);
    expect(paused).toMatchObject({ status: 'paused', stageIndex: 0 });
    expect((await events(env.t, rollout.id)).filter((e) => e.type === 'verdict').length).toBe(verdictsBefore);
    expect(await act('pause')).toMatchObject({ status: 409 });

    expect((await act('resume')).body).toMatchObject({ status: 'running' });
    expect((await act('promote', { reason: 'shadow looked fine' })).body).toMatchObject({
      status: 'running',
      stageIndex: 1,
      stage: 'canary',
    });
    await env.cycle();
    await env.cycle();
    expect(Object.values((await env.rollout(rollout.id)).counts)).toEqual([4]);
    expect(rollout.cohorts.canary.every((id) => env.fleet.modelOf(id).active?.sha256 === env.models.good.sha256)).toBe(
      true,
    );

    expect((await act('abort', { reason: 'wrong model' })).body).toMatchObject({
      status: 'aborted',
      reason: 'aborted by an operator: wrong model',
    });
    for (let i = 0; i < 3; i++) await env.cycle();
    const aborted = await env.rollout(rollout.id);
    expect(aborted.counts).toEqual({ rolled_back: 4 });
    for (const id of rollout.cohorts.canary) expect(env.fleet.modelOf(id).active?.sha256).toBe(env.models.old.sha256);
    expect(await act('resume')).toMatchObject({ status: 409 });
    const types = (await events(env.t, rollout.id)).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['created', 'paused', 'resumed', 'promoted', 'aborted', 'reverting']));
    const promoted = (await events(env.t, rollout.id)).find((e) => e.type === 'promoted')!;
    expect(promoted.data).toMatchObject({ from: 0, to: 1, by: expect.any(String) });
  });

  it('refuses to promote past the last stage while its devices wait for the model (jitter)', async () => {
    const env = await setup();
    const rollout = await env.create({
      ...FAST,
      stages: [{ name: 'all', kind: 'percent', percent: 100 }],
      jitterS: 3600,
      modelId: env.models.good.id,
    });
    await env.cycle();
    const response = await env.t.raw('POST', `/api/v1/rollouts/${rollout.id}/promote`);
    expect(response.status).toBe(409);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(
      /\d+ of its devices have not been handed the model/,
    );
    env.advance(3600_000);
    await env.cycle();
    const promoted = await env.t.raw('POST', `/api/v1/rollouts/${rollout.id}/promote`);
    expect(promoted.status).toBe(200);
    expect(((await promoted.json()) as RolloutView).status).toBe('completed');
  });

  it('resumes from the database after the control plane dies, repairing desired state it had not published', async () => {
    const env = await setup();
    const rollout = await env.create({ ...FAST, modelId: env.models.good.id });
    for (let i = 0; i < 30 && (await env.rollout(rollout.id)).stageIndex < 1; i++) await env.cycle();
    expect((await env.rollout(rollout.id)).stage).toBe('canary');
    // The dying instance wrote the canary's active assignments but never published desired state.
    const store = env.t.cp.internals.store;
    const rows = await store.rollouts.assignments(rollout.id);
    await store.rollouts.putAssignments(
      rows.map((row) => ({ ...row, mode: 'active', stageIndex: 1, state: 'assigned' })),
    );
    expect(await env.desiredSha(rows[0]!.deviceId)).toBe(env.models.good.sha256); // still the shadow assignment
    expect((await store.devices.get(rows[0]!.deviceId))?.desired?.model?.mode).toBe('shadow');

    // A new instance on the same data (the old one is never stopped or ticked again: it died).
    const restarted = await setup({ dataDir: env.t.dataDir });
    restarted.advance(env.clock.now() - T0);
    env.fleet.attach(restarted.t);
    const cycle = async () => {
      await restarted.t.cp.internals.rollouts.engine.tick();
      await env.fleet.round();
      restarted.advance(STEP_MS);
    };
    await cycle();
    for (const row of rows) expect((await store.devices.get(row.deviceId))?.desired?.model?.mode).toBe('active');
    for (let i = 0; i < 40 && (await restarted.rollout(rollout.id)).status === 'running'; i++) await cycle();
    expect((await restarted.rollout(rollout.id)).status).toBe('completed');
    const assigned = (await events(restarted.t, rollout.id)).filter((e) => e.type === 'assigned');
    expect(
      assigned.some((e) => e.data.mode === 'active' && (e.data.deviceIds as string[]).length === rows.length),
    ).toBe(true);
  });

  it('ends a stage that cannot reach minFrames at its deadline, paused with an event the operator sees', async () => {
    const env = await setup();
    // The SSE wire itself (event lines) is under test here: a raw request, not the typed stream.
    const response = await env.t.raw('GET', '/api/v1/events?types=rollout.paused');
    const reader = response.body!.getReader();
    const rollout = await env.create({
      ...FAST,
      stages: [
        { name: 'canary', kind: 'canary', maxDurationS: 60 },
        { name: 'all', kind: 'percent', percent: 100 },
      ],
      evidence: { ...FAST.evidence, minFrames: 10_000_000 },
      modelId: env.models.good.id,
    });
    for (let i = 0; i < 30 && (await env.rollout(rollout.id)).status === 'running'; i++) await env.cycle();
    const paused = await env.rollout(rollout.id);
    expect(paused).toMatchObject({ status: 'paused', stage: 'canary' });
    expect(paused.reason).toMatch(
      /reached its deadline \(60 s\) inconclusive: .*need 10000000; paused for the operator/,
    );
    expect(paused.lastVerdict).toMatchObject({ verdict: 'inconclusive', timedOut: true, action: 'pause' });
    expect(paused.lastVerdict?.window.to).toBe(paused.stageStartedAt + 60_000);
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('event: rollout.paused')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    await reader.cancel();
    expect(text).toContain('reached its deadline');
    // Nothing was reverted: a pause leaves the canary where it is for the operator to decide.
    expect(paused.counts).toEqual({ active: 4 });
  });

  it('treats a release of the bytes a device already runs as a no-op: unchanged, never active, nothing reverting', async () => {
    const env = await setup();
    const same = env.models.same!;
    expect(same.sha256).toBe(env.models.old.sha256);
    const rollout = await env.create({ ...FAST, modelId: same.id });
    await env.cycle();
    await env.cycle();
    const early = await env.rollout(rollout.id);
    expect(early.counts).toEqual({ unchanged: 4 });
    for (const id of rollout.cohorts.canary) expect(await env.desiredSha(id)).toBeNull();
    const response = await env.t.raw('POST', `/api/v1/rollouts/${rollout.id}/abort`, { body: { reason: 'test' } });
    expect(response.status).toBe(200);
    for (let i = 0; i < 3; i++) await env.cycle();
    const aborted = await env.rollout(rollout.id);
    expect(aborted.status).toBe('aborted');
    expect(aborted.counts).toEqual({ unchanged: 4 });
    for (const id of rollout.cohorts.canary) {
      expect(env.fleet.modelOf(id).active?.sha256).toBe(env.models.old.sha256);
      expect(await env.desiredSha(id)).toBeNull();
    }
    const devices = await unwrap(env.t.client.rollouts.devices(rollout.id));
    expect(devices.items.every((d) => d.state === 'unchanged' && /same sha256/.test(d.reason ?? ''))).toBe(true);
  });

  it('completes a same-bytes release without switching any device', async () => {
    const env = await setup();
    const rollout = await env.create({ ...FAST, modelId: env.models.same!.id });
    for (let i = 0; i < 40 && (await env.rollout(rollout.id)).status === 'running'; i++) await env.cycle();
    const done = await env.rollout(rollout.id);
    expect(done.status).toBe('completed');
    expect(done.counts).toEqual({ unchanged: 12 });
  });

  it('shows rollout events in the SSE stream, with the numbers', async () => {
    const env = await setup();
    const response = await env.t.raw('GET', '/api/v1/events?types=rollout.created,rollout.verdict,rollout.advanced');
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const rollout = await env.create({ ...FAST, modelId: env.models.good.id });
    for (let i = 0; i < 30 && (await env.rollout(rollout.id)).stageIndex < 1; i++) await env.cycle();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('event: rollout.advanced')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    await reader.cancel();
    expect(text).toContain('event: rollout.created');
    expect(text).toContain('event: rollout.verdict');
    const advanced = text
      .split('\n\n')
      .find((chunk) => chunk.includes('event: rollout.advanced'))!
      .split('\n')
      .find((line) => line.startsWith('data: '))!;
    expect(JSON.parse(advanced.slice(6))).toMatchObject({
      type: 'rollout.advanced',
      data: { rolloutId: rollout.id, stage: 'canary', stageIndex: 1 },
    });
    const verdict = text
      .split('\n\n')
      .find((chunk) => chunk.includes('event: rollout.verdict') && chunk.includes('"pass"'))!;
    expect(verdict).toContain('shadow-recall');
  });
});

describe('rollout API', () => {
  let env: Env;
  beforeAll(async () => {
    env = await setup();
    // Shared by the tests below: stopped after all of them, not after each.
    started.splice(started.indexOf(env.t), 1);
  });
  afterAll(async () => {
    await env?.t.stop();
  });

  it('dry-runs a rollout: devices per stage, earliest duration and bytes, creating nothing', async () => {
    const plan = await unwrap(
      env.t.client.rollouts.plan({ ...FAST, modelId: env.models.good.id, jitterS: 5 } as RolloutSpecInput),
    );
    expect(plan).toMatchObject({ modelId: 'det@2.0.0', targetDevices: 12, incompatibleDevices: 0 });
    expect(plan.stages.map((s) => [s.name, s.devices, s.newDevices])).toEqual([
      ['shadow', 4, 4],
      ['canary', 4, 0],
      ['50%', 6, 2],
      ['100%', 12, 6],
    ]);
    expect(plan.bytesToDownload).toBe(12 * env.models.good.sizeBytes);
    // Each stage: soak 10 s + jitter 5 s, rounded up to whole 20 s windows.
    expect(plan.earliestDurationS).toBe(4 * 20);
    expect(plan.stages.map((s) => s.controlDevices)).toEqual([4, 4, 4, 0]);
    expect(plan.stages.every((s) => s.maxDurationS === 1800)).toBe(true);
    // No telemetry yet: the feasibility figures assume 1 fps, and say so.
    expect(plan.fps).toEqual({ value: 1, source: 'assumed' });
    expect(plan.warnings[0]).toMatch(/assume 1 fps/);
    expect(plan.canary).toHaveLength(4);
    expect(plan.control).toHaveLength(4);
    const list = await unwrap(env.t.client.rollouts.list());
    expect(list.items).toEqual([]);
  });

  it('flags in the dry run a shadow stage whose sampled frames cannot reach minFrames in a window', async () => {
    const spec = { ...FAST, modelId: env.models.good.id, evidence: { ...FAST.evidence, minFrames: 50 } };
    const plan = await unwrap(env.t.client.rollouts.plan(spec as RolloutSpecInput));
    // 4 canary devices x 1 fps x 20 s = 80 frames live, x 0.2 = 16 compared in shadow.
    const shadow = plan.stages.find((s) => s.name === 'shadow')!;
    expect(shadow.gates.every((g) => !g.feasible)).toBe(true);
    expect(shadow.gates[0]?.reason).toMatch(/0.2 shadow share = 16 frames compared \(need 50\)/);
    expect(plan.stages.find((s) => s.name === 'canary')!.gates.every((g) => g.feasible)).toBe(true);
    expect(plan.warnings.some((w) => /stage shadow: shadow-precision cannot collect its evidence/.test(w))).toBe(true);
  });

  it('refuses an unknown model, a selector matching nothing, and devices already in a running rollout', async () => {
    const code = async (body: unknown) => {
      const response = await env.t.raw('POST', '/api/v1/rollouts', { body });
      return [response.status, ((await response.json()) as { error: { code: string } }).error?.code];
    };
    expect(await code({ ...FAST, modelId: 'det@9.9.9' })).toEqual([422, 'unprocessable']);
    expect(await code({ ...FAST, selector: { labels: { fleet: 'nowhere' } }, modelId: env.models.good.id })).toEqual([
      422,
      'unprocessable',
    ]);
    expect(await code({ ...FAST, selector: { labels: { 'Bad Key': 'x' } }, modelId: env.models.good.id })).toEqual([
      422,
      'unprocessable',
    ]);
    const first = await env.create({ ...FAST, modelId: env.models.good.id });
    expect(await code({ ...FAST, selector: { labels: { site: 'north' } }, modelId: env.models.bad.id })).toEqual([
      409,
      'conflict',
    ]);
    const list = await unwrap(env.t.client.rollouts.list({ status: 'running' }));
    expect(list.items.map((r) => r.id)).toEqual([first.id]);
    expect((await env.t.raw('GET', '/api/v1/rollouts/r-nope')).status).toBe(404);
    expect((await env.t.raw('POST', '/api/v1/rollouts/r-nope/pause')).status).toBe(404);
  });
});

/* The same engine on PostgreSQL: the scale-out store through the whole loop. */
describe.skipIf(!postgres.run)('rollout engine on PostgreSQL', () => {
  const databases: ScratchDatabase[] = [];
  const fresh = async () => {
    const database = scratchDatabase('edgeloop_rollouts');
    await database.create();
    databases.push(database);
    return database.url;
  };
  afterAll(async () => {
    for (const database of databases) await database.drop();
  });

  it('takes a good model to completed', async () => {
    await goodModelCompletes(await setup({ databaseUrl: await fresh() }));
  });

  it('rolls a worse model back from its canary stage', async () => {
    await badModelRollsBack(await setup({ databaseUrl: await fresh() }));
  });

  it('moves the engine to another replica within the retry interval when the leader dies, and the rollout goes on from its stored state', async () => {
    const database = scratchDatabase('edgeloop_failover');
    await database.create();
    databases.push(database);
    const env = await setup({ databaseUrl: database.url });
    const rollout = await env.create({ ...FAST, modelId: env.models.good.id });
    for (let i = 0; i < 30 && (await env.rollout(rollout.id)).stageIndex < 1; i++) await env.cycle();
    expect((await env.rollout(rollout.id)).stage).toBe('canary');
    expect(env.t.cp.internals.rollouts.engine.isLeader).toBe(true);

    // A second replica on the same database (and data dir); the devices move to it.
    const second = await setup({ dataDir: env.t.dataDir, databaseUrl: database.url });
    second.advance(env.clock.now() - T0);
    env.fleet.attach(second.t);
    const engine = second.t.cp.internals.rollouts.engine;
    expect((await engine.tick()).leader).toBe(false);

    // The leader dies: its lock session goes (a crashed process or a cut network look alike) and
    // it is never ticked again.
    await admin(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${database.name}' AND application_name = 'edgeloop-leader' AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)`,
    );
    const diedAt = second.clock.now();
    let tookOverAt: number | null = null;
    for (let i = 0; i < 10 && tookOverAt === null; i++) {
      if ((await engine.tick()).leader) tookOverAt = second.clock.now();
      else {
        await env.fleet.round();
        second.advance(1_000);
      }
    }
    expect(tookOverAt).not.toBeNull();
    // Within one retry interval (5 s by default) of the leader's death.
    expect(tookOverAt! - diedAt).toBeLessThanOrEqual(5_000);

    for (let i = 0; i < 40 && (await second.rollout(rollout.id)).status === 'running'; i++) {
      await engine.tick();
      await env.fleet.round();
      second.advance(STEP_MS);
    }
    const done = await second.rollout(rollout.id);
    expect(done.status).toBe('completed');
    for (const device of DEVICES) expect(env.fleet.modelOf(device.id).active?.sha256).toBe(env.models.good.sha256);
    // No device was given the same stage twice, across both leaders.
    const assigned = (await events(second.t, rollout.id))
      .filter((e) => e.type === 'assigned')
      .flatMap((e) => (e.data.deviceIds as string[]).map((id) => `${e.stage}/${String(e.data.mode)}/${id}`));
    expect(assigned.length).toBeGreaterThan(0);
    expect(new Set(assigned).size).toBe(assigned.length);
  });
});
