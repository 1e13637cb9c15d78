import { describe, expect, it } from 'vitest';
import { type DeviceWindow, evaluateStage, psi, summarise } from './gates.ts';
import { EvidenceSpec, GateSpec } from './spec.ts';

const gates = GateSpec.parse({});
const evidence = EvidenceSpec.parse({ minDevices: 3, minFrames: 100, soakS: 10 });
const hist = (peak: number) => Array.from({ length: 20 }, (_, bin) => (bin === peak ? 80 : 5));

function window(id: string, overrides: Partial<DeviceWindow> = {}): DeviceWindow {
  return {
    deviceId: id,
    modelSha256: 'a'.repeat(64),
    frames: 1000,
    errors: 0,
    seconds: 100,
    latencyP95: 20,
    detections: 3000,
    confidence: hist(15),
    shadow: null,
    ...overrides,
  };
}
const cohort = (n: number, overrides: Partial<DeviceWindow> = {}) =>
  Array.from({ length: n }, (_, i) => window(`d${i}`, overrides));

describe('psi', () => {
  it('is zero for identical distributions and grows with shift', () => {
    expect(psi(hist(15), hist(15))).toBeCloseTo(0, 10);
    const small = psi(hist(15), hist(14)) ?? 0;
    expect(small).toBeGreaterThan(0.25);
    const mixed =
      psi(
        hist(15),
        hist(15).map((c, i) => c + (i === 14 ? 10 : 0)),
      ) ?? 0;
    expect(mixed).toBeLessThan(0.1);
    expect(psi([], hist(1))).toBeNull();
  });
});

describe('summarise', () => {
  it('weights latency by frames and averages fps per device', () => {
    const stats = summarise([
      window('a', { frames: 100, latencyP95: 10 }),
      window('b', { frames: 300, latencyP95: 30 }),
    ]);
    expect(stats.latencyP95).toBeCloseTo(25);
    expect(stats.fps).toBeCloseTo(2);
    expect(stats.detectionsPer1000).toBeCloseTo(15_000);
  });
});

describe('evaluateStage', () => {
  const base = { kind: 'live' as const, stageDevices: 5, failedDevices: 0, soakedS: 60 };

  it('passes a candidate that behaves like control', () => {
    const result = evaluateStage({ ...base, candidate: cohort(5), control: cohort(5) }, gates, evidence);
    expect(result.verdict).toBe('pass');
    expect(result.gates.every((g) => g.verdict === 'pass')).toBe(true);
  });

  it('fails a slower model with fewer detections, naming the gates and numbers', () => {
    const bad = cohort(5, { latencyP95: 60, detections: 1200, seconds: 300 });
    const result = evaluateStage({ ...base, candidate: bad, control: cohort(5) }, gates, evidence);
    expect(result.verdict).toBe('fail');
    const failing = result.gates.filter((g) => g.verdict === 'fail').map((g) => g.gate);
    expect(failing).toEqual(expect.arrayContaining(['latency-p95-ratio', 'detections-change', 'fps-ratio']));
    expect(result.gates.find((g) => g.gate === 'latency-p95-ratio')?.canary).toBeCloseTo(3);
  });

  it('is inconclusive, not a pass, when too few devices report', () => {
    const result = evaluateStage({ ...base, candidate: cohort(3), control: cohort(5) }, gates, evidence);
    expect(result.verdict).toBe('inconclusive');
    expect(result.reason).toContain('3 of 5 devices reporting');
  });

  it('is inconclusive before the soak time', () => {
    const result = evaluateStage({ ...base, soakedS: 5, candidate: cohort(5), control: cohort(5) }, gates, evidence);
    expect(result.verdict).toBe('inconclusive');
  });

  it('fails on local reverts even without metrics', () => {
    const result = evaluateStage({ ...base, failedDevices: 2, candidate: [], control: cohort(5) }, gates, evidence);
    expect(result.verdict).toBe('fail');
    expect(result.reason).toContain('revert-rate');
  });

  it('does not fail metric gates on a single early device', () => {
    const early = [window('d0', { latencyP95: 100 })];
    const result = evaluateStage({ ...base, candidate: early, control: cohort(5) }, gates, evidence);
    expect(result.verdict).toBe('inconclusive');
  });

  it('judges a shadow stage on agreement and candidate latency', () => {
    const shadow = (precision: number, recall: number, lat: number) =>
      cohort(5, {
        shadow: { candidateSha256: 'b'.repeat(64), compared: 200, precision, recall, candidateLatencyP95: lat },
      });
    const good = evaluateStage(
      { ...base, kind: 'shadow', candidate: shadow(0.95, 0.9, 22), control: null },
      gates,
      evidence,
    );
    expect(good.verdict).toBe('pass');
    const bad = evaluateStage(
      { ...base, kind: 'shadow', candidate: shadow(0.9, 0.4, 60), control: null },
      gates,
      evidence,
    );
    expect(bad.verdict).toBe('fail');
    expect(bad.gates.filter((g) => g.verdict === 'fail').map((g) => g.gate)).toEqual([
      'shadow-recall',
      'latency-p95-ratio',
    ]);
  });
});
