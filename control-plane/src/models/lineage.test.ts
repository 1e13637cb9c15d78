import { describe, expect, it } from 'vitest';
import { lineageFlags, stageOutcomes } from './lineage.ts';

const run = { runId: 'run_1', modelName: 'det', datasetId: 'hard@2', resultModelId: null };
const flags = (
  lineage: Parameters<typeof lineageFlags>[0]['release']['lineage'],
  facts: Partial<Omit<Parameters<typeof lineageFlags>[0], 'release' | 'modelId'>> = {},
) =>
  lineageFlags({
    release: { name: 'det', lineage },
    modelId: 'det@2.0.0',
    datasetFound: true,
    parentFound: true,
    run,
    ...facts,
  });

describe('lineageFlags', () => {
  it('raises nothing for a release without lineage, or one whose names all resolve and agree', () => {
    expect(flags(undefined, { datasetFound: false, parentFound: false, run: null })).toEqual([]);
    expect(flags({ datasetVersion: 'hard@2', parentModel: 'a'.repeat(64), runId: 'run_1', trainer: 'x' })).toEqual([]);
  });

  it('flags each name the control plane does not hold, only when the lineage names it', () => {
    expect(flags({ datasetVersion: 'ghost@1' }, { datasetFound: false })).toEqual(['unknown_dataset']);
    expect(flags({ trainer: 'x' }, { datasetFound: false, parentFound: false, run: null })).toEqual([]);
    expect(
      flags(
        { datasetVersion: 'g@1', parentModel: 'f'.repeat(64), runId: 'r' },
        {
          datasetFound: false,
          parentFound: false,
          run: null,
        },
      ),
    ).toEqual(['unknown_dataset', 'unknown_parent', 'unknown_run']);
  });

  it("flags a run that froze another dataset, was fired for another model name, or names another model's result", () => {
    expect(flags({ runId: 'run_1', datasetVersion: 'hard@1' })).toEqual(['run_dataset_mismatch']);
    expect(flags({ runId: 'run_1' }, { run: { ...run, modelName: 'cls' } })).toEqual(['run_model_mismatch']);
    expect(flags({ runId: 'run_1' }, { run: { ...run, resultModelId: 'det@1.5.0' } })).toEqual(['run_already_linked']);
    expect(flags({ runId: 'run_1' }, { run: { ...run, resultModelId: 'det@2.0.0' } })).toEqual([]);
  });
});

describe('stageOutcomes', () => {
  const verdict = (at: number, stage: string, stageIndex: number, value: string, gates: unknown = []) => ({
    at,
    stage,
    data: { stageIndex, verdict: value, reason: `${stage} ${value}`, gates },
  });

  it('groups verdicts by stage in the order first judged, counting each kind and keeping the last', () => {
    const outcomes = stageOutcomes([
      verdict(1, 'validation', 0, 'pass', [{ gate: 'validation', verdict: 'pass' }]),
      verdict(2, 'canary', 1, 'inconclusive'),
      verdict(3, 'canary', 1, 'pass'),
      verdict(4, 'canary', 1, 'fail', [
        { gate: 'error-rate', verdict: 'fail' },
        { gate: 'fps-ratio', verdict: 'not-applicable' },
      ]),
    ]);
    expect(outcomes).toEqual([
      {
        stage: 'validation',
        stageIndex: 0,
        verdicts: { pass: 1, fail: 0, inconclusive: 0 },
        last: { at: 1, verdict: 'pass', reason: 'validation pass', gates: [{ gate: 'validation', verdict: 'pass' }] },
      },
      {
        stage: 'canary',
        stageIndex: 1,
        verdicts: { pass: 1, fail: 1, inconclusive: 1 },
        last: {
          at: 4,
          verdict: 'fail',
          reason: 'canary fail',
          gates: [
            { gate: 'error-rate', verdict: 'fail' },
            { gate: 'fps-ratio', verdict: 'not-applicable' },
          ],
        },
      },
    ]);
  });

  it('reads an old or damaged event honestly: unknown verdicts count as inconclusive, bad gates are left out', () => {
    const [only] = stageOutcomes([{ at: 9, stage: null, data: { verdict: 'maybe', gates: [null, { gate: 3 }] } }]);
    expect(only).toEqual({
      stage: '',
      stageIndex: 0,
      verdicts: { pass: 0, fail: 0, inconclusive: 1 },
      last: { at: 9, verdict: 'inconclusive', reason: '', gates: [] },
    });
  });
});
