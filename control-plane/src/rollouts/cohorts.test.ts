import { describe, expect, it } from 'vitest';
import { controlAt, dueAt, inMaintenanceWindow, selectCohorts, stableUnit, stageSize } from './cohorts.ts';
import { CanarySpec, DEFAULT_STAGES, RolloutSpec } from './spec.ts';

const hardware = ['orin-nano', 'orin-nx', 'rpi5'];
const sites = ['lyon', 'oslo'];
const fleet = Array.from({ length: 120 }, (_, i) => ({
  id: `cam-${String(i).padStart(3, '0')}`,
  hardware: hardware[i % 3] ?? null,
  site: sites[Math.floor(i / 3) % 2] ?? null,
}));

describe('selectCohorts', () => {
  it('covers every hardware and site combination in the canary and mirrors it in the control', () => {
    const cohorts = selectCohorts('r1', fleet, CanarySpec.parse({}));
    const combos = (ids: readonly string[]) =>
      new Set(ids.map((id) => fleet.find((d) => d.id === id)).map((d) => `${d?.hardware}|${d?.site}`));
    expect(combos(cohorts.canary).size).toBe(6);
    expect(combos(cohorts.control)).toEqual(combos(cohorts.canary));
    expect(cohorts.control.length).toBe(cohorts.canary.length);
    expect(new Set([...cohorts.canary, ...cohorts.control]).size).toBe(cohorts.canary.length * 2);
  });

  it('orders every target once, canary first and control last', () => {
    const cohorts = selectCohorts('r1', fleet, CanarySpec.parse({}));
    expect(new Set(cohorts.order).size).toBe(fleet.length);
    expect(cohorts.order.slice(0, cohorts.canary.length)).toEqual(cohorts.canary);
    expect(cohorts.order.slice(-cohorts.control.length)).toEqual(cohorts.control);
  });

  it('is deterministic per rollout and differs between rollouts', () => {
    const a = selectCohorts('r1', fleet, CanarySpec.parse({}));
    const b = selectCohorts('r1', [...fleet].reverse(), CanarySpec.parse({}));
    const c = selectCohorts('r2', fleet, CanarySpec.parse({}));
    expect(b).toEqual(a);
    expect(c.order).not.toEqual(a.order);
  });

  it('keeps half of a tiny target for control', () => {
    const cohorts = selectCohorts('r1', fleet.slice(0, 4), CanarySpec.parse({ minSize: 3 }));
    expect(cohorts.canary.length).toBe(2);
    expect(cohorts.control.length).toBe(2);
  });
});

describe('stage sizes', () => {
  it('grows cumulatively and never below the canary cohort', () => {
    const cohorts = selectCohorts('r1', fleet, CanarySpec.parse({}));
    const sizes = DEFAULT_STAGES.map((stage) => stageSize(stage, cohorts));
    expect(sizes).toEqual([6, 6, 6, 12, 60, 120]);
    expect(controlAt(DEFAULT_STAGES[3]!, cohorts)).toHaveLength(6);
    expect(controlAt(DEFAULT_STAGES[5]!, cohorts)).toHaveLength(0);
  });
});

describe('maintenance windows and jitter', () => {
  it('allows any time without windows and respects windows that wrap midnight', () => {
    const at = (iso: string) => Date.parse(iso);
    expect(inMaintenanceWindow([], at('2026-01-05T12:00:00Z'))).toBe(true);
    const nightly = [{ start: '22:00', end: '04:00', days: [1] }];
    expect(inMaintenanceWindow(nightly, at('2026-01-05T23:00:00Z'))).toBe(true); // Monday 23:00
    expect(inMaintenanceWindow(nightly, at('2026-01-06T03:00:00Z'))).toBe(true); // Monday's window, Tuesday 03:00
    expect(inMaintenanceWindow(nightly, at('2026-01-06T23:00:00Z'))).toBe(false); // Tuesday
    expect(inMaintenanceWindow(nightly, at('2026-01-05T12:00:00Z'))).toBe(false);
  });

  it('spreads due times over the jitter span', () => {
    const spec = RolloutSpec.parse({ modelId: 'm@1.0.0', jitterS: 100 });
    const dues = fleet.map((d) => dueAt('r1', d.id, 0, spec));
    expect(Math.min(...dues)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...dues)).toBeLessThan(100_000);
    expect(Math.max(...dues) - Math.min(...dues)).toBeGreaterThan(50_000);
    expect(stableUnit('r1', 'cam-001')).toBe(stableUnit('r1', 'cam-001'));
  });
});
