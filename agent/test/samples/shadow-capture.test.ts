import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { SampleMetadata } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createShadowComparator } from '../../src/model-update/shadow.ts';
import { createSampleCapture, type SampleCapture } from '../../src/samples/capture.ts';
import { decodeSpoolFile } from '../../src/samples/spool.ts';
import { createVisionPipeline } from '../../src/vision/pipeline.ts';
import { createSyntheticSource } from '../../src/vision/synthetic-source.ts';
import type { VisionModel } from '../../src/vision/vision-model.ts';
import { loadShadowModels } from '../support/yolo-variants.ts';
import { makeTempDir } from '../vision/test-media.ts';

/*
 * The shadow-disagreement strategy on the real shadow path: the pipeline runs the active model,
 * the shadow comparator runs a candidate (real onnxruntime sessions) on a sampled share of the
 * frames and hands each compared frame to the capture, which judges it by the boxes the two
 * models do not share. The capture sink sits before the comparator, as in the agent.
 */

const temp = makeTempDir('shadow-capture');
const FRAMES = 24;
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

async function run(name: string, candidate: VisionModel, policy: unknown, sampleShare: number) {
  const capture: SampleCapture = createSampleCapture({
    dir: path.join(temp.dir, name),
    deviceId: 'cam-shadow',
    bootId: 'boot-shadow',
    options: { fsync: false, queueCapacity: 64 },
  });
  expect(capture.applyDesired(policy).error).toBeNull();
  const comparator = createShadowComparator({
    candidate,
    options: { sampleShare, maxExtraShare: 100 },
    onCompared: (result, found) => {
      capture.offerShadow(result, found);
    },
  });
  const pipeline = createVisionPipeline({
    source: createSyntheticSource({ width: 160, height: 120, fps: null, frameCount: FRAMES, pattern: 'moving-box' }),
    model: current,
    sinks: [capture.sink, comparator.sink],
    options: { queueMode: 'block', cameraHealth: false },
  });
  pipeline.start();
  expect((await pipeline.done).reason).toBe('ended');
  expect(pipeline.stats()).toMatchObject({ framesProcessed: FRAMES, sinkErrors: 0 });
  await capture.whenIdle();
  const spoolDir = path.join(temp.dir, name, 'spool');
  const samples = readdirSync(spoolDir)
    .filter((file) => file.endsWith('.sample'))
    .map((file) => decodeSpoolFile(readFileSync(path.join(spoolDir, file)))?.metadata as SampleMetadata);
  return { capture, comparator, samples };
}

describe('shadow-disagreement capture', () => {
  it('captures the compared frames where the candidate misses a class, with the active predictions', async () => {
    const { capture, comparator, samples } = await run(
      'misses',
      missesDog,
      { strategies: [{ kind: 'shadow-disagreement', minUnmatched: 1, tags: ['shadow'] }] },
      0.5,
    );
    expect(comparator.stats()).toMatchObject({ compared: FRAMES / 2, listenerErrors: 0 });
    // Every compared frame is selected; the synthetic scene repeats, and identical bytes are one sample.
    const captured = capture.telemetry()?.captured ?? 0;
    expect(captured).toBeGreaterThan(1);
    expect(captured + (capture.stats().duplicates as number)).toBe(FRAMES / 2);
    expect(samples).toHaveLength(captured);
    for (const sample of samples) {
      expect(sample).toMatchObject({ strategy: 'shadow-disagreement', tags: ['shadow'] });
      expect(sample.reason).toMatch(/^1 box\(es\) unmatched/);
      expect(sample.predictions.map((p) => p.label).sort()).toEqual(['car', 'dog', 'person']);
    }
  });

  it('captures nothing when the candidate finds the same objects', async () => {
    const { capture, comparator } = await run(
      'agrees',
      identical,
      { strategies: [{ kind: 'shadow-disagreement' }] },
      1,
    );
    expect(comparator.stats().compared).toBe(FRAMES);
    expect(capture.telemetry()?.captured).toBe(0);
  });

  it('takes a frame once when another strategy queued it before the comparison', async () => {
    const { capture, samples } = await run(
      'both',
      missesDog,
      { strategies: [{ kind: 'random', share: 1 }, { kind: 'shadow-disagreement' }] },
      1,
    );
    const captured = capture.telemetry()?.captured ?? 0;
    expect(captured + (capture.stats().duplicates as number)).toBe(FRAMES);
    expect(samples).toHaveLength(captured);
    expect(samples.every((sample) => sample.strategy === 'random')).toBe(true);
  });
});
