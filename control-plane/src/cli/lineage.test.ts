import type { ModelLineage } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { formatLineage, parseModelArgs } from './lineage.ts';

const model = {
  id: 'det@2.0.0',
  name: 'det',
  version: '2.0.0',
  sha256: 'b'.repeat(64),
  createdAt: Date.parse('2026-12-01T10:00:00Z'),
  uploadedBy: 'tok1',
  lineage: { parentModel: 'f'.repeat(64), runId: 'run_gone' },
  lineageFlags: ['unknown_parent' as const, 'unknown_run' as const],
};

const bare: ModelLineage = {
  model,
  upstream: {
    dataset: null,
    run: {
      runId: 'run_gone',
      found: false,
      modelName: null,
      status: null,
      reason: null,
      datasetId: null,
      parentModel: null,
      createdAt: null,
      resultModelId: null,
    },
    parents: [{ depth: 1, sha256: 'f'.repeat(64), found: false, model: null, datasetId: null, runId: null }],
    parentsTruncated: false,
  },
  downstream: {
    rollouts: [
      {
        id: 'r-1',
        status: 'running',
        terminal: false,
        reason: null,
        createdAt: Date.parse('2026-12-01T11:00:00Z'),
        updatedAt: Date.parse('2026-12-01T11:05:00Z'),
        stages: [
          {
            stage: 'canary',
            stageIndex: 1,
            verdicts: { pass: 2, fail: 1, inconclusive: 0 },
            last: { at: 1, verdict: 'fail', reason: 'errors', gates: [{ gate: 'error-rate', verdict: 'fail' }] },
          },
        ],
        verdictsTruncated: false,
      },
    ],
    children: [],
  },
};

describe('formatLineage', () => {
  it('marks names the control plane does not hold as UNKNOWN and a rollout still moving as in progress', () => {
    const text = formatLineage(bare);
    expect(text).not.toMatch(/^samples/m);
    expect(text).toMatch(/^dataset\s+-\s+\(the release names none\)$/m);
    expect(text).toMatch(/^run\s+run_gone {2}UNKNOWN: no such retraining run$/m);
    expect(text).toMatch(/^parent\s+ffffffffffff UNKNOWN$/m);
    expect(text).toContain('flags: unknown_parent, unknown_run');
    expect(text).toMatch(/canary: fail \(pass 2, fail 1, inconclusive 0\) failing error-rate/);
    expect(text).toMatch(/=> running, in progress$/m);
    expect(text).toMatch(/^children\s+-\s+\(none\)$/m);
  });
});

describe('parseModelArgs', () => {
  it('takes NAME@VERSION or NAME VERSION, and refuses an id without a version', () => {
    expect(parseModelArgs(['det@2.0.0'])).toEqual({ name: 'det', version: '2.0.0' });
    expect(parseModelArgs(['det', '2.0.0'])).toEqual({ name: 'det', version: '2.0.0' });
    expect(() => parseModelArgs(['det'])).toThrow(/not a model id/);
    expect(() => parseModelArgs(['det@'])).toThrow(/not a model id/);
    expect(() => parseModelArgs(['@1.0.0'])).toThrow(/not a model id/);
  });
});
