import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeYoloTestModel } from '../../scripts/test-models.ts';
import { createInputWriter, stretchGeometry, type TensorFormat } from '../../src/vision/adapters/resize.ts';
import { VisionConfig } from '../../src/vision/config.ts';
import { createFfmpegSource } from '../../src/vision/ffmpeg-source.ts';
import type { Frame } from '../../src/vision/frame-source.ts';
import type { FrameResult, VisionSink } from '../../src/vision/pipeline.ts';
import { createVision } from '../../src/vision/vision.ts';
import { FFMPEG, lavfiClip, makeTempDir, VTEST, VTEST_FRAMES } from './test-media.ts';

/*
 * ffmpeg scaling for the model (the default for ffmpeg sources): frames arrive at the model's
 * input size, and sinks that ask for it get the full-resolution frame of the same moment on every
 * Nth frame (ffmpeg's split + select on a second output, pipe:3).
 */

const temp = makeTempDir('model-scale');
afterAll(() => temp.remove());

const model = writeYoloTestModel(
  temp.dir,
  {
    layout: 'yolov8',
    inputWidth: 160,
    inputHeight: 160,
    numClasses: 3,
    boxes: [{ cx: 80, cy: 80, w: 40, h: 60, classId: 0, score: 0.9 }],
    anchors: 30,
  },
  { name: 'scale-test' },
);

interface Kept {
  index: number;
  width: number;
  height: number;
  scaledForModel: boolean;
  data: Uint8Array;
  full: { index: number; width: number; height: number; data: Uint8Array } | null;
}

function keep(frame: Frame): Kept {
  return {
    index: frame.index,
    width: frame.width,
    height: frame.height,
    scaledForModel: frame.scaledForModel === true,
    data: frame.data.slice(),
    full: frame.full
      ? { index: frame.full.index, width: frame.full.width, height: frame.full.height, data: frame.full.data.slice() }
      : null,
  };
}

const identity: TensorFormat = {
  layout: 'nchw',
  colorOrder: 'rgb',
  scale: 1,
  mean: [0, 0, 0],
  std: [1, 1, 1],
  padValue: 0,
};

/** Mean absolute difference between a small frame and a large one resized (bilinear) to its size. */
function differenceAfterResize(small: Kept, large: { width: number; height: number; data: Uint8Array }): number {
  const n = small.width * small.height * 3;
  const a = new Float32Array(n);
  const b = new Float32Array(n);
  createInputWriter(identity)(small, stretchGeometry(small.width, small.height, small.width, small.height), a);
  createInputWriter(identity)(large, stretchGeometry(large.width, large.height, small.width, small.height), b);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.abs((a[i] as number) - (b[i] as number));
  return sum / n;
}

describe('ffmpeg scaling for the model', () => {
  it('delivers letterbox-sized frames and the full-resolution frame of the same moment on every 5th frame', async () => {
    // testsrc2 moves everywhere from frame to frame, so a full frame matches only its own moment.
    const clip = await lavfiClip(path.join(temp.dir, 'moving.mp4'), 'testsrc2=size=640x360:rate=25', 2);
    const source = createFfmpegSource({
      url: clip,
      ffmpegPath: FFMPEG,
      modelScale: { width: 160, height: 160, keepAspect: true },
      fullFrames: { everyFrames: 5 },
    });
    const frames: Kept[] = [];
    await source.run((frame) => {
      frames.push(keep(frame));
    }, new AbortController().signal);

    expect(frames).toHaveLength(50);
    expect(source.lastArgs().join(' ')).toContain('split=2');
    for (const frame of frames) {
      expect({ width: frame.width, height: frame.height, scaledForModel: frame.scaledForModel }).toEqual({
        width: 160,
        height: 90,
        scaledForModel: true,
      });
    }
    const withFull = frames.filter((f) => f.full !== null);
    expect(withFull.map((f) => f.index)).toEqual([0, 5, 10, 15, 20, 25, 30, 35, 40, 45]);
    for (const frame of withFull) {
      const full = frame.full as NonNullable<Kept['full']>;
      expect({ index: full.index, width: full.width, height: full.height }).toEqual({
        index: frame.index,
        width: 640,
        height: 360,
      });
      // The full frame is closest to its own scaled frame, not to the neighbours'.
      const own = differenceAfterResize(frame, full);
      for (const other of [frame.index - 1, frame.index + 1]) {
        const neighbour = frames[other];
        if (neighbour) expect(own).toBeLessThan(differenceAfterResize(neighbour, full));
      }
    }
  });

  it('stops at once and leaves no ffmpeg behind when aborted while a slow consumer holds full frames', async () => {
    const source = createFfmpegSource({
      url: VTEST,
      ffmpegPath: FFMPEG,
      loop: true,
      modelScale: { width: 160, height: 160, keepAspect: true },
      fullFrames: { everyFrames: 1 },
    });
    const controller = new AbortController();
    let frames = 0;
    const pids = new Set<number>();
    const run = source.run(async (frame) => {
      frames++;
      const pid = source.childPid();
      if (pid !== null) pids.add(pid);
      expect(frame.full?.width).toBe(768);
      // A consumer slower than ffmpeg: pipe:3 fills up while this waits.
      await new Promise((r) => setTimeout(r, 20));
      if (frames === 10) controller.abort();
    }, controller.signal);
    const started = Date.now();
    await run;
    expect(frames).toBe(10);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(source.childPid()).toBeNull();
    expect(pids.size).toBe(1);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  });

  it('without fullFrames scales only, in one output, and no frame carries a full copy', async () => {
    const source = createFfmpegSource({
      url: VTEST,
      ffmpegPath: FFMPEG,
      modelScale: { width: 320, height: 320, keepAspect: false },
    });
    const frames: Kept[] = [];
    const controller = new AbortController();
    await source.run((frame) => {
      frames.push(keep(frame));
      if (frames.length >= 10) controller.abort();
    }, controller.signal);
    expect(frames).toHaveLength(10);
    expect(frames.every((f) => f.width === 320 && f.height === 320 && f.full === null)).toBe(true);
    expect(source.lastArgs()).not.toContain('pipe:3');
  });

  it('through the vision service, full-resolution vtest.avi frames reach the sink that asks, at its rate', async () => {
    const config = VisionConfig.parse({
      source: { kind: 'ffmpeg', url: VTEST, realtime: false },
      model: { path: model.modelPath, manifestPath: model.manifestPath },
      providers: ['cpu'],
      threads: { intraOp: 1 },
      queue: { mode: 'block' },
      cameraHealth: { enabled: false },
      ffmpegPath: FFMPEG,
    });
    const seen: { index: number; width: number; height: number; full: { width: number; height: number } | null }[] = [];
    let boxesInFrame = true;
    const asking: VisionSink = {
      name: 'wants-full-frames',
      fullFrames: { everyFrames: 8 },
      onResult({ frame, detections }: FrameResult) {
        seen.push({
          index: frame.index,
          width: frame.width,
          height: frame.height,
          full: frame.full ? { width: frame.full.width, height: frame.full.height } : null,
        });
        for (const d of detections) if (d.x2 > frame.width || d.y2 > frame.height) boxesInFrame = false;
      },
    };
    // A sink asking for fewer does not lower the rate: the smallest interval wins.
    const lazy: VisionSink = { name: 'wants-few', fullFrames: { everyFrames: 50 }, onResult() {} };
    const vision = createVision({ config, sinks: [asking, lazy] });
    await vision.start();
    for (let i = 0; i < 600 && seen.length < VTEST_FRAMES; i++) await new Promise((r) => setTimeout(r, 50));
    await vision.stop();

    expect(seen).toHaveLength(VTEST_FRAMES);
    // YOLO letterboxes: ffmpeg keeps the aspect inside 160x160.
    expect(seen.every((f) => f.width === 160 && f.height === 120)).toBe(true);
    expect(boxesInFrame).toBe(true);
    const full = seen.filter((f) => f.full !== null);
    expect(full).toHaveLength(VTEST_FRAMES / 8);
    expect(full.every((f) => f.index % 8 === 0 && f.full?.width === 768 && f.full.height === 576)).toBe(true);
  });

  it('starts ffmpeg again at the new size when a model update changes the input size', async () => {
    const small = writeYoloTestModel(
      temp.dir,
      {
        layout: 'yolov8',
        inputWidth: 96,
        inputHeight: 96,
        numClasses: 3,
        boxes: [{ cx: 48, cy: 48, w: 20, h: 30, classId: 0, score: 0.9 }],
        anchors: 30,
      },
      { name: 'scale-test-small' },
    );
    const config = VisionConfig.parse({
      source: { kind: 'ffmpeg', url: VTEST, realtime: true, loop: true },
      model: { path: model.modelPath, manifestPath: model.manifestPath },
      providers: ['cpu'],
      threads: { intraOp: 1 },
      cameraHealth: { enabled: false },
      ffmpegPath: FFMPEG,
    });
    const sizes: string[] = [];
    const vision = createVision({
      config,
      sinks: [
        {
          name: 'sizes',
          onResult({ frame, model: used }) {
            const size = `${used.ref.name} ${frame.width}x${frame.height}`;
            if (sizes.at(-1) !== size) sizes.push(size);
          },
        },
      ],
    });
    await vision.start();
    for (let i = 0; i < 100 && sizes.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const next = await vision.loadModel(small.modelPath, null);
    const previous = await vision.activateModel(next);
    await previous?.release();
    for (let i = 0; i < 100 && !sizes.includes('scale-test-small 96x72'); i++)
      await new Promise((r) => setTimeout(r, 50));
    await vision.stop();
    // The new model may see a few 160x120 frames already queued, then only its own size.
    expect(sizes[0]).toBe('scale-test 160x120');
    expect(sizes.at(-1)).toBe('scale-test-small 96x72');
  });

  it('with scaleToModel false the frames keep the camera size and are resized in JS', async () => {
    const config = VisionConfig.parse({
      source: { kind: 'ffmpeg', url: VTEST, realtime: false, scaleToModel: false },
      model: { path: model.modelPath, manifestPath: model.manifestPath },
      providers: ['cpu'],
      threads: { intraOp: 1 },
      queue: { mode: 'block' },
      cameraHealth: { enabled: false },
      ffmpegPath: FFMPEG,
    });
    const sizes = new Set<string>();
    let fullCopies = 0;
    let frames = 0;
    const vision = createVision({
      config,
      sinks: [
        {
          name: 'sizes',
          fullFrames: { everyFrames: 2 },
          onResult({ frame }) {
            frames++;
            sizes.add(`${frame.width}x${frame.height}${frame.scaledForModel ? ' scaled' : ''}`);
            if (frame.full) fullCopies++;
          },
        },
      ],
    });
    await vision.start();
    for (let i = 0; i < 200 && frames < 20; i++) await new Promise((r) => setTimeout(r, 25));
    await vision.stop();
    expect(frames).toBeGreaterThanOrEqual(20);
    expect([...sizes]).toEqual(['768x576']);
    expect(fullCopies).toBe(0);
  });
});
