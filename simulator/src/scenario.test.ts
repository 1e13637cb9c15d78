import { describe, expect, it } from 'vitest';
import { assignHardware, durationMs, parseScenario, resolveTarget } from './scenario.ts';

describe('parseScenario', () => {
  it('reads a scenario with durations and defaults', () => {
    const result = parseScenario(
      JSON.stringify({
        name: 'flaky',
        steps: [
          { at: '30s', action: 'kill', target: { percent: 50 } },
          { at: 90, action: 'flap', target: { count: 3 }, for: '1m' },
        ],
      }),
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.steps[1]?.periodS).toBe(5);
    expect(durationMs(result.value.steps[0]!.at)).toBe(30_000);
    expect(durationMs(result.value.steps[1]!.for!)).toBe(60_000);
  });

  it('lists every problem of a bad file', () => {
    const result = parseScenario(JSON.stringify({ steps: [{ at: 'soon', action: 'explode' }] }));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.message).toContain('name');
    expect(result.error.message).toContain('steps.0.at');
    expect(result.error.message).toContain('steps.0.action');
  });

  it('reads scene-change and scene-restore steps aimed at a site', () => {
    const result = parseScenario(
      JSON.stringify({
        name: 'closed-loop',
        steps: [
          { at: '1m', action: 'scene-change', target: { site: 'b' }, scene: 'snow' },
          { at: '5m', action: 'scene-restore', target: { site: 'b' } },
        ],
      }),
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.steps.map((step) => [step.action, step.scene, step.target.site])).toEqual([
      ['scene-change', 'snow', 'b'],
      ['scene-restore', undefined, 'b'],
    ]);
  });

  it('refuses a scene-change without its scene, and a scene on another action', () => {
    const result = parseScenario(
      JSON.stringify({
        name: 'bad-scenes',
        steps: [
          { at: '1m', action: 'scene-change', target: { site: 'b' } },
          { at: '2m', action: 'kill', scene: 'snow' },
          { at: '3m', action: 'scene-change', scene: 'Snow Storm' },
        ],
      }),
    );
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.message).toContain('steps.0.scene: a scene-change step names its scene');
    expect(result.error.message).toContain('steps.1.scene: "scene" belongs to scene-change steps, not kill');
    expect(result.error.message).toContain('steps.2.scene');
  });

  it('rejects text that is not JSON', () => {
    const result = parseScenario('{name:');
    expect(result.ok ? 'ok' : result.error.code).toBe('invalid_scenario');
  });

  it('converts every unit', () => {
    expect(['500ms', '2s', '1.5m', '1h'].map((d) => durationMs(d))).toEqual([500, 2000, 90_000, 3_600_000]);
  });
});

describe('targets and fleet layout', () => {
  const fleet = Array.from({ length: 100 }, (_, i) => ({
    id: `sim-${i}`,
    ...assignHardware(i, undefined, ['a', 'b']),
  }));

  it('picks a stable share of the fleet, filtered by hardware', () => {
    const half = resolveTarget({ percent: 50 }, fleet, 'step-1');
    expect(half).toHaveLength(50);
    expect(resolveTarget({ percent: 50 }, fleet, 'step-1')).toEqual(half);
    expect(resolveTarget({ percent: 50 }, fleet, 'step-2')).not.toEqual(half);
    const pis = resolveTarget({ hardware: 'rpi5' }, fleet, 's');
    expect(pis.length).toBeGreaterThan(0);
    expect(pis.every((d) => d.hardware === 'rpi5')).toBe(true);
  });

  it('spreads hardware by the mix weights and sites round robin', () => {
    const counts: Record<string, number> = {};
    for (const d of fleet) counts[d.hardware] = (counts[d.hardware] ?? 0) + 1;
    expect(counts['orin-nano']).toBeGreaterThan(counts['x86-gpu'] ?? 0);
    expect(Object.keys(counts).sort()).toEqual(['orin-nano', 'orin-nx', 'rpi5', 'x86-gpu', 'xavier-nx']);
    expect(fleet.filter((d) => d.site === 'a')).toHaveLength(50);
  });
});

describe('scenario files in the repository', () => {
  it('all parse', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const dir = join(import.meta.dirname, '..', 'scenarios');
    const files = readdirSync(dir).filter((name) => name.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(5);
    for (const file of files) {
      const parsed = parseScenario(readFileSync(join(dir, file), 'utf8'));
      expect(parsed.ok, `${file}: ${parsed.ok ? '' : parsed.error.message}`).toBe(true);
    }
  });
});
