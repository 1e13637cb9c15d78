import { describe, expect, it } from 'vitest';
import { backoffDelay, sleepUnlessAborted } from './frame-source.ts';

describe('backoffDelay', () => {
  it('doubles from the initial delay and stops at the cap', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, 500, 5000))).toEqual([500, 1000, 2000, 4000, 5000, 5000]);
    expect(backoffDelay(1000, 500, 30_000)).toBe(30_000);
  });
});

describe('sleepUnlessAborted', () => {
  it('resolves true after the full wait and false at once when aborted', async () => {
    expect(await sleepUnlessAborted(5, new AbortController().signal)).toBe(true);
    const controller = new AbortController();
    const pending = sleepUnlessAborted(60_000, controller.signal);
    controller.abort();
    expect(await pending).toBe(false);
    expect(await sleepUnlessAborted(10, controller.signal)).toBe(false);
  });
});
