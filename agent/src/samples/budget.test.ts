import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { SampleLimits } from '@edgeloop/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { createBudget } from './budget.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function tempFile(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'budget-'));
  dirs.push(dir);
  return path.join(dir, 'budget.json');
}
const DAY0 = Date.UTC(2026, 0, 10, 0, 0, 0);

/** Offers one frame a second for `seconds` with 100% selection; returns what was committed. */
async function run(
  budget: ReturnType<typeof createBudget>,
  clock: { t: number },
  limits: SampleLimits,
  seconds: number,
  bytes = 100_000,
) {
  const committed: number[] = [];
  for (let s = 0; s < seconds; s++) {
    clock.t += 1000;
    if (budget.admit(limits, undefined, 'random') !== 'ok') continue;
    if (budget.commit(limits, undefined, 'random', bytes) === 'ok') {
      committed.push(clock.t);
      await budget.flush();
    }
  }
  return committed;
}

describe('sample budget', async () => {
  it('never lets more than perMinute samples into any rolling minute with 100% selection', async () => {
    const clock = { t: DAY0, now: () => clock.t };
    const committed = await run(createBudget({ file: null, clock }), clock, { perMinute: 10 }, 600);
    expect(committed.length).toBe(100);
    for (let i = 10; i < committed.length; i++) {
      expect((committed[i] as number) - (committed[i - 10] as number)).toBeGreaterThanOrEqual(60_000);
    }
  });

  it('never exceeds bytesPerDay, counting encoded bytes at commit', async () => {
    const clock = { t: DAY0, now: () => clock.t };
    const budget = createBudget({ file: null, clock });
    const committed = await run(budget, clock, { bytesPerDay: 2_000_000 }, 180, 150_000);
    expect(committed.length).toBe(13);
    expect(budget.today()['*']?.bytes).toBeLessThanOrEqual(2_000_000);
    expect(budget.left({ bytesPerDay: 2_000_000 })).toEqual({ today: null, bytesToday: 50_000 });
  });

  it('keeps the day budget across a restart (the counters file is reopened)', async () => {
    const file = tempFile();
    const clock = { t: DAY0, now: () => clock.t };
    const limits = { perDay: 20, bytesPerDay: 2_000_000 };
    expect((await run(createBudget({ file, clock }), clock, limits, 15)).length).toBe(15);
    // A reboot loop: every boot opens the same file and gets only what is left of the day.
    let total = 15;
    for (let boot = 0; boot < 5; boot++) total += (await run(createBudget({ file, clock }), clock, limits, 10)).length;
    expect(total).toBe(20);
    expect(createBudget({ file, clock }).left(limits)).toEqual({ today: 0, bytesToday: 0 });
  });

  it('starts a new day at UTC midnight', async () => {
    const file = tempFile();
    const clock = { t: DAY0, now: () => clock.t };
    const limits = { perDay: 5 };
    expect((await run(createBudget({ file, clock }), clock, limits, 10)).length).toBe(5);
    clock.t = DAY0 + 86_400_000;
    expect((await run(createBudget({ file, clock }), clock, limits, 10)).length).toBe(5);
  });

  it('counts reserved (queued, not yet encoded) samples against the counts and frees them on release', async () => {
    const clock = { t: DAY0, now: () => clock.t };
    const budget = createBudget({ file: null, clock });
    const limits = { perMinute: 2 };
    expect(budget.admit(limits, undefined, 'random')).toBe('ok');
    expect(budget.admit(limits, undefined, 'random')).toBe('ok');
    expect(budget.admit(limits, undefined, 'random')).toBe('rate');
    budget.release('random');
    expect(budget.admit(limits, undefined, 'random')).toBe('ok');
  });

  it('applies a strategy limit on top of the device limit', async () => {
    const clock = { t: DAY0, now: () => clock.t };
    const budget = createBudget({ file: null, clock });
    const own = { perDay: 1 };
    expect(budget.admit({}, own, 'class-rare')).toBe('ok');
    expect(budget.commit({}, own, 'class-rare', 10)).toBe('ok');
    expect(budget.admit({}, own, 'class-rare')).toBe('budget');
    expect(budget.admit({}, undefined, 'random')).toBe('ok');
  });
});
