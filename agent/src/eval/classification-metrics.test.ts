import { describe, expect, it } from 'vitest';
import { evaluateClassification } from './classification-metrics.ts';

describe('evaluateClassification', () => {
  it('counts top-1 accuracy and one-vs-rest precision and recall per class', () => {
    const m = evaluateClassification([
      { id: '1', truth: 'cat', predicted: 'cat' },
      { id: '2', truth: 'cat', predicted: 'dog' },
      { id: '3', truth: 'dog', predicted: 'dog' },
      { id: '4', truth: 'dog', predicted: null },
    ]);
    expect(m.accuracy).toBe(0.5);
    const byName = Object.fromEntries(m.classes.map((c) => [c.category, c]));
    expect(byName.cat).toEqual({ category: 'cat', support: 2, predicted: 1, correct: 1, precision: 1, recall: 0.5 });
    expect(byName.dog).toEqual({ category: 'dog', support: 2, predicted: 2, correct: 1, precision: 0.5, recall: 0.5 });
  });

  it('gives a class the model never predicted a null precision, and a predicted-only class a null recall', () => {
    const m = evaluateClassification([{ id: '1', truth: 'cat', predicted: 'fox' }]);
    const byName = Object.fromEntries(m.classes.map((c) => [c.category, c]));
    expect(m.accuracy).toBe(0);
    expect(byName.cat).toMatchObject({ precision: null, recall: 0 });
    expect(byName.fox).toMatchObject({ precision: 0, recall: null });
  });

  it('has no accuracy for an empty set', () => {
    expect(evaluateClassification([])).toEqual({ images: 0, accuracy: null, classes: [] });
  });
});
