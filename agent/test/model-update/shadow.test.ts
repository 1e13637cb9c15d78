import { ShadowMetrics } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createShadowComparator, type ShadowOptions } from '../../src/model-update/shadow.ts';
import { createVisionPipeline } from '../../src/vision/pipeline.ts';
import { createSyntheticSource } from '../../src/vision/synthetic-source.ts';
import type { VisionModel } from '../../src/vision/vision-model.ts';
import { loadShadowModels } from '../support/yolo-variants.ts';
import { makeTempDir } from '../vision/test-media.ts';

/* Shadow comparison through real onnxruntime sessions in a real pipeline. */

const temp = makeTempDir('shadow');
const FRAMES = 60;
let models: Awaited<ReturnType<typeof loadShadowModels>>;
let current: VisionModel;
let identical: VisionModel;
let missesDog: VisionModel;

beforeAll(async () => {
  models = await loadShadowModels(temp.dir);
  ({ current, identical, missesDog } = models);
});

afterAll(async () => {
  await models?.release();
  temp.remove();
});

async function compare(candidate: VisionModel, options: Partial<ShadowOptions>): Promise<ShadowMetrics> {
  const comparator = createShadowComparator({ candidate, options });
  const pipeline = createVisionPipeline({
    source: createSyntheticSource({ width: 160, height: 120, fps: null, frameCount: FRAMES, pattern: 'moving-box' }),
    model: current,
    sinks: [comparator.sink],
    options: { queueMode: 'block', cameraHealth: false },
  });
  pipeline.start();
  expect((await pipeline.done).reason).toBe('ended');
  expect(pipeline.stats()).toMatchObject({ framesProcessed: FRAMES, sinkErrors: 0 });
  return ShadowMetrics.parse(comparator.take());
}

describe('shadow comparison', () => {
  it('agrees fully with a candidate that finds the same objects (other bytes, other layout)', async () => {
    const metrics = await compare(identical, { sampleShare: 1, maxExtraShare: 100 });
    expect(metrics).toMatchObject({
      candidate: { name: 'identical', sha256: identical.ref.sha256 },
      framesCompared: FRAMES,
      framesSkipped: 0,
      precision: 1,
      recall: 1,
      perClass: {
        person: { precision: 1, recall: 1, support: FRAMES },
        car: { precision: 1, recall: 1, support: FRAMES },
        dog: { precision: 1, recall: 1, support: FRAMES },
      },
    });
    expect(metrics.candidateLatencyMs.count).toBe(FRAMES);
  });

  it('shows the recall a candidate loses when it misses a class', async () => {
    const metrics = await compare(missesDog, { sampleShare: 1, maxExtraShare: 100 });
    expect(metrics.precision).toBe(1);
    expect(metrics.recall).toBeCloseTo(2 / 3, 4);
    expect(metrics.perClass.dog).toEqual({ precision: null, recall: 0, support: FRAMES });
    expect(metrics.perClass.person).toEqual({ precision: 1, recall: 1, support: FRAMES });
  });

  it('samples the configured share of frames, deterministically', async () => {
    const metrics = await compare(identical, { sampleShare: 0.25, maxExtraShare: 100 });
    expect(metrics.framesCompared).toBe(FRAMES / 4);
    expect(metrics.framesSkipped).toBe(0);
  });

  it('skips sampled frames once the compute budget is spent', async () => {
    // 2% extra: on a loaded machine one frame's time can be many times another's, so the margin is wide.
    const metrics = await compare(identical, { sampleShare: 1, maxExtraShare: 0.02 });
    expect(metrics.framesCompared + metrics.framesSkipped).toBe(FRAMES);
    expect(metrics.framesCompared).toBeGreaterThan(0);
    expect(metrics.framesSkipped).toBeGreaterThan(metrics.framesCompared);
    // What was compared still agrees.
    expect(metrics.precision).toBe(1);
  });
});
