import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelRef } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { createBehaviourTable, parseModelBehaviourFile } from './model-behaviour.ts';
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
