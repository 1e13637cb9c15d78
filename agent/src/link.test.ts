import { describe, expect, it } from 'vitest';
import { computeBackoffMs } from './link.ts';
import { createSeededRandom as seeded } from './seeded-random.ts';

describe('reconnect backoff', () => {
  const policy = { initialMs: 500, maxMs: 30_000, jitter: 0.5 };

  it('doubles from initialMs and stops at maxMs', () => {
    const noJitter = { ...policy, jitter: 0 };
    const delays = Array.from({ length: 10 }, (_, attempt) => computeBackoffMs(attempt, noJitter, () => 0.99));
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
  });

  it('keeps every jittered delay within [base * (1 - jitter), base] and never above maxMs', () => {
    const random = seeded(42);
    for (let attempt = 0; attempt < 60; attempt += 1) {
      const base = Math.min(30_000, 500 * 2 ** attempt);
      const delay = computeBackoffMs(attempt, policy, random);
      expect(delay).toBeGreaterThanOrEqual(Math.floor(base * 0.5));
      expect(delay).toBeLessThanOrEqual(base);
      expect(delay).toBeLessThanOrEqual(30_000);
    }
  });

  it('grows on average and spreads devices apart', () => {
    const random = seeded(7);
    const mean = (attempt: number) =>
      Array.from({ length: 200 }, () => computeBackoffMs(attempt, policy, random)).reduce((a, b) => a + b) / 200;
    expect(mean(1)).toBeGreaterThan(mean(0));
    expect(mean(4)).toBeGreaterThan(mean(2));
    const firstDelays = new Set(Array.from({ length: 100 }, () => computeBackoffMs(0, policy, random)));
    expect(firstDelays.size).toBeGreaterThan(50);
  });

  it('is deterministic for a seeded random source', () => {
    const a = seeded(1);
    const b = seeded(1);
    const run = (random: () => number) => [0, 1, 2, 3].map((attempt) => computeBackoffMs(attempt, policy, random));
    expect(run(a)).toEqual(run(b));
  });
});
