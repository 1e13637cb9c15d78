import { ModelManifest } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { createClassificationAdapter, softmax, topKIndices } from './classification-adapter.ts';
import { stretchGeometry } from './resize.ts';

describe('softmax', () => {
  it('gives probabilities that sum to 1 in the order of the logits', () => {
    const p = softmax([1, 2, 3], new Float32Array(3));
    expect((p[0] as number) + (p[1] as number) + (p[2] as number)).toBeCloseTo(1, 6);
    expect(p[2]).toBeGreaterThan(p[1] as number);
    expect(p[0]).toBeCloseTo(Math.exp(1) / (Math.exp(1) + Math.exp(2) + Math.exp(3)), 6);
  });

  it('stays finite for huge logits', () => {
    const p = softmax([1000, 1001], new Float32Array(2));
    expect(p[1]).toBeCloseTo(1 / (1 + Math.exp(-1)), 6);
    expect(Number.isFinite(p[0])).toBe(true);
  });
});

describe('topKIndices', () => {
  it('returns the indices of the k largest, largest first, earlier index on ties', () => {
    expect(topKIndices([0.1, 0.5, 0.3, 0.5, 0.9], 3)).toEqual([4, 1, 3]);
    expect(topKIndices([0.2], 5)).toEqual([0]);
  });
});

describe('classification adapter', () => {
  it('reports top-k classes above the threshold as whole-frame detections', () => {
    const manifest = ModelManifest.parse({
      name: 'cls',
      version: '1.0.0',
      adapter: 'classification',
      labels: ['cat', 'dog', 'bird'],
      thresholds: { confidence: 0.2 },
      classification: { topK: 2, softmax: true },
    });
    const adapter = createClassificationAdapter({
      manifest,
      input: { name: 'x', layout: 'nchw', width: 8, height: 8 },
    });
    const pre = { dims: [1, 3, 8, 8], geometry: stretchGeometry(40, 30, 8, 8) };
    const detections = adapter.postprocess({ logits: { dims: [1, 3], data: Float32Array.from([0.5, 2.5, 0.1]) } }, pre);
    expect(detections.map((d) => d.label)).toEqual(['dog']);
    expect(detections[0]).toMatchObject({ x1: 0, y1: 0, x2: 40, y2: 30, classId: 1 });
    expect(detections[0]?.score).toBeCloseTo(Math.exp(2.5) / (Math.exp(0.5) + Math.exp(2.5) + Math.exp(0.1)), 5);
  });
});
