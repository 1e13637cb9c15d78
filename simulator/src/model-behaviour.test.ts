import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSeededRandom } from '@edgeloop/agent';
import type { ModelRef } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { createBehaviourTable, parseModelBehaviourFile, profileIn } from './model-behaviour.ts';
import { DEFAULT_MODEL_PROFILE, HARDWARE_PROFILES } from './profiles.ts';
import { syntheticPipelineWindow } from './synthetic-metrics.ts';

const ref = (id: string, sha256 = 'a'.repeat(64)): ModelRef => {
  const [name = '', version = ''] = id.split('@');
  return { id, name, version, sha256 };
};

describe('model behaviour files', () => {
  it('reads behaviours keyed by name@version, sha256 and *', () => {
    const parsed = parseModelBehaviourFile(
      JSON.stringify({
        models: {
          'det@2.0.0': { latencyFactor: 1.3 },
          ['b'.repeat(64)]: { crashOnLoad: true },
          '*': { maxFps: 2, detectionsPerFrame: { person: 1 } },
        },
      }),
    );
    expect(parsed.ok && Object.keys(parsed.value.models)).toEqual(['det@2.0.0', 'b'.repeat(64), '*']);
  });

  it('lists every problem: an unknown field, a bad key, a bad number', () => {
    const parsed = parseModelBehaviourFile(
      JSON.stringify({ models: { 'Det 2': {}, 'det@2.0.0': { latencyFactor: -1, speed: 2 } } }),
    );
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.error.message).toContain('a model key is name@version');
      expect(parsed.error.message).toContain('models.det@2.0.0.latencyFactor');
      expect(parsed.error.message).toMatch(/speed/);
    }
    expect(parseModelBehaviourFile('{').ok).toBe(false);
  });

  it('plays an unnamed model like the current one, a named one by id or sha256, both over the * base', () => {
    const table = createBehaviourTable({
      '*': { detectionFactor: 0 },
      'det@2.0.0': { latencyFactor: 2 },
      ['c'.repeat(64)]: { crashOnLoad: true },
    });
    const plain = table.of(ref('det@1.0.0'));
    expect(plain.crashOnLoad).toBe(false);
    expect(plain.profile.latencyMs).toBe(DEFAULT_MODEL_PROFILE.latencyMs);
    expect(Object.values(plain.profile.detectionsPerFrame).every((rate) => rate === 0)).toBe(true);
    const slow = table.of(ref('det@2.0.0'));
    expect(slow.profile.latencyMs).toBe(DEFAULT_MODEL_PROFILE.latencyMs * 2);
    expect(Object.values(slow.profile.detectionsPerFrame).every((rate) => rate === 0)).toBe(true);
    expect(table.of(ref('other@1.0.0', 'c'.repeat(64))).crashOnLoad).toBe(true);
    expect(createBehaviourTable().of(ref('x@1.0.0')).profile).toEqual(DEFAULT_MODEL_PROFILE);
  });

  it('plays the base scene entry for a model that does not name the scene, and its own where it does', () => {
    const table = createBehaviourTable({
      '*': { scenes: { snow: { confidenceShift: -0.25 } } },
      'det@2.0.0': { latencyFactor: 1.5, scenes: { snow: { confidenceShift: 0 } } },
      'det@3.0.0': { scenes: { fog: { detectionFactor: 0.5 } } },
    });
    const current = table.of(ref('det@1.0.0'));
    expect(current.profile.confidenceMean).toBeCloseTo(DEFAULT_MODEL_PROFILE.confidenceMean);
    expect(current.scenes.snow?.confidenceMean).toBeCloseTo(DEFAULT_MODEL_PROFILE.confidenceMean - 0.25);
    expect(profileIn(current, 'snow').confidenceMean).toBeCloseTo(DEFAULT_MODEL_PROFILE.confidenceMean - 0.25);
    expect(profileIn(current, null)).toBe(current.profile);
    expect(profileIn(current, 'night')).toBe(current.profile);
    const retrained = table.of(ref('det@2.0.0'));
    expect(profileIn(retrained, 'snow').confidenceMean).toBeCloseTo(DEFAULT_MODEL_PROFILE.confidenceMean);
    expect(profileIn(retrained, 'snow').latencyMs).toBeCloseTo(DEFAULT_MODEL_PROFILE.latencyMs * 1.5);
    // det@3.0.0 names fog but not snow: on snow it plays the base's entry over its own profile.
    const other = table.of(ref('det@3.0.0'));
    expect(profileIn(other, 'snow').confidenceMean).toBeCloseTo(DEFAULT_MODEL_PROFILE.confidenceMean - 0.25);
    expect(profileIn(other, 'fog').detectionsPerFrame.person).toBeCloseTo(
      (DEFAULT_MODEL_PROFILE.detectionsPerFrame.person ?? 0) * 0.5,
    );
    expect(profileIn(other, 'fog').confidenceMean).toBeCloseTo(DEFAULT_MODEL_PROFILE.confidenceMean);
  });

  it('a less sure model on a changed scene shifts the confidence histogram down and raises near-threshold', () => {
    const played = createBehaviourTable({ '*': { scenes: { snow: { confidenceShift: -0.25 } } } }).of(ref('det@1.0.0'));
    const window = (profile: typeof played.profile, seed: number) =>
      syntheticPipelineWindow({
        hardware: HARDWARE_PROFILES['orin-nano']!,
        model: profile,
        modelRef: null,
        windowS: 10,
        cameraFps: 15,
        now: 0,
        random: createSeededRandom(seed),
        lastInferenceAt: null,
      });
    const mean = (histogram: readonly number[]) => {
      const total = histogram.reduce((a, b) => a + b, 0);
      return histogram.reduce((sum, count, bin) => sum + count * (bin + 0.5), 0) / total / histogram.length;
    };
    const normal = window(played.profile, 7);
    const snow = window(profileIn(played, 'snow'), 7);
    expect(mean(snow.confidenceHistogram)).toBeLessThan(mean(normal.confidenceHistogram) - 0.15);
    expect(snow.nearThresholdShare).toBeGreaterThan(normal.nearThresholdShare + 0.15);
  });

  it('refuses a scene entry that crashes or nests scenes, and a badly named scene', () => {
    const parsed = parseModelBehaviourFile(
      JSON.stringify({
        models: { '*': { scenes: { snow: { crashOnLoad: true, scenes: {} }, 'Bad Scene': { confidenceShift: 0 } } } },
      }),
    );
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.error.message).toMatch(/crashOnLoad/);
      expect(parsed.error.message).toMatch(/scenes/);
      expect(parsed.error.message).toContain('a scene name is lowercase');
    }
  });

  it('caps the frames a model processes at its maxFps', () => {
    const profile = createBehaviourTable({ '*': { maxFps: 1.5 } }).of(ref('det@1.0.0')).profile;
    const window = syntheticPipelineWindow({
      hardware: HARDWARE_PROFILES['x86-gpu']!,
      model: profile,
      modelRef: null,
      windowS: 10,
      cameraFps: 15,
      now: 0,
      random: () => 0.5,
      lastInferenceAt: null,
    });
    expect(window.framesProcessed).toBe(15);
    expect(window.framesDropped).toBe(135);
    expect(window.fps).toBe(1.5);
  });

  it('every behaviour file in simulator/scenarios/models parses', () => {
    const dir = join(import.meta.dirname, '..', 'scenarios', 'models');
    const files = readdirSync(dir).filter((name) => name.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const file of files) {
      const parsed = parseModelBehaviourFile(readFileSync(join(dir, file), 'utf8'));
      expect(parsed.ok, `${file}: ${parsed.ok ? '' : parsed.error.message}`).toBe(true);
    }
  });
});
