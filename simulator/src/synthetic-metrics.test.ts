import { createSeededRandom } from '@edgeloop/agent';
import { PipelineMetrics, SystemMetrics } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { applyBehaviour, DEFAULT_MODEL_PROFILE, HARDWARE_PROFILES, hardwareProfile } from './profiles.ts';
import { syntheticPipelineWindow, syntheticShadowWindow, syntheticSystemMetrics } from './synthetic-metrics.ts';

const model = { id: 'det@1.0.0', name: 'det', version: '1.0.0', sha256: 'c'.repeat(64) };

describe('synthetic pipeline metrics', () => {
  it('match the real agent schema on every hardware profile and add up', () => {
    for (const hardware of Object.values(HARDWARE_PROFILES)) {
      const window = syntheticPipelineWindow({
        hardware,
        model: DEFAULT_MODEL_PROFILE,
        modelRef: model,
        windowS: 10,
        cameraFps: 15,
        now: 1_700_000_000_000,
        random: createSeededRandom(7),
        lastInferenceAt: null,
      });
      expect(PipelineMetrics.safeParse(window).success).toBe(true);
      expect(window.framesIn).toBe(150);
      expect(window.framesProcessed + window.framesDropped + window.inferenceErrors).toBe(window.framesIn);
    }
  });

  it('makes a Raspberry Pi slower than an Orin NX and drop frames', () => {
    const run = (name: string) =>
      syntheticPipelineWindow({
        hardware: hardwareProfile(name),
        model: DEFAULT_MODEL_PROFILE,
        modelRef: model,
        windowS: 10,
        cameraFps: 15,
        now: 0,
        random: createSeededRandom(1),
        lastInferenceAt: null,
      });
    const pi = run('rpi5');
    const nx = run('orin-nx');
    expect(pi.latencyMs.inference?.p50).toBeGreaterThan(10 * (nx.latencyMs.inference?.p50 ?? 0));
    expect(pi.framesDropped).toBeGreaterThan(0);
    expect(nx.framesDropped).toBe(0);
  });

  it('shows a bad model as slower with fewer detections', () => {
    const hardware = hardwareProfile('orin-nano');
    const window = (behaviour?: Parameters<typeof applyBehaviour>[1]) =>
      syntheticPipelineWindow({
        hardware,
        model: applyBehaviour(DEFAULT_MODEL_PROFILE, behaviour),
        modelRef: model,
        windowS: 60,
        cameraFps: 15,
        now: 0,
        random: createSeededRandom(3),
        lastInferenceAt: null,
      });
    const good = window();
    const bad = window({ latencyFactor: 3, detectionFactor: 0.4 });
    const total = (w: PipelineMetrics) => Object.values(w.detectionsPer1000).reduce((a, b) => a + b, 0);
    expect((bad.latencyMs.inference?.p95 ?? 0) / (good.latencyMs.inference?.p95 ?? 1)).toBeGreaterThan(2.5);
    expect(total(bad) / total(good)).toBeLessThan(0.5);
  });

  it('stalls: frames in, none processed, liveness stays at the last inference', () => {
    const window = syntheticPipelineWindow({
      hardware: hardwareProfile('orin-nano'),
      model: DEFAULT_MODEL_PROFILE,
      modelRef: model,
      windowS: 10,
      cameraFps: 15,
      now: 5000,
      random: createSeededRandom(3),
      stalled: true,
      lastInferenceAt: 1000,
    });
    expect(window.framesProcessed).toBe(0);
    expect(window.framesDropped).toBe(150);
    expect(window.lastInferenceAt).toBe(1000);
  });
});

describe('synthetic system metrics', () => {
  it('raise camera.sceneChange only in the window a scene change happens in', () => {
    const run = (sceneChange?: boolean) =>
      syntheticPipelineWindow({
        hardware: hardwareProfile('orin-nano'),
        model: DEFAULT_MODEL_PROFILE,
        modelRef: model,
        windowS: 10,
        cameraFps: 15,
        now: 0,
        random: createSeededRandom(3),
        lastInferenceAt: null,
        ...(sceneChange === undefined ? {} : { sceneChange }),
      });
    expect([run(true).camera?.sceneChange, run(false).camera?.sceneChange, run().camera?.sceneChange]).toEqual([
      true,
      false,
      false,
    ]);
    expect(PipelineMetrics.safeParse(run(true)).success).toBe(true);
  });

  it('are valid and heat up when a scenario overheats the device', () => {
    const base = { hardware: hardwareProfile('xavier-nx'), uptimeS: 10, utilisation: 0.5, diskUsedShare: 0.3 };
    const cool = syntheticSystemMetrics({ ...base, extraTempC: 0, random: createSeededRandom(2) });
    const hot = syntheticSystemMetrics({ ...base, extraTempC: 40, random: createSeededRandom(2) });
    expect(SystemMetrics.safeParse(cool).success).toBe(true);
    expect((hot.temperatures.cpuC ?? 0) - (cool.temperatures.cpuC ?? 0)).toBeCloseTo(40, 0);
    expect(hardwareProfile('rpi5').gpu).toBe(false);
    expect(
      syntheticSystemMetrics({
        ...base,
        hardware: hardwareProfile('rpi5'),
        extraTempC: 0,
        random: createSeededRandom(1),
      }).gpu?.loadPct,
    ).toBeNull();
  });
});

describe('synthetic shadow metrics', () => {
  it('gives a candidate that misses objects a low recall', () => {
    const hardware = hardwareProfile('orin-nano');
    const shadow = (factor: number) =>
      syntheticShadowWindow({
        candidate: model,
        current: DEFAULT_MODEL_PROFILE,
        candidateProfile: applyBehaviour(DEFAULT_MODEL_PROFILE, { detectionFactor: factor }),
        hardwareSpeed: hardware.speed,
        framesCompared: 100,
        framesSkipped: 0,
        random: createSeededRandom(4),
      });
    expect(shadow(1).recall).toBeGreaterThan(0.85);
    expect(shadow(0.4).recall).toBeLessThan(0.45);
  });

  it('has no precision or recall in a scene with nothing to detect, like the agent matcher (0/0 is null)', () => {
    const empty = applyBehaviour(DEFAULT_MODEL_PROFILE, { detectionFactor: 0 });
    const window = (current: typeof empty, candidate: typeof empty) =>
      syntheticShadowWindow({
        candidate: model,
        current,
        candidateProfile: candidate,
        hardwareSpeed: 1,
        framesCompared: 100,
        framesSkipped: 0,
        random: createSeededRandom(5),
      });
    expect(window(empty, empty)).toMatchObject({ precision: null, recall: null, perClass: {} });
    // The candidate sees nothing where the current model sees objects: recall 0, precision undefined.
    const blind = window(DEFAULT_MODEL_PROFILE, empty);
    expect(blind.precision).toBeNull();
    expect(blind.recall).toBe(0);
    expect(blind.perClass.person).toMatchObject({ precision: null, recall: 0 });
  });
});
