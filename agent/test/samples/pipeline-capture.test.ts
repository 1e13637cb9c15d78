import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleYoloBoxes, writeYoloTestModel } from '../../scripts/test-models.ts';
import { createSampleCapture } from '../../src/samples/capture.ts';
import { loadModelManifest } from '../../src/vision/model-manifest.ts';
import { createVisionPipeline } from '../../src/vision/pipeline.ts';
import { createSyntheticSource } from '../../src/vision/synthetic-source.ts';
import type { VisionModel } from '../../src/vision/vision-model.ts';
import { loadVisionModel } from '../../src/vision/vision-model.ts';

/*
 * The capture sink on the real vision pipeline (synthetic camera, a generated YOLOv8 model in
 * onnxruntime): camera-health flags reach the camera-event strategy, detections reach class-rare,
 * and 100% selection with a small encode queue drops (counted) instead of slowing the loop.
 */

let dir: string;
let model: VisionModel;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'edgeloop-pipeline-capture-'));
  const scale = 160 / 640;
  const written = writeYoloTestModel(
    dir,
    {
      layout: 'yolov8',
      inputWidth: 160,
      inputHeight: 160,
      numClasses: 3,
      boxes: sampleYoloBoxes().map((b) => ({
        ...b,
        cx: b.cx * scale,
        cy: b.cy * scale,
        w: b.w * scale,
        h: b.h * scale,
      })),
      anchors: 50,
    },
    { name: 'capture-det' },
  );
  const manifest = await loadModelManifest(written.manifestPath);
  if (!manifest.ok) throw new Error(manifest.error.message);
  model = await loadVisionModel({
    modelPath: written.modelPath,
    manifest: manifest.value,
    providers: ['cpu'],
    intraOpThreads: 1,
  });
});

afterAll(async () => {
  await model?.release();
  rmSync(dir, { recursive: true, force: true });
});

function capture(name: string, queueCapacity = 4) {
  return createSampleCapture({
    dir: path.join(dir, name),
    deviceId: 'cam-1',
    bootId: 'boot-1',
    options: { fsync: false, queueCapacity },
  });
}

async function run(sink: ReturnType<typeof capture>, frames: number, pattern: 'black' | 'moving-box' = 'moving-box') {
  const pipeline = createVisionPipeline({
    source: createSyntheticSource({ width: 128, height: 96, frameCount: frames, pattern }),
    model,
    sinks: [sink.sink],
    options: { queueMode: 'block', cameraHealth: { sampleIntervalMs: 0 } },
  });
  pipeline.start();
  expect((await pipeline.done).reason).toBe('ended');
  await sink.whenIdle();
  return pipeline.stats();
}

describe('capture sink on the vision pipeline', () => {
  it('selects black frames through the camera-health flags the pipeline hands to sinks', async () => {
    const black = capture('black', 8);
    black.applyDesired({ strategies: [{ kind: 'camera-event', events: ['black'] }] });
    await run(black, 6, 'black');
    // Every black frame is selected; identical bytes make one sample.
    expect(black.telemetry()?.captured).toBe(1);
    expect(black.stats().duplicates).toBe(5);
    const normal = capture('normal', 8);
    normal.applyDesired({ strategies: [{ kind: 'camera-event', events: ['black'] }] });
    await run(normal, 6);
    expect(normal.telemetry()?.captured).toBe(0);
  });

  it('selects frames where the model saw a listed class, with its detections as predictions', async () => {
    const labels = model.adapter.labels;
    const rare = capture('rare', 8);
    rare.applyDesired({ strategies: [{ kind: 'class-rare', classes: [...labels] }] });
    await run(rare, 3);
    expect(rare.telemetry()?.captured).toBe(3);
  });

  it('processes every frame at 100% selection and counts what the encode queue could not take', async () => {
    const all = capture('all', 1);
    all.applyDesired({ strategies: [{ kind: 'random', share: 1 }], jpegQuality: 100 });
    const stats = await run(all, 40);
    expect(stats.framesProcessed).toBe(40);
    const t = all.telemetry()!;
    expect(t.captured + (t.dropped['queue-full'] ?? 0) + (all.stats().duplicates as number)).toBe(40);
    expect(t.captured).toBeGreaterThan(0);
  });
});
