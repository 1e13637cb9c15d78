import { describe, expect, it } from 'vitest';
import { type DeviceWindow, evaluateStage, psi } from './gates.ts';
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
    const latency = result.gates.find((g) => g.gate === 'latency-p95-ratio');
    expect(latency?.comparison?.estimate).toBeCloseTo(3);
    // Both cohorts' measured values, not a ratio against a constant.
    expect(latency?.canary).toMatchObject({ median: 60, devices: 5, frames: 5000 });
    expect(latency?.control).toMatchObject({ median: 20, devices: 5, frames: 5000 });
    expect(latency?.decision).toMatch(/whole 95% interval lies past the threshold 1.5/);
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

describe('evaluateStage, noise and evidence', () => {
  const base = { kind: 'live' as const, stageDevices: 5, failedDevices: 0, soakedS: 300 };
  const spread = (values: readonly number[], overrides: (v: number) => Partial<DeviceWindow>) =>
    values.map((v, i) => window(`n${i}`, overrides(v)));

  it('does not fail an fps ratio of about 0.8 at 1 fps when the devices scatter: inconclusive, never fail', () => {
    // ~1 fps per device over 300 s, canary 0.795 of control on average, devices scattered by 25%.
    const control = spread([1.2, 0.8, 1.0, 1.3, 0.7], (fps) => ({ frames: Math.round(fps * 300), seconds: 300 }));
    const canary = spread([0.95, 0.64, 0.8, 1.03, 0.56], (fps) => ({ frames: Math.round(fps * 300), seconds: 300 }));
    const result = evaluateStage({ ...base, candidate: canary, control }, gates, evidence);
    const fps = result.gates.find((g) => g.gate === 'fps-ratio');
    expect(fps?.comparison?.estimate).toBeLessThan(0.8);
    expect(fps?.comparison?.hi).toBeGreaterThan(0.8);
    expect(fps?.verdict).toBe('inconclusive');
    expect(result.verdict).not.toBe('fail');
  });

  it('fails a ratio gate only when the whole interval lies past the threshold', () => {
    const control = spread([20, 21, 19, 20, 22], (p95) => ({ latencyP95: p95 }));
    const canary = spread([40, 42, 38, 41, 39], (p95) => ({ latencyP95: p95 }));
    const result = evaluateStage({ ...base, candidate: canary, control }, gates, evidence);
    const latency = result.gates.find((g) => g.gate === 'latency-p95-ratio');
    expect(latency?.verdict).toBe('fail');
    expect(latency?.comparison?.lo).toBeGreaterThan(1.5);
  });

  it('never fails before the fail evidence: too early in the stage, too few frames or devices', () => {
    const bad = cohort(5, { latencyP95: 80 });
    const early = evaluateStage({ ...base, soakedS: 7, candidate: bad, control: cohort(5) }, gates, evidence);
    expect(early.verdict).toBe('inconclusive');
    expect(early.gates.find((g) => g.gate === 'latency-p95-ratio')?.decision).toMatch(/7 s into the stage, need 60 s/);
    const thin = evaluateStage(
      { ...base, candidate: cohort(5, { latencyP95: 80, frames: 30 }), control: cohort(5) },
      gates,
      evidence,
    );
    expect(thin.verdict).toBe('inconclusive');
    expect(thin.gates.find((g) => g.gate === 'latency-p95-ratio')?.decision).toMatch(/150 frames, need 200/);
  });

  it('calls confidence-psi not-applicable for a scene with no detections, and still passes', () => {
    const empty = { detections: 0, confidence: new Array<number>(20).fill(0) };
    const result = evaluateStage({ ...base, candidate: cohort(5, empty), control: cohort(5, empty) }, gates, evidence);
    const psiGate = result.gates.find((g) => g.gate === 'confidence-psi');
    expect(psiGate?.verdict).toBe('not-applicable');
    expect(psiGate?.decision).toMatch(/no detections on either side/);
    expect(result.verdict).toBe('pass');
    expect(result.reason).toMatch(/not applicable: confidence-psi/);
  });

  it('records both sides of the evidence: devices and frames of canary and control', () => {
    const result = evaluateStage({ ...base, candidate: cohort(4), control: cohort(3) }, gates, evidence);
    expect(result.evidence).toMatchObject({ reporting: 4, frames: 4000, controlDevices: 3, controlFrames: 3000 });
  });

  it('judges the last stage, with no control left, on the absolute error rate alone', () => {
    const result = evaluateStage({ ...base, candidate: cohort(5), control: null }, gates, evidence);
    expect(result.verdict).toBe('pass');
    expect(result.gates.filter((g) => g.verdict === 'not-applicable').map((g) => g.gate)).toEqual([
      'latency-p95-ratio',
      'fps-ratio',
      'detections-change',
      'confidence-psi',
    ]);
  });
});
