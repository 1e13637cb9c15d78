import { describe, expect, it } from 'vitest';
import { FINAL_STATES, nextProgress, TRANSITIONS, UPDATE_STATES, type UpdateProgress } from './transitions.ts';

const at = (state: UpdateProgress['state'], loadAttempts = 0): UpdateProgress => ({
  state,
  loadAttempts,
  code: null,
  reason: null,
});

describe('model update transitions', () => {
  it('walks the happy path to committed', () => {
    let p: UpdateProgress | null = at('notified');
    for (const event of [
      { type: 'start' },
      { type: 'downloaded' },
      { type: 'verified' },
      { type: 'loaded' },
      { type: 'warmed', shadow: false },
      { type: 'healthy' },
    ] as const) {
      p = nextProgress(p as UpdateProgress, event);
    }
    expect(p?.state).toBe('committed');
  });

  it('skips the download when the bytes are already in a slot, but still verifies them', () => {
    expect(nextProgress(at('notified'), { type: 'present' })?.state).toBe('verifying');
    expect(nextProgress(at('downloading'), { type: 'present' })).toBeNull();
  });

  it('goes through shadow when the assignment is a shadow one, then active on promotion', () => {
    const shadow = nextProgress(at('warming'), { type: 'warmed', shadow: true });
    expect(shadow?.state).toBe('shadow');
    expect(nextProgress(shadow as UpdateProgress, { type: 'promoted' })?.state).toBe('active');
  });

  it('ends every failure in reverted with its code and reason', () => {
    for (const state of UPDATE_STATES.filter((s) => !FINAL_STATES.has(s))) {
      const p = nextProgress(at(state), { type: 'failed', code: 'hash_mismatch', reason: 'bytes differ' });
      expect(p).toEqual({ state: 'reverted', loadAttempts: 0, code: 'hash_mismatch', reason: 'bytes differ' });
    }
  });

  it('final states ignore every event', () => {
    for (const state of FINAL_STATES) {
      expect(Object.keys(TRANSITIONS[state])).toEqual([]);
      expect(nextProgress(at(state), { type: 'restarted' })).toBeNull();
    }
  });

  it('resumes work after a restart before the switch', () => {
    expect(nextProgress(at('downloading'), { type: 'restarted' })?.state).toBe('downloading');
    expect(nextProgress(at('verifying'), { type: 'restarted' })?.state).toBe('verifying');
  });

  it('guards against a crash loop while loading', () => {
    const once = nextProgress(at('warming'), { type: 'restarted' });
    expect(once).toMatchObject({ state: 'loading', loadAttempts: 1 });
    const twice = nextProgress(once as UpdateProgress, { type: 'restarted' });
    expect(twice).toMatchObject({ state: 'reverted', code: 'crash_loop' });
  });

  it('reverts a restart after the switch but before the health check passed', () => {
    expect(nextProgress(at('active'), { type: 'restarted' })).toMatchObject({
      state: 'reverted',
      code: 'restarted_before_commit',
    });
  });

  it('ignores events that do not apply', () => {
    expect(nextProgress(at('downloading'), { type: 'healthy' })).toBeNull();
    expect(nextProgress(at('notified'), { type: 'promoted' })).toBeNull();
  });
});
