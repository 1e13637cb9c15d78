import { type Desired, type ModelAssignment, topicFor, unwrap } from '@edgeloop/protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAssignmentRefresher, refreshDue, refreshIntervalMs, sameAssignment } from '../src/assignment-refresh.ts';
import { createMetricsRegistry } from '../src/metrics.ts';
import type { Timers } from '../src/time.ts';
import { eventually, startTestControlPlane, type TestControlPlane } from './harness.ts';
import { createSigningKit, type SigningKit } from './model-fixtures.ts';

/*
 * Assignment expiry on the control plane (issue 12 §3): every model assignment the rollout engine
 * writes carries expiresAt = now + --rollouts-assignment-ttl-hours, and the refresher renews it
 * (a new desired version, published retained) once a third of the TTL is left, so a device never
 * sees an expired assignment from a healthy control plane.
 */

const HOUR = 3_600_000;
const T0 = Date.parse('2026-05-01T10:00:00Z');

const assignment = (overrides: Partial<ModelAssignment> = {}): ModelAssignment =>
  ({
    rolloutId: 'r1',
    model: { id: 'det@2.0.0', name: 'det', version: '2.0.0', sha256: 'b'.repeat(64) },
    mode: 'active',
    url: '/api/v1/models/det/2.0.0/file',
    signed: { release: {}, signature: 'sig' },
    expiresAt: T0 + 3 * HOUR,
    ...overrides,
  }) as ModelAssignment;

describe('refreshDue', () => {
  it('renews an assignment once a third of its TTL or less is left, or one stored without expiresAt', () => {
    const ttl = 3 * HOUR;
    expect(refreshDue(assignment(), T0, ttl)).toBe(false);
    expect(refreshDue(assignment(), T0 + 2 * HOUR - 1, ttl)).toBe(false);
    expect(refreshDue(assignment(), T0 + 2 * HOUR, ttl)).toBe(true);
    expect(refreshDue(assignment(), T0 + 4 * HOUR, ttl)).toBe(true);
    const { expiresAt: _, ...legacy } = assignment();
    expect(refreshDue(legacy, T0, ttl)).toBe(true);
    expect(refreshDue(null, T0, ttl)).toBe(false);
    expect(refreshDue(undefined, T0, ttl)).toBe(false);
  });

  it('treats a renewal as the same assignment and another rollout, mode, bytes or signature as another', () => {
    expect(sameAssignment(assignment(), assignment({ expiresAt: T0 + 9 * HOUR }))).toBe(true);
    expect(sameAssignment(assignment(), assignment({ rolloutId: 'r2' }))).toBe(false);
    expect(sameAssignment(assignment(), assignment({ mode: 'shadow' }))).toBe(false);
    expect(sameAssignment(assignment(), assignment({ signed: { release: {}, signature: 'other' } as never }))).toBe(
      false,
    );
    expect(sameAssignment(assignment(), null)).toBe(false);
  });

  it('looks every twelfth of the TTL, at least every hour and at most every second', () => {
    expect(refreshIntervalMs(168 * HOUR)).toBe(HOUR);
    expect(refreshIntervalMs(HOUR)).toBe(5 * 60_000);
    expect(refreshIntervalMs(1_000)).toBe(1_000);
  });
});

/** Timers that never fire by themselves: the test runs the tasks. */
const manualTimers: Timers = { setInterval: () => ({}), clearInterval: () => {} };

describe('assignment expiry on a real control plane', () => {
  let kit: SigningKit;
  beforeAll(() => {
    kit = createSigningKit();
  });
  afterAll(() => kit?.dispose());

  let t: TestControlPlane | null = null;
  afterEach(async () => {
    await t?.stop();
    t = null;
  });

  const setup = async () => {
    let now = T0;
    const clock = { now: () => now };
    const cp = await startTestControlPlane(
      { trustedKeys: kit.publicKeyPath, rollouts: { assignmentTtlHours: 3 } },
      { clock, timers: manualTimers },
    );
    t = cp;
    const publish = (version: string, counter: number) =>
      kit.publish(
        cp.client,
        kit.modelBytes(4000 + counter),
        { name: 'det', version, adapter: 'yolo' },
        { issuedAt: T0 - 60_000, ttlMs: 30 * 86_400_000, releaseCounter: counter },
      );
    const good = await publish('2.0.0', 2);
    const other = await publish('3.0.0', 3);
    // A real device on the broker: it hears every desired state published to it.
    const device = await cp.device('cam-a', { labels: { fleet: 'ttl' } });
    const heard: Desired[] = [];
    device.client.on('message', (topic, payload) => {
      if (topic === topicFor('cam-a', 'desired')) heard.push(JSON.parse(payload.toString()) as Desired);
    });
    await device.client.subscribeAsync(topicFor('cam-a', 'desired'), { qos: 1 });
    await device.send('reported', { agentVersion: '1.0.0', desiredVersion: 0, telemetryIntervalS: 10 });
    const rollout = await unwrap(
      cp.client.rollouts.create({
        modelId: good.id,
        selector: { labels: { fleet: 'ttl' } },
        stages: [{ name: 'all', kind: 'percent', percent: 100 }],
      } as never),
    );
    return {
      cp,
      good,
      other,
      rollout,
      heard,
      setNow: (value: number) => {
        now = value;
      },
      desiredOf: async () => (await cp.cp.internals.store.devices.get('cam-a'))?.desired ?? null,
    };
  };

  it('stamps expiresAt = now + TTL on rollout assignments and renews them, published, once a third is left', async () => {
    const env = await setup();
    const { assignments, engine } = env.cp.cp.internals.rollouts;
    await engine.tick();
    const assigned = await env.desiredOf();
    expect(assigned?.model).toMatchObject({ rolloutId: env.rollout.id, model: { sha256: env.good.sha256 } });
    expect(assigned?.model?.expiresAt).toBe(T0 + 3 * HOUR);
    await eventually(() => env.heard.some((desired) => desired.version === assigned?.version));

    // Not yet due: nothing is written.
    env.setNow(T0 + 2 * HOUR - 1);
    expect(await assignments.runNow()).toBe(0);
    expect((await env.desiredOf())?.version).toBe(assigned?.version);

    // A third of the TTL left: the same assignment as a new version, with a new expiresAt, published.
    env.setNow(T0 + 2 * HOUR);
    expect(await assignments.runNow()).toBe(1);
    const renewed = await env.desiredOf();
    expect(renewed?.version).toBe((assigned?.version ?? 0) + 1);
    expect(renewed?.model).toEqual({ ...assigned?.model, expiresAt: T0 + 5 * HOUR });
    const delivered = await eventually(() => env.heard.find((desired) => desired.version === renewed?.version));
    expect(delivered?.model?.expiresAt).toBe(T0 + 5 * HOUR);
    // Renewed once: the next pass finds nothing due.
    expect(await assignments.runNow()).toBe(0);

    const metrics = await (await env.cp.raw('GET', '/metrics')).text();
    expect(metrics).toContain('edgeloop_assignment_refreshes_total 1');
  });

  it('never renews over an assignment written after the pass read desired state', async () => {
    const env = await setup();
    const { engine } = env.cp.cp.internals.rollouts;
    const { fleet, store } = env.cp.cp.internals;
    await engine.tick();
    const stale = await store.devices.listDesired();
    // Another assignment lands between the read and the renewal (another rollout, an operator).
    const newer = { ...(stale[0]?.desired.model as ModelAssignment), rolloutId: 'r-newer', expiresAt: T0 + HOUR };
    await fleet.setDesired('cam-a', { model: newer });
    const published: string[] = [];
    const refresher = createAssignmentRefresher({
      devices: { listDesired: async () => stale, updateDesired: store.devices.updateDesired },
      publishDesired: async (id) => {
        published.push(id);
      },
      clock: { now: () => T0 + 2 * HOUR + 30 * 60_000 },
      timers: manualTimers,
      metrics: createMetricsRegistry(),
      ttlMs: 3 * HOUR,
    });
    expect(await refresher.runNow()).toBe(0);
    expect(published).toEqual([]);
    expect((await env.desiredOf())?.model).toEqual(newer);
  });

  it('runs on its timer only while this replica leads the rollouts', async () => {
    const env = await setup();
    await env.cp.cp.internals.rollouts.engine.tick();
    let fire: (() => void) | null = null;
    let leader = false;
    const renewed: string[] = [];
    const refresher = createAssignmentRefresher({
      devices: env.cp.cp.internals.store.devices,
      publishDesired: async (id) => {
        renewed.push(id);
      },
      clock: { now: () => T0 + 3 * HOUR },
      timers: {
        setInterval: (callback) => {
          fire = callback;
          return 1;
        },
        clearInterval: () => {},
      },
      metrics: createMetricsRegistry(),
      ttlMs: 3 * HOUR,
      isLeader: () => leader,
    });
    refresher.start();
    const tickOnce = async () => {
      (fire as unknown as () => void)();
      await new Promise((resolve) => setTimeout(resolve, 50));
    };
    await tickOnce();
    expect(renewed).toEqual([]);
    leader = true;
    await tickOnce();
    expect(renewed).toEqual(['cam-a']);
    refresher.stop();
  });
});
