import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { PipelineMetrics } from '@edgeloop/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import { sampleYoloBoxes, writeYoloTestModel } from '../../scripts/test-models.ts';
import { createModelSession } from '../../src/vision/inference.ts';
import { createVisionPipeline } from '../../src/vision/pipeline.ts';
import { createSyntheticSource } from '../../src/vision/synthetic-source.ts';
import { loadVisionModel } from '../../src/vision/vision-model.ts';
import { makeTempDir } from './test-media.ts';

/*
 * onnxruntime-node from npm carries only the CPU provider here (its install script, which fetches
 * the CUDA/TensorRT libraries, is disabled), so asking for cuda must fall back to cpu and say why.
 */

const temp = makeTempDir('providers');
const written = writeYoloTestModel(temp.dir, {
  layout: 'yolov8',
  inputWidth: 64,
  inputHeight: 64,
  numClasses: 3,
  boxes: sampleYoloBoxes().map((b) => ({ ...b, cx: b.cx / 10, cy: b.cy / 10, w: b.w / 10, h: b.h / 10 })),
  anchors: 20,
});

afterAll(() => temp.remove());

describe('execution provider fallback', () => {
  it('falls back from cuda to cpu and carries the reason into telemetry', async () => {
    const warnings: unknown[] = [];
    const logger = {
      debug: () => {},
      info: () => {},
      warn: (obj: unknown) => void warnings.push(obj),
      error: () => {},
      child: () => logger,
    };
    const model = await loadVisionModel({ modelPath: written.modelPath, providers: ['cuda', 'cpu'], logger });
    try {
      expect(model.provider.requested).toEqual(['cuda', 'cpu']);
      expect(model.provider.active).toBe('cpu');
      expect(model.provider.fallbackReason).toMatch(/^cuda: .*(Failed to load|not|unavailable)/i);
      // Logged once, at load, not per frame.
      expect(warnings).toHaveLength(1);

      const pipeline = createVisionPipeline({
        source: createSyntheticSource({ width: 64, height: 64, frameCount: 5 }),
        model,
        options: { queueMode: 'block', cameraHealth: false },
      });
      pipeline.start();
      await pipeline.done;
      const metrics = PipelineMetrics.parse(pipeline.takeMetrics());
      expect(metrics.provider).toEqual(model.provider);
      expect(metrics.framesProcessed).toBe(5);
      expect(warnings).toHaveLength(1);
    } finally {
      await model.release();
    }
  });

  it('tries the default list tensorrt, cuda, cpu in order and names every skipped provider', async () => {
    const session = await createModelSession({ modelPath: written.modelPath });
    try {
      expect(session.provider.requested).toEqual(['tensorrt', 'cuda', 'cpu']);
      expect(session.provider.active).toBe('cpu');
      expect(session.provider.fallbackReason).toMatch(/^tensorrt: .*; cuda: /);
      expect(session.sha256).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      await session.release();
    }
  });

  it('fails with provider_unavailable when no listed provider loads', async () => {
    await expect(createModelSession({ modelPath: written.modelPath, providers: ['cuda'] })).rejects.toMatchObject({
      code: 'provider_unavailable',
      message: expect.stringContaining('cuda:'),
    });
  });

  it('tells a missing model file from a broken one', async () => {
    await expect(
      createModelSession({ modelPath: path.join(temp.dir, 'none.onnx'), providers: ['cpu'] }),
    ).rejects.toMatchObject({
      code: 'model_not_found',
    });
    const broken = path.join(temp.dir, 'broken.onnx');
    writeFileSync(broken, 'not a model');
    await expect(createModelSession({ modelPath: broken, providers: ['cpu'] })).rejects.toMatchObject({
      code: 'model_invalid',
    });
  });
});
