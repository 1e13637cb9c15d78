import { type ModelView, type RolloutView, unwrap } from '@edgeloop/protocol';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Timers } from '../src/time.ts';
import { eventually, startTestControlPlane, type TestControlPlane } from './harness.ts';
import { createSigningKit, type SigningKit } from './model-fixtures.ts';
import { createVirtualFleet } from './virtual-fleet.ts';

/*
 * Rollout transitions under concurrent API calls (issue 12 §6). One control plane (real SQLite,
 * the real HTTP routes through app.request, an injected clock that does not move, the engine's
 * timer driven by hand) and a virtual fleet of six devices. Each run creates a rollout over the
 * fleet, then fires rounds of random calls at once (Promise.all): pause, resume, abort, promote of
 * that rollout, a create of another over the same devices, and engine ticks. After each round:
 *  - every answer is 200/201 or a documented 409, never anything else;
 *  - the rollout's events of the operator actions, in the order the database wrote them, replay
 *    as a sequence of legal transitions from the state before the round (pause: running ->
 *    paused; resume: paused -> running; abort: running|paused -> aborted; promote: the next stage,
 *    completed after the last), one event per accepted call, each answer one of the replayed states;
 *  - the rollout ends in the replay's final state, and a terminal one never changes again;
 *  - a refused call was refusable in some state of the round (or lost a race: "keeps changing");
 *  - a create succeeded only while the rollout was terminal, and no two rollouts are ever active
 *    over the same devices;
 * and at the end of a run the audit log holds one entry per accepted call, with its answer.
 */

const T0 = Date.parse('2026-05-01T10:00:00Z');
const manualTimers: Timers = { setInterval: () => ({}), clearInterval: () => {} };
const STAGES = [
  { name: 'shadow', kind: 'shadow' },
  { name: 'canary', kind: 'canary' },
  { name: '100%', kind: 'percent', percent: 100 },
] as const;
const SPEC = {
  selector: { labels: { fleet: 'props' } },
  stages: STAGES,
  canary: { minSize: 2, maxSize: 2 },
  evidence: { minDevices: 2, soakS: 10, minFrames: 100, failMinS: 20 },
  gates: { windowS: 20, failingWindowsRequired: 2 },
};
const DEVICES = Array.from({ length: 6 }, (_, i) => ({
  id: `prop-cam-${i}`,
  labels: { fleet: 'props', site: ['north', 'south'][i % 2]!, hardware: 'rpi5' },
  hardware: 'rpi5',
}));

type Action = 'pause' | 'resume' | 'abort' | 'promote';
type Op = Action | 'create' | 'tick';
type State = { readonly status: string; readonly stageIndex: number };
type Answer = { readonly op: Op; readonly status: number; readonly body: Record<string, unknown> };

let kit: SigningKit;
let t: TestControlPlane;
let model: ModelView;

beforeAll(async () => {
  kit = createSigningKit();
  t = await startTestControlPlane(
    { trustedKeys: kit.publicKeyPath },
    { clock: { now: () => T0 }, timers: manualTimers },
  );
  const publish = (version: string, size: number) =>
    kit.publish(
      t.client,
      kit.modelBytes(size),
      { name: 'det', version, adapter: 'yolo' },
      { issuedAt: T0 - 60_000, ttlMs: 30 * 86_400_000, releaseCounter: Number(version[0]) },
    );
  const old = await publish('1.0.0', 4000);
  model = await publish('2.0.0', 5000);
  const fleet = createVirtualFleet({
    t,
    devices: DEVICES,
    initial: { id: old.id, name: 'det', version: '1.0.0', sha256: old.sha256 },
    behaviour: () => ({ latencyP95: 20, detectionsPer1000: 3000 }),
  });
  await fleet.enroll();
}, 60_000);

afterAll(async () => {
  await t?.stop();
  kit?.dispose();
});

const ACTIVE = new Set(['running', 'paused']);

/** The operator actions' transition table: the state after, or null when the action is refused. */
function transition(state: State, action: Action): State | null {
  switch (action) {
    case 'pause':
      return state.status === 'running' ? { status: 'paused', stageIndex: state.stageIndex } : null;
    case 'resume':
      return state.status === 'paused' ? { status: 'running', stageIndex: state.stageIndex } : null;
    case 'abort':
      return ACTIVE.has(state.status) ? { status: 'aborted', stageIndex: state.stageIndex } : null;
    case 'promote': {
      if (!ACTIVE.has(state.status)) return null;
      const next = state.stageIndex + 1;
      return { status: next >= STAGES.length ? 'completed' : state.status, stageIndex: next };
    }
  }
}

const ACTION_EVENTS: Record<string, Action> = {
  paused: 'pause',
  resumed: 'resume',
  aborted: 'abort',
  promoted: 'promote',
};

async function call(op: Op, rolloutId: string): Promise<Answer> {
  if (op === 'tick') {
    await t.cp.internals.rollouts.engine.tick();
    return { op, status: 200, body: {} };
  }
  const response =
    op === 'create'
      ? await t.raw('POST', '/api/v1/rollouts', { body: { ...SPEC, modelId: model.id } })
      : await t.raw('POST', `/api/v1/rollouts/${rolloutId}/${op}`, { body: { reason: `property ${op}` } });
  return { op, status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function operatorEvents(rolloutId: string) {
  const page = await unwrap(t.client.rollouts.events(rolloutId, { limit: 1000 }));
  return page.items.filter((event) => event.type in ACTION_EVENTS).sort((a, b) => a.id - b.id);
}

async function activeRollouts(): Promise<RolloutView[]> {
  const [running, paused] = await Promise.all(
    (['running', 'paused'] as const).map(
      async (status) => (await unwrap(t.client.rollouts.list({ status, limit: 200 }))).items,
    ),
  );
  return [...running!, ...paused!];
}

async function abortActive() {
  for (const rollout of await activeRollouts()) await call('abort', rollout.id);
}

const op = fc.constantFrom<Op>(
  'pause',
  'resume',
  'abort',
  'promote',
  'promote',
  'promote',
  'pause',
  'resume',
  'create',
  'tick',
  'tick',
);
const rounds = fc.array(fc.array(op, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 5 });

describe('rollout transitions under concurrent API calls', () => {
  it('answers 2xx or 409, moves only by legal transitions one per accepted call, never leaves a terminal state, and audits each accepted call', async () => {
    await fc.assert(
      fc.asyncProperty(rounds, async (plan) => {
        await abortActive();
        const created = await call('create', '');
        expect(created.status, JSON.stringify(created.body)).toBe(201);
        const id = created.body.id as string;
        let state: State = { status: 'running', stageIndex: 0 };
        let seenEvents = 0;
        const accepted: Record<Action, Answer[]> = { pause: [], resume: [], abort: [], promote: [] };
        const extraCreates: string[] = [];
        for (const ops of plan) {
          const before = state;
          const answers = await Promise.all(ops.map((o) => call(o, id)));
          for (const answer of answers) {
            expect([200, 201, 409], `${answer.op}: ${JSON.stringify(answer.body)}`).toContain(answer.status);
          }
          // Replay the events this round wrote, in the database's order.
          const events = (await operatorEvents(id)).slice(seenEvents);
          seenEvents += events.length;
          const states: State[] = [before];
          for (const event of events) {
            const action = ACTION_EVENTS[event.type]!;
            const next = transition(state, action);
            expect(next, `${action} from ${JSON.stringify(state)} (event ${event.id})`).not.toBeNull();
            expect(event.data).toMatchObject({ from: state.stageIndex, to: next!.stageIndex, status: next!.status });
            state = next!;
            states.push(state);
          }
          const ok = (a: Action) => answers.filter((answer) => answer.op === a && answer.status === 200);
          for (const action of ['pause', 'resume', 'abort', 'promote'] as const) {
            const answered = ok(action);
            accepted[action].push(...answered);
            const replayed = events.filter((event) => ACTION_EVENTS[event.type] === action).length;
            expect(replayed, `${action}: events vs accepted calls`).toBe(answered.length);
            for (const answer of answered) {
              expect(
                states.slice(1),
                `${action} answered ${answer.body.status}/${answer.body.stageIndex}`,
              ).toContainEqual({ status: answer.body.status, stageIndex: answer.body.stageIndex });
            }
          }
          for (const answer of answers) {
            if (answer.status !== 409 || answer.op === 'create' || answer.op === 'tick') continue;
            const message = String((answer.body.error as { message?: unknown } | undefined)?.message ?? '');
            if (/keeps changing/.test(message)) continue;
            const action = answer.op;
            // Refusable somewhere in the round, or a promote out of the last stage waiting for devices.
            const refusable = states.some(
              (s) => transition(s, action) === null || (action === 'promote' && s.stageIndex === STAGES.length - 1),
            );
            expect(refusable, `${action} refused (${message}) though legal in ${JSON.stringify(states)}`).toBe(true);
          }
          const current = await unwrap(t.client.rollouts.get(id));
          expect({ status: current.status, stageIndex: current.stageIndex }).toEqual(state);
          // Creates: only while this rollout was terminal at some point; never two active at once.
          const madeNew = answers.filter((answer) => answer.op === 'create' && answer.status === 201);
          if (madeNew.length > 0) {
            expect(states.some((s) => !ACTIVE.has(s.status))).toBe(true);
            extraCreates.push(...madeNew.map((answer) => answer.body.id as string));
          }
          expect((await activeRollouts()).length).toBeLessThanOrEqual(1);
        }
        // The audit log: one entry per accepted call of this rollout, with what it answered.
        await eventually(async () => {
          for (const action of ['pause', 'resume', 'abort', 'promote'] as const) {
            const entries = (
              await unwrap(
                t.client.audit.list({ target: id, action: `POST /api/v1/rollouts/:id/${action}`, limit: 500 }),
              )
            ).items;
            if (entries.length !== accepted[action].length) return false;
            for (const entry of entries) expect(entry.status).toBe(200);
          }
          return true;
        });
        const createdEntries = (await unwrap(t.client.audit.list({ action: 'POST /api/v1/rollouts', limit: 500 })))
          .items;
        for (const createdId of [id, ...extraCreates]) {
          expect(createdEntries.filter((entry) => entry.target === createdId)).toHaveLength(1);
        }
      }),
      {
        numRuns: 35,
        // Always tried as well: to completion (a promote out of the last stage once a tick handed
        // the model over), then calls on the completed rollout and a create racing them.
        examples: [
          [[['promote'], ['promote'], ['tick'], ['promote', 'pause', 'abort', 'create', 'create', 'resume']]],
          [
            [
              ['pause', 'abort', 'promote', 'resume', 'create', 'tick'],
              ['create', 'create', 'create'],
            ],
          ],
        ],
      },
    );
    await abortActive();
  }, 60_000);
});
