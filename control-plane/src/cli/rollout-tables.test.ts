import type { GateResultView, RolloutDryRun, VerdictView } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { formatCohort, formatComparison, formatDryRun, formatGates, formatVerdict } from './rollout-tables.ts';

const fpsGate: GateResultView = {
  gate: 'fps',
  verdict: 'fail',
  canary: { median: 0.7031, lo: 0.65, hi: 0.74, devices: 6, frames: 1800 },
  control: { median: 1.002, lo: 0.97, hi: 1.03, devices: 54, frames: 16_200 },
  comparison: { kind: 'ratio', estimate: 0.7017, lo: 0.64, hi: 0.76, confidence: 0.95 },
  threshold: 0.9,
  detail: 'fps ratio',
  decision: 'the whole interval [0.64, 0.76] lies below 0.9',
};

const psiGate: GateResultView = {
  gate: 'confidence-psi',
  verdict: 'not-applicable',
  canary: null,
  control: null,
  comparison: null,
  threshold: 0.2,
  detail: 'no detections on either side',
  decision: 'not-applicable: no detections on either side',
};

const verdict: VerdictView = {
  at: Date.UTC(2026, 0, 2, 3, 4, 5),
  stage: 'canary',
  stageIndex: 1,
  verdict: 'fail',
  reason: 'fps below threshold in 2 windows',
  failingWindows: 2,
  window: { index: 3, from: Date.UTC(2026, 0, 2, 3, 3, 35), to: Date.UTC(2026, 0, 2, 3, 4, 5) },
  timedOut: false,
  action: null,
  gates: [fpsGate, psiGate],
  evidence: {
    stageDevices: 6,
    reporting: 6,
    frames: 1800,
    soakedS: 125,
    failed: 0,
    controlDevices: 54,
    controlFrames: 16_200,
    unchanged: 0,
  },
};

describe('verdict tables', () => {
  it('shows each cohort as median [lo, hi] with its devices and frames', () => {
    expect(formatCohort(fpsGate.canary)).toBe('0.703 [0.65, 0.74] (6 dev, 1800 fr)');
    expect(formatCohort(fpsGate.control)).toBe('1 [0.97, 1.03] (54 dev, 16200 fr)');
    expect(formatCohort(null)).toBe('-');
  });

  it('shows the comparison with its interval and confidence level', () => {
    expect(formatComparison(fpsGate.comparison)).toBe('ratio 0.702 [0.64, 0.76] @95%');
    expect(formatComparison(null)).toBe('-');
  });

  it('puts one gate per row with verdict, both cohorts, comparison, threshold and decision in columns', () => {
    const lines = formatGates([fpsGate, psiGate]).split('\n');
    expect(lines[0]).toMatch(
      /^GATE\s+VERDICT\s+CANARY median \[lo, hi\]\s+CONTROL median \[lo, hi\]\s+COMPARISON \[lo, hi\]\s+THRESHOLD\s+DECISION$/,
    );
    expect(lines[1]).toMatch(
      /^fps\s+fail\s+0\.703 \[0\.65, 0\.74\] \(6 dev, 1800 fr\)\s+1 \[0\.97, 1\.03\] \(54 dev, 16200 fr\)\s+ratio 0\.702 \[0\.64, 0\.76\] @95%\s+0\.9\s+the whole interval/,
    );
    expect(lines[2]).toMatch(/^confidence-psi\s+not-applicable\s+-\s+-\s+-\s+0\.2\s+not-applicable: no detections/);
    // Columns line up: every row's verdict starts where the header's does.
    const column = lines[0]!.indexOf('VERDICT');
    expect(lines[1]!.slice(column)).toMatch(/^fail/);
    expect(lines[2]!.slice(column)).toMatch(/^not-applicable/);
  });

  it('heads the table with the verdict, its non-overlapping window and the evidence', () => {
    const text = formatVerdict(verdict);
    expect(text).toContain(
      'verdict FAIL at 2026-01-02T03:04:05.000Z, stage canary (#1), window 3 2026-01-02T03:03:35.000Z .. 2026-01-02T03:04:05.000Z',
    );
    expect(text).toContain(
      'evidence: 6/6 stage devices reporting, 1800 frames, soaked 2m05s, 0 failed; control 54 devices, 16200 frames',
    );
    expect(text).toContain('failing windows: 2');
    expect(text).not.toContain('deadline');
    expect(text).toMatch(/\nGATE\s+VERDICT/);
  });

  it('counts devices left out because they already ran the same bytes', () => {
    const text = formatVerdict({ ...verdict, evidence: { ...verdict.evidence, unchanged: 2 } });
    expect(text).toContain('0 failed, 2 unchanged (same bytes); control 54 devices');
  });

  it('says when a verdict was taken at the stage deadline and which action followed', () => {
    const text = formatVerdict({ ...verdict, verdict: 'inconclusive', timedOut: true, action: 'pause' });
    expect(text).toContain('verdict INCONCLUSIVE');
    expect(text).toContain('stage deadline reached: action pause');
  });
});

describe('dry run', () => {
  const dry: RolloutDryRun = {
    dryRun: true,
    modelId: 'det@2.0.0',
    targetDevices: 60,
    incompatibleDevices: 2,
    unchangedDevices: 1,
    fps: { value: 1.5, source: 'telemetry' },
    shadowSampleShare: 0.2,
    canary: ['a', 'b', 'c'],
    control: ['d', 'e'],
    stages: [
      {
        name: 'shadow',
        kind: 'shadow',
        devices: 3,
        newDevices: 3,
        controlDevices: 57,
        maxDurationS: 900,
        gates: [
          { gate: 'fps', feasible: true, reason: 'ok' },
          {
            gate: 'min-frames',
            feasible: false,
            reason: 'needs 600 frames; 3 devices at 1 fps x 20% sample give 180 in 300 s',
          },
        ],
      },
    ],
    warnings: ['shadow: minFrames 600 cannot be reached in one 300 s window'],
    earliestDurationS: 3_700,
    bytesToDownload: 6_000_000,
  };

  it('lists every stage with its gates, the infeasible ones with the reason, and every warning', () => {
    const text = formatDryRun(dry);
    expect(text).toContain(
      'dry run for det@2.0.0: 60 target devices (2 incompatible left out, 1 already on these bytes), canary 3, control 2',
    );
    expect(text).toContain('feasibility assumes 1.5 fps per device (telemetry) and a shadow sample share of 20%');
    expect(text).toMatch(/shadow\s+shadow\s+3\s+3\s+57\s+15m00s\s+fps:ok min-frames:INFEASIBLE/);
    expect(text).toContain('  shadow min-frames: needs 600 frames; 3 devices at 1 fps x 20% sample give 180 in 300 s');
    expect(text).toContain('warnings (1):\n  - shadow: minFrames 600 cannot be reached in one 300 s window');
    expect(text).toContain('earliest completion 1h01m');
  });

  it('says so when there is nothing to warn about', () => {
    const text = formatDryRun({ ...dry, warnings: [], stages: [] });
    expect(text).toContain('no warnings');
    expect(text).not.toContain('cannot collect');
  });
});
