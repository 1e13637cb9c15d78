import { PipelineMetrics, Telemetry } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleYoloBoxes, writeYoloTestModel } from '../../scripts/test-models.ts';
import { createFfmpegSource } from '../../src/vision/ffmpeg-source.ts';
import { loadModelManifest } from '../../src/vision/model-manifest.ts';
import type { FrameResult, PipelineStats, VisionSink } from '../../src/vision/pipeline.ts';
import { createVisionPipeline } from '../../src/vision/pipeline.ts';
import { createSyntheticSource } from '../../src/vision/synthetic-source.ts';
import type { VisionModel } from '../../src/vision/vision-model.ts';
import { loadVisionModel } from '../../src/vision/vision-model.ts';
import { FFMPEG, makeTempDir, VTEST, VTEST_FRAMES } from './test-media.ts';

const temp = makeTempDir('pipeline');
let model: VisionModel;
let otherModel: VisionModel;

async function loadGenerated(name: string, layout: 'yolov5' | 'yolov8'): Promise<VisionModel> {
  const scale = 160 / 640;
  const written = writeYoloTestModel(
    temp.dir,
    {
      layout,
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
    { name },
  );
  const manifest = await loadModelManifest(written.manifestPath);
  if (!manifest.ok) throw new Error(manifest.error.message);
  return loadVisionModel({
    modelPath: written.modelPath,
    manifest: manifest.value,
    providers: ['cpu'],
    intraOpThreads: 1,
  });
}

beforeAll(async () => {
  model = await loadGenerated('pipeline-a', 'yolov8');
  otherModel = await loadGenerated('pipeline-b', 'yolov5');
});

afterAll(async () => {
  await model?.release();
  await otherModel?.release();
  temp.remove();
});

const addsUp = (s: PipelineStats): boolean =>
  s.framesIn === s.framesProcessed + s.framesDropped + s.queued + s.inFlight;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('vision pipeline', () => {
  it('drops the oldest frames behind a slow sink and its counters add up exactly at the end', async () => {
    const seen: number[] = [];
    const slow: VisionSink = {
      name: 'slow',
      async onResult({ frame }) {
        seen.push(frame.index);
        await sleep(15);
      },
    };
    const source = createFfmpegSource({ url: VTEST, width: 160, height: 120, ffmpegPath: FFMPEG });
    const pipeline = createVisionPipeline({
      source,
      model,
      sinks: [slow],
      options: { queueCapacity: 2, cameraHealth: false },
    });
    pipeline.start();
    const midway: PipelineStats[] = [];
    const probe = setInterval(() => midway.push(pipeline.stats()), 5);
    const outcome = await pipeline.done;
    clearInterval(probe);
    expect(outcome).toEqual({ reason: 'ended' });
    const stats = pipeline.stats();
    expect(stats.framesIn).toBe(VTEST_FRAMES);
    expect(stats.framesProcessed + stats.framesDropped).toBe(VTEST_FRAMES);
    expect(stats.framesDropped).toBeGreaterThan(0);
    expect(stats.framesProcessed).toBe(seen.length);
    expect(stats).toMatchObject({ queued: 0, inFlight: 0, inferenceErrors: 0, sinkErrors: 0 });
    for (const s of midway) expect(addsUp(s)).toBe(true);
    // Frames come out in order; dropping leaves gaps but never reorders.
    for (let i = 1; i < seen.length; i++) expect(seen[i] as number).toBeGreaterThan(seen[i - 1] as number);
    // The last frame of the file is never the one dropped: drop-oldest keeps the newest.
    expect(seen.at(-1)).toBe(VTEST_FRAMES - 1);

    const metrics = pipeline.takeMetrics();
    expect(PipelineMetrics.parse(metrics)).toEqual(metrics);
    expect(metrics).toMatchObject({
      framesIn: VTEST_FRAMES,
      framesProcessed: stats.framesProcessed,
      framesDropped: stats.framesDropped,
    });
  });

  it('processes every frame in block mode and reuses its frame buffers', async () => {
    const buffers = new Set<ArrayBufferLike>();
    const results: FrameResult[] = [];
    const sink: VisionSink = {
      name: 'collect',
      onResult(result) {
        buffers.add(result.frame.data.buffer);
        if (results.length < 3) results.push({ ...result, detections: [...result.detections] });
      },
    };
    const source = createSyntheticSource({ width: 320, height: 180, frameCount: 200, pattern: 'gray' });
    const pipeline = createVisionPipeline({
      source,
      model,
      sinks: [sink],
      options: { queueMode: 'block', queueCapacity: 3, cameraHealth: false },
    });
    pipeline.start();
    expect(await pipeline.done).toEqual({ reason: 'ended' });
    expect(pipeline.stats()).toMatchObject({ framesIn: 200, framesProcessed: 200, framesDropped: 0 });
    // capacity + 1 slots, allocated once.
    expect(buffers.size).toBeLessThanOrEqual(4);
    const first = results[0] as FrameResult;
    expect(first.detections.map((d) => d.label)).toEqual(['person', 'car', 'dog']);
    expect(first.timings.totalMs).toBeGreaterThanOrEqual(first.timings.inferenceMs);
    expect(first.model.ref.name).toBe('pipeline-a');
  });

  it('counts a failing sink and failing frames without stopping', async () => {
    let calls = 0;
    const failing: VisionSink = {
      name: 'failing',
      onResult() {
        calls++;
        if (calls % 2 === 0) throw new Error('sink broke');
      },
    };
    // A model whose postprocess throws on every third frame (a fake adapter around the real session).
    let frames = 0;
    const flaky: VisionModel = {
      ...model,
      adapter: {
        ...model.adapter,
        postprocess(outputs, pre) {
          frames++;
          if (frames % 3 === 0) throw new Error('bad output');
          return model.adapter.postprocess(outputs, pre);
        },
      },
    };
    const pipeline = createVisionPipeline({
      source: createSyntheticSource({ width: 64, height: 64, frameCount: 30 }),
      model: flaky,
      sinks: [failing],
      options: { queueMode: 'block', cameraHealth: false },
    });
    pipeline.start();
    expect(await pipeline.done).toEqual({ reason: 'ended' });
    const stats = pipeline.stats();
    expect(stats).toMatchObject({ framesIn: 30, framesProcessed: 30, inferenceErrors: 10, sinkErrors: 10 });
    // Frame 30 failed last (in postprocess); frame 28's sink failure came before it.
    expect(stats.lastError).toBe('bad output');
    const metrics = pipeline.takeMetrics();
    expect(metrics).toMatchObject({ framesProcessed: 30, inferenceErrors: 10 });
    expect(metrics.latencyMs.inference?.count).toBe(20);
  });

  it('stops on request, counting frames left in the queue as dropped', async () => {
    const source = createSyntheticSource({ width: 64, height: 64 });
    const pipeline = createVisionPipeline({
      source,
      model,
      sinks: [{ name: 'slow', onResult: async () => void (await sleep(2)) }],
      options: { queueCapacity: 4, cameraHealth: false },
    });
    pipeline.start();
    await sleep(150);
    expect(await pipeline.stop()).toEqual({ reason: 'stopped' });
    const stats = pipeline.stats();
    expect(stats.framesProcessed).toBeGreaterThan(0);
    expect(stats.queued).toBe(0);
    expect(stats.framesIn).toBe(stats.framesProcessed + stats.framesDropped);
  });

  it('swaps models between frames and hands back the previous one when it is no longer used', async () => {
    const names: string[] = [];
    const controller = new AbortController();
    const pipeline = createVisionPipeline({
      source: createSyntheticSource({ width: 64, height: 64, fps: 200 }),
      model,
      signal: controller.signal,
      sinks: [{ name: 'names', onResult: ({ model: m }) => void names.push(m.ref.name) }],
      options: { cameraHealth: false },
    });
    pipeline.start();
    await sleep(60);
    const previous = await pipeline.swapModel(otherModel);
    expect(previous).toBe(model);
    expect(pipeline.model()).toBe(otherModel);
    await sleep(60);
    controller.abort();
    expect(await pipeline.done).toEqual({ reason: 'stopped' });
    const switchAt = names.indexOf('pipeline-b');
    expect(switchAt).toBeGreaterThan(0);
    expect(names.slice(switchAt).every((n) => n === 'pipeline-b')).toBe(true);
    expect(pipeline.takeMetrics().model?.name).toBe('pipeline-b');
  });

  it('ends with the source error when the source fails', async () => {
    const pipeline = createVisionPipeline({
      source: createFfmpegSource({ url: `${temp.dir}/missing.avi`, ffmpegPath: FFMPEG }),
      model,
    });
    pipeline.start();
    const outcome = await pipeline.done;
    expect(outcome.reason).toBe('failed');
    expect(outcome.reason === 'failed' && outcome.error.code).toBe('source_not_found');
  });

  it('reports camera health and the provider in telemetry-ready metrics', async () => {
    const pipeline = createVisionPipeline({
      source: createSyntheticSource({ width: 128, height: 96, frameCount: 12, pattern: 'black' }),
      model,
      options: { queueMode: 'block', cameraHealth: { sampleIntervalMs: 0 } },
    });
    pipeline.start();
    await pipeline.done;
    const metrics = pipeline.takeMetrics();
    expect(metrics.camera).toMatchObject({ black: true, frozen: false, brightness: 0 });
    expect(metrics.provider).toEqual({ requested: ['cpu'], active: 'cpu' });
    expect(metrics.model).toEqual(model.ref);
    expect(metrics.lastInferenceAt).toEqual(expect.any(Number));
    const telemetry = Telemetry.parse({
      msgId: 'boot0001-7',
      bootId: 'boot0001',
      seq: 7,
      ts: Date.now(),
      intervalS: 10,
      system: {
        cpu: { loadPct: 1, cores: 2 },
        memory: { usedBytes: 1, totalBytes: 2 },
        disk: { usedBytes: 1, totalBytes: 2 },
        temperatures: { cpuC: null, gpuC: null },
        uptimeS: 1,
      },
      pipeline: metrics,
    });
    expect(telemetry.pipeline?.framesProcessed).toBe(12);
  });
});
