import path from 'node:path';
import { PipelineMetrics } from '@edgeloop/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import { sampleYoloBoxes, writeYoloTestModel } from '../../scripts/test-models.ts';
import { VisionConfig } from '../../src/vision/config.ts';
import type { VisionFault } from '../../src/vision/vision.ts';
import { createVision } from '../../src/vision/vision.ts';
import { makeTempDir } from './test-media.ts';

const temp = makeTempDir('vision-service');
const scale = 0.25;
const boxes = sampleYoloBoxes().map((b) => ({
  ...b,
  cx: b.cx * scale,
  cy: b.cy * scale,
  w: b.w * scale,
  h: b.h * scale,
}));
const first = writeYoloTestModel(
  temp.dir,
  { layout: 'yolov8', inputWidth: 160, inputHeight: 160, numClasses: 3, boxes, anchors: 30 },
  { name: 'first' },
);
const second = writeYoloTestModel(
  temp.dir,
  { layout: 'yolov5', inputWidth: 160, inputHeight: 160, numClasses: 3, boxes, anchors: 30 },
  { name: 'second' },
);

afterAll(() => temp.remove());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('vision service', () => {
  it('runs the configured model on the configured source and hands telemetry one window per call', async () => {
    const config = VisionConfig.parse({
      source: { kind: 'synthetic', width: 160, height: 90, fps: 100 },
      model: { path: first.modelPath, manifestPath: first.manifestPath },
      providers: ['cuda', 'cpu'],
      threads: { intraOp: 1 },
      cameraHealth: { sampleIntervalMs: 0 },
    });
    const vision = createVision({ config });
    expect(vision.takeMetrics()).toBeUndefined();
    await vision.start();
    await sleep(300);
    const window1 = PipelineMetrics.parse(vision.takeMetrics());
    expect(window1.framesProcessed).toBeGreaterThan(5);
    expect(window1.model?.name).toBe('first');
    expect(window1.provider).toMatchObject({ active: 'cpu', fallbackReason: expect.stringContaining('cuda') });
    expect(window1.detectionsPer1000).toMatchObject({ person: 1000, car: 1000, dog: 1000 });
    expect(window1.camera).not.toBeNull();

    const next = await vision.loadModel(second.modelPath, null);
    const previous = await vision.activateModel(next);
    expect(previous?.ref.name).toBe('first');
    await previous?.release();
    await sleep(150);
    vision.takeMetrics();
    await sleep(150);
    const window3 = PipelineMetrics.parse(vision.takeMetrics());
    expect(window3.model?.name).toBe('second');
    expect(window3.framesProcessed).toBeGreaterThan(0);
    // No manifest: class ids as labels.
    expect(Object.keys(window3.detectionsPer1000).sort()).toEqual(['0', '1', '2']);
    await vision.stop();
    expect(vision.stats()).toBeNull();
  });

  it('reports a failed source once per failure and starts it again after the retry delay', async () => {
    const faults: VisionFault[] = [];
    const config = VisionConfig.parse({
      source: { kind: 'images', dir: path.join(temp.dir, 'no-such-folder') },
      model: { path: first.modelPath, manifestPath: first.manifestPath },
      providers: ['cpu'],
      sourceRetry: { initialDelayMs: 100, maxDelayMs: 200 },
    });
    const vision = createVision({ config, onFault: (fault) => faults.push(fault) });
    await vision.start();
    await sleep(450);
    await vision.stop();
    expect(faults.length).toBeGreaterThanOrEqual(2);
    expect(faults[0]).toMatchObject({ code: 'source_not_found', retryInMs: 100 });
    expect(faults[1]).toMatchObject({ retryInMs: 200 });
  });

  it('refuses to start with a model file that does not exist', async () => {
    const config = VisionConfig.parse({
      source: { kind: 'synthetic' },
      model: { path: path.join(temp.dir, 'missing.onnx') },
      providers: ['cpu'],
    });
    await expect(createVision({ config }).start()).rejects.toMatchObject({ code: 'model_not_found' });
  });
});
