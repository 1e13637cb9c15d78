import type { ModelAssignment, ModelRef, SignedModelRelease } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { type AssignmentInput, decideAssignment } from './assignment.ts';
import type { UpdateState } from './transitions.ts';
import type { UpdateRecord } from './update-record.ts';

const ref = (version: string, sha: string): ModelRef => ({
  id: `det@${version}`,
  name: 'det',
  version,
  sha256: sha.repeat(64),
});
const V1 = ref('1.0.0', 'a');
const V2 = ref('2.0.0', 'b');
const V3 = ref('3.0.0', 'c');

const signed = (model: ModelRef, signature: string) =>
  ({
    release: { name: model.name, version: model.version, sha256: model.sha256 },
    signature,
  }) as unknown as SignedModelRelease;

const assign = (
  model: ModelRef,
  options: { rolloutId?: string | null; mode?: 'active' | 'shadow'; signature?: string; expiresAt?: number } = {},
): ModelAssignment => ({
  ...(options.expiresAt !== undefined ? { expiresAt: options.expiresAt } : {}),
  rolloutId: options.rolloutId === undefined ? 'r1' : options.rolloutId,
  model,
  mode: options.mode ?? 'active',
  url: `/api/v1/models/det/${model.version}/file`,
  signed: signed(model, options.signature ?? `sig-${model.version}`),
});

const recordOf = (assignment: ModelAssignment, state: UpdateState): UpdateRecord => ({
  rolloutId: assignment.rolloutId,
  mode: assignment.mode,
  target: assignment.model,
  url: assignment.url,
  signed: assignment.signed,
  state,
  loadAttempts: 0,
  code: null,
  reason: null,
  slot: null,
  previous: { ref: null, slot: null },
  rollback: false,
  startedAt: 0,
  updatedAt: 0,
});

/** The device clock of these cases. */
const NOW = Date.parse('2026-05-01T10:00:00Z');

const decide = (input: Partial<AssignmentInput>) =>
  decideAssignment({ assignment: undefined, running: null, last: null, active: null, now: NOW, ...input }).kind;

const decision = (input: Partial<AssignmentInput>) =>
  decideAssignment({ assignment: undefined, running: null, last: null, active: null, now: NOW, ...input });

const finished = (assignment: ModelAssignment, state: 'committed' | 'reverted' = 'committed') => ({
  rolloutId: assignment.rolloutId as string,
  sha256: assignment.model.sha256,
  mode: assignment.mode,
  state,
});

describe('decideAssignment', () => {
  it('leaves models alone for undefined, and goes back to the local model for null', () => {
    expect(decide({ assignment: undefined, active: V1 })).toBe('ignore');
    expect(decide({ assignment: null, running: recordOf(assign(V2), 'downloading') })).toBe('local');
  });

  it('keeps the update under way for the same target and mode, and promotes a shadow to active', () => {
    const shadow = assign(V2, { mode: 'shadow' });
    expect(decide({ assignment: shadow, running: recordOf(shadow, 'shadow') })).toBe('keep');
    expect(decide({ assignment: assign(V2), running: recordOf(shadow, 'shadow') })).toBe('promote');
  });

  it('makes the running update give way to any other assignment, even one of the active bytes', () => {
    const running = recordOf(assign(V2), 'downloading');
    expect(decide({ assignment: assign(V2, { rolloutId: 'r2' }), running })).toBe('supersede');
    expect(decide({ assignment: assign(V2, { signature: 'another' }), running })).toBe('supersede');
    expect(decide({ assignment: assign(V1), running, active: V1 })).toBe('supersede');
    expect(decide({ assignment: assign(V2, { mode: 'shadow' }), running })).toBe('supersede');
  });

  it('does not retry an update that ended with the same target and mode, whatever its outcome', () => {
    for (const state of ['committed', 'reverted'] as const) {
      expect(decide({ assignment: assign(V2), last: recordOf(assign(V2), state), active: V1 })).toBe('keep');
    }
    // Another rollout, another signed release or another mode of the same bytes is a new assignment.
    expect(decide({ assignment: assign(V2, { rolloutId: 'r2' }), last: recordOf(assign(V2), 'reverted') })).toBe(
      'start',
    );
  });

  it('ends an assignment of the bytes already running at once, by sha256 and not by name', () => {
    const sameBytes = { ...V2, id: 'det@2.0.1', version: '2.0.1', sha256: V1.sha256 };
    expect(decide({ assignment: assign(sameBytes), active: V1 })).toBe('already-active');
    // The rollback of a rollout to the model that never left.
    expect(
      decide({ assignment: assign(V1, { rolloutId: 'r9' }), last: recordOf(assign(V2), 'reverted'), active: V1 }),
    ).toBe('already-active');
  });

  it('starts an update for new bytes, with or without a model running', () => {
    expect(decide({ assignment: assign(V2), active: V1 })).toBe('start');
    expect(decide({ assignment: assign(V2), active: null })).toBe('start');
  });

  it('refuses an assignment whose expiresAt is before the device clock, before any download or cancel', () => {
    const expired = assign(V2, { expiresAt: NOW - 1 });
    expect(decision({ assignment: expired, active: V1 })).toEqual({ kind: 'refuse', reason: 'assignment-expired' });
    // It does not make the running update give way either.
    const running = recordOf(assign(V3), 'downloading');
    expect(decide({ assignment: expired, running, active: V1 })).toBe('refuse');
    // Valid until the instant itself; an assignment stored before expiresAt existed never expires.
    expect(decide({ assignment: assign(V2, { expiresAt: NOW }), active: V1 })).toBe('start');
    expect(decide({ assignment: assign(V2), active: V1 })).toBe('start');
  });

  it('keeps, without a refusal, a stale copy of the update under way or of the one that just ended', () => {
    const live = assign(V2, { expiresAt: NOW + 1000 });
    const stale = { ...live, expiresAt: NOW - 1000 };
    expect(decide({ assignment: stale, running: recordOf(live, 'downloading') })).toBe('keep');
    expect(decide({ assignment: stale, last: recordOf(live, 'committed'), active: V2 })).toBe('keep');
    // An expired promotion of a running shadow is refused: no switch.
    const shadow = assign(V2, { mode: 'shadow' });
    expect(
      decide({ assignment: { ...shadow, mode: 'active', expiresAt: NOW - 1 }, running: recordOf(shadow, 'shadow') }),
    ).toBe('refuse');
  });

  it('refuses as replayed a rollout assignment that already ended here, committed or reverted', () => {
    const first = assign(V2, { rolloutId: 'r1' });
    const done = [finished(first), finished(assign(V3, { rolloutId: 'r2' }), 'reverted')];
    // The device moved on (r2 ran since); r1's assignment of V2 arrives again.
    expect(
      decision({
        assignment: first,
        last: recordOf(assign(V1, { rolloutId: 'r3' }), 'committed'),
        active: V1,
        finished: done,
      }),
    ).toEqual({
      kind: 'refuse',
      reason: 'assignment-replayed',
    });
    expect(decide({ assignment: assign(V3, { rolloutId: 'r2' }), active: V1, finished: done })).toBe('refuse');
    // The rollback of r1 names other bytes, another mode is another assignment, a direct one is never a replay.
    expect(decide({ assignment: assign(V1, { rolloutId: 'r1' }), active: V2, finished: done })).toBe('start');
    expect(decide({ assignment: assign(V2, { rolloutId: 'r1', mode: 'shadow' }), active: V1, finished: done })).toBe(
      'start',
    );
    expect(
      decide({
        assignment: assign(V2, { rolloutId: null }),
        active: V1,
        finished: [{ ...finished(first), rolloutId: 'x' }],
      }),
    ).toBe('start');
  });
});
