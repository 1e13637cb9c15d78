import { describe, expect, it } from 'vitest';
import { createDeviceIssues } from './mqtt-front-issues.ts';

function clock(start = 5_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe('auth-failing', () => {
  it('shows after the third failure in a row and clears at the next login', () => {
    const time = clock();
    const issues = createDeviceIssues({ now: time.now });
    issues.noteAuthFailure('cam-1');
    issues.noteAuthFailure('cam-1');
    expect(issues.reasons('cam-1')).toEqual([]);
    issues.noteAuthFailure('cam-1');
    expect(issues.reasons('cam-1')).toEqual(['auth-failing']);
    expect(issues.reasons('cam-2')).toEqual([]);
    expect(issues.noteLogin('cam-1', false)).toBe('allow');
    expect(issues.reasons('cam-1')).toEqual([]);
    expect(issues.size).toBe(0);
  });

  it('clears a window after the last failure, and failures further apart than the window do not add up', () => {
    const time = clock();
    const issues = createDeviceIssues({ now: time.now, windowMs: 60_000 });
    for (let i = 0; i < 3; i++) issues.noteAuthFailure('cam-1');
    time.advance(60_001);
    expect(issues.reasons('cam-1')).toEqual([]);
    for (let i = 0; i < 3; i++) {
      issues.noteAuthFailure('cam-2');
      time.advance(61_000);
    }
    issues.noteAuthFailure('cam-2');
    expect(issues.reasons('cam-2')).toEqual([]);
  });

  it('holds at most maxDevices records, so failures for many ids cannot grow memory', () => {
    const issues = createDeviceIssues({ now: clock().now, maxDevices: 100 });
    for (let i = 0; i < 10_000; i++) issues.noteAuthFailure(`cam-${i}`);
    expect(issues.size).toBe(100);
  });
});

describe('client-id-flapping', () => {
  it('lets takeovers through until the third, then refuses the ones after while the conflict lasts', () => {
    const time = clock();
    const issues = createDeviceIssues({ now: time.now, windowMs: 60_000 });
    expect(issues.noteLogin('cam-1', false)).toBe('allow');
    const verdicts = [];
    for (let i = 0; i < 6; i++) {
      verdicts.push(issues.noteLogin('cam-1', true));
      time.advance(1_000);
    }
    expect(verdicts).toEqual(['allow', 'allow', 'allow', 'refuse', 'refuse', 'refuse']);
    expect(issues.reasons('cam-1')).toEqual(['client-id-flapping']);
    // The holder going away: the other one logs in without a takeover.
    expect(issues.noteLogin('cam-1', false)).toBe('allow');
    expect(issues.reasons('cam-1')).toEqual(['client-id-flapping']);
    time.advance(60_001);
    expect(issues.reasons('cam-1')).toEqual([]);
    expect(issues.noteLogin('cam-1', true)).toBe('allow');
  });

  it('takes a takeover now and then (a device back from a half-open connection) as normal', () => {
    const time = clock();
    const issues = createDeviceIssues({ now: time.now, windowMs: 60_000 });
    for (let i = 0; i < 10; i++) {
      expect(issues.noteLogin('cam-1', true)).toBe('allow');
      time.advance(31_000);
    }
    expect(issues.reasons('cam-1')).toEqual([]);
  });
});
