import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import * as ort from 'onnxruntime-node';
import { writeYoloTestModel } from '../agent/scripts/test-models.ts';
import { tensorLength } from '../agent/src/vision/adapters/adapter-types.ts';
import type { SourceScale } from '../agent/src/vision/adapters/resize.ts';
import { PPOCR_DET_MANIFEST_PATH, ppocrDetModelPath } from '../agent/src/vision/bundled-models.ts';
import { resolveFfmpegPath } from '../agent/src/vision/ffmpeg-process.ts';
import { createFfmpegSource } from '../agent/src/vision/ffmpeg-source.ts';
import { loadModelManifest } from '../agent/src/vision/model-manifest.ts';
import type { VisionSink } from '../agent/src/vision/pipeline.ts';
import { createVisionPipeline } from '../agent/src/vision/pipeline.ts';
import { createSyntheticSource } from '../agent/src/vision/synthetic-source.ts';
import type { VisionModel } from '../agent/src/vision/vision-model.ts';
import { loadVisionModel } from '../agent/src/vision/vision-model.ts';
import { reportResult } from './report.ts';

/*
 * `npm run bench:agent`: the agent's vision loop against raw onnxruntime, on this machine's CPU.
 *
 *   A. raw `session.run` on PP-OCRv4 det at 320x320 (onnxruntime directly, pre-made tensors),
 *      same thread count, against the full pipeline (source of decoded vtest.avi frames held in
 *      memory -> queue -> preprocess -> run -> DB postprocess -> metrics window + camera health).
 *      The camera is vtest.avi at 768x576. The agent's default for an ffmpeg source scales it to
 *      the model input in ffmpeg (`modelScale` from the adapter's sourceScale, as the vision
 *      service asks for it), so the JS preprocess only normalises: that loop is the one with the
 *      targets. The JS resize path (image folders, the Pi camera, scaleToModel: false) is
 *      measured beside it on the same 768x576 frames.
 *      Rounds alternate raw/loop so background load hits both alike. Two ratios: throughput (the
 *      median of the per-round fps ratios) and per frame (median raw run time over median loop
 *      time per frame), which load spikes on a shared machine disturb least. Beside them, not a
 *      target: the share of each loop frame's time spent in its own session.run, paired per frame
 *      and so unmoved by load that changes between rounds (it does not see a run slowed inside
 *      the loop, which only the ratios against raw do).
 *      Targets (issue 14): loop >= 0.95 x raw; preprocess + postprocess <= 5 % of inference.
 *   B. ffmpeg source decode rate on test-media/video/vtest.avi (768x576, 200 frames, as fast as possible).
 *   C. RSS growth over 10,000 frames through the full pipeline with a generated YOLOv8-layout
 *      model (320x320 input, 80 classes, 2100 candidates as YOLOv8 has at 320; a tiny graph, so
 *      the loop is stressed, not the model). Target < 20 MB.
 */

const THREADS = Number(process.env.BENCH_THREADS ?? 2);
const ROUNDS = 7;
const FRAMES_PER_ROUND = 60;
const RSS_FRAMES = 10_000;
const RSS_WARMUP = 500;
const SIZE = 320;

const MiB = 1024 * 1024;
const repoRoot = path.resolve(import.meta.dirname, '..');
const vtest = path.resolve(repoRoot, 'test-media/video/vtest.avi');
const ffmpegPath = resolveFfmpegPath({ searchPath: process.env.PATH });

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
};
const fmt = (v: number, digits = 1): string => v.toFixed(digits);

async function decodeFrames(count: number, modelScale?: SourceScale | null): Promise<FrameSet> {
  const frames: Uint8Array[] = [];
  const size = { width: 0, height: 0 };
  const controller = new AbortController();
  await createFfmpegSource({ url: vtest, ffmpegPath, modelScale }).run((frame) => {
    frames.push(frame.data.slice());
    size.width = frame.width;
    size.height = frame.height;
    if (frames.length >= count) controller.abort();
  }, controller.signal);
  return { frames, ...size };
}

async function rawFps(
  session: ort.InferenceSession,
  inputName: string,
  tensors: ort.Tensor[],
  runs: number,
  perRunMs: number[] = [],
): Promise<number> {
  const started = performance.now();
  let last = started;
  for (let i = 0; i < runs; i++) {
    await session.run({ [inputName]: tensors[i % tensors.length] as ort.Tensor });
    const now = performance.now();
    perRunMs.push(now - last);
    last = now;
  }
  return (runs * 1000) / (performance.now() - started);
}

interface LoopResult {
  fps: number;
  preMs: number;
  inferenceMs: number;
  postMs: number;
}

interface FrameSet {
  frames: Uint8Array[];
  width: number;
  height: number;
}

async function loopFps(
  model: VisionModel,
  set: FrameSet,
  count: number,
  perFrameMs: number[] = [],
  runShares: number[] = [],
): Promise<LoopResult> {
  const sums = { pre: 0, inference: 0, post: 0, n: 0 };
  let last = 0;
  const sink: VisionSink = {
    name: 'timings',
    onResult({ timings }) {
      // Wall time from one finished frame to the next: what the loop costs per frame.
      const now = performance.now();
      if (last > 0) {
        perFrameMs.push(now - last);
        // This frame's session.run over the same interval: paired per frame, so load that changes
        // between rounds does not move it (the raw/loop ratios compare rounds seconds apart).
        runShares.push(timings.inferenceMs / (now - last));
      }
      last = now;
      sums.pre += timings.preprocessMs;
      sums.inference += timings.inferenceMs;
      sums.post += timings.postprocessMs;
      sums.n++;
    },
  };
  const pipeline = createVisionPipeline({
    source: createSyntheticSource({ width: set.width, height: set.height, frames: set.frames, frameCount: count }),
    model,
    sinks: [sink],
    options: { queueMode: 'block', queueCapacity: 2, cameraHealth: {} },
  });
  const started = performance.now();
  pipeline.start();
  const outcome = await pipeline.done;
  const elapsed = performance.now() - started;
  if (outcome.reason !== 'ended') throw new Error(`pipeline ${outcome.reason}`);
  return {
    fps: (pipeline.stats().framesProcessed * 1000) / elapsed,
    preMs: sums.pre / sums.n,
    inferenceMs: sums.inference / sums.n,
    postMs: sums.post / sums.n,
  };
}

async function loadBenchModel(): Promise<VisionModel> {
  const loaded = await loadModelManifest(PPOCR_DET_MANIFEST_PATH);
  if (!loaded.ok) throw new Error(loaded.error.message);
  const manifest = { ...loaded.value, input: { ...loaded.value.input, width: SIZE, height: SIZE } };
  return loadVisionModel({
    modelPath: ppocrDetModelPath(),
    manifest,
    providers: ['cpu'],
    intraOpThreads: THREADS,
    warmupFrameSize: { width: 768, height: 576 },
  });
}

async function benchLoopVsRaw(model: VisionModel, full: FrameSet, scaled: FrameSet) {
  // Raw: a separate session with the same options, fed tensors made once from real frames.
  const session = await ort.InferenceSession.create(ppocrDetModelPath(), {
    executionProviders: ['cpu'],
    intraOpNumThreads: THREADS,
    interOpNumThreads: 0,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  const dims = model.adapter.inputDims(768, 576);
  const tensors = full.frames.slice(0, 4).map((data) => {
    const input = new Float32Array(tensorLength(dims));
    model.adapter.preprocess({ data, width: 768, height: 576 }, input);
    return new ort.Tensor('float32', input, [...dims]);
  });
  await rawFps(session, model.input.name, tensors, 10);
  await loopFps(model, full, 20);
  await loopFps(model, scaled, 20);

  // `loop`: the default path (ffmpeg scaled the camera to the model input); `jsLoop`: the JS resize of 768x576.
  const raw: number[] = [];
  const loop: LoopResult[] = [];
  const rawRunMs: number[] = [];
  const loopFrameMs: number[] = [];
  const loopRunShares: number[] = [];
  const jsLoop: LoopResult[] = [];
  const jsFrameMs: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    raw.push(await rawFps(session, model.input.name, tensors, FRAMES_PER_ROUND, rawRunMs));
    loop.push(await loopFps(model, scaled, FRAMES_PER_ROUND, loopFrameMs, loopRunShares));
    jsLoop.push(await loopFps(model, full, FRAMES_PER_ROUND, jsFrameMs));
  }
  await session.release();
  await model.release();
  const loopMedian = median(loop.map((l) => l.fps));
  const rawMedian = median(raw);
  const ratios = loop.map((l, i) => l.fps / (raw[i] as number));
  const jsRatios = jsLoop.map((l, i) => l.fps / (raw[i] as number));
  const rawFrameMs = median(rawRunMs);
  const loopMs = median(loopFrameMs);
  const pre = median(loop.map((l) => l.preMs));
  const inference = median(loop.map((l) => l.inferenceMs));
  const post = median(loop.map((l) => l.postMs));
  return {
    rawMedian,
    loopMedian,
    ratios,
    jsRatio: median(jsRatios),
    jsFrameRatio: rawFrameMs / median(jsFrameMs),
    jsPre: median(jsLoop.map((l) => l.preMs)),
    jsPrePostPct:
      ((median(jsLoop.map((l) => l.preMs)) + median(jsLoop.map((l) => l.postMs))) /
        median(jsLoop.map((l) => l.inferenceMs))) *
      100,
    rawFrameMs,
    loopFrameMs: loopMs,
    runShare: median(loopRunShares),
    raw,
    loop,
    pre,
    inference,
    post,
    dims,
    provider: model.provider.active,
  };
}

async function benchDecode() {
  const source = createFfmpegSource({ url: vtest, ffmpegPath });
  let frames = 0;
  const started = performance.now();
  await source.run(() => {
    frames++;
  }, new AbortController().signal);
  const elapsed = performance.now() - started;
  return { frames, fps: (frames * 1000) / elapsed, seconds: elapsed / 1000 };
}

async function benchRss(frames: Uint8Array[]) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-bench-'));
  try {
    const written = writeYoloTestModel(
      dir,
      {
        layout: 'yolov8',
        inputWidth: 320,
        inputHeight: 320,
        numClasses: 80,
        anchors: 2100,
        boxes: [
          { cx: 100, cy: 160, w: 50, h: 100, classId: 0, score: 0.9 },
          { cx: 105, cy: 162, w: 50, h: 100, classId: 0, score: 0.6 },
          { cx: 110, cy: 165, w: 60, h: 90, classId: 2, score: 0.8 },
          { cx: 240, cy: 150, w: 40, h: 30, classId: 16, score: 0.7 },
        ],
      },
      { name: 'bench-yolov8', labels: Array.from({ length: 80 }, (_, i) => `class${i}`) },
    );
    const loaded = await loadModelManifest(written.manifestPath);
    if (!loaded.ok) throw new Error(loaded.error.message);
    const model = await loadVisionModel({
      modelPath: written.modelPath,
      manifest: loaded.value,
      providers: ['cpu'],
      intraOpThreads: THREADS,
    });
    let processed = 0;
    let detections = 0;
    // After a GC every 500 frames: RSS and what onnxruntime's output tensors hold outside the heap.
    const samples: { rss: number; heap: number; external: number }[] = [];
    const sink: VisionSink = {
      name: 'rss',
      onResult(result) {
        processed++;
        detections += result.detections.length;
        if (processed >= RSS_WARMUP && (processed - RSS_WARMUP) % 500 === 0) {
          gc();
          const usage = process.memoryUsage();
          samples.push({ rss: usage.rss, heap: usage.heapUsed, external: usage.external });
        }
      },
    };
    const pipeline = createVisionPipeline({
      source: createSyntheticSource({ width: 768, height: 576, frames, frameCount: RSS_WARMUP + RSS_FRAMES }),
      model,
      sinks: [sink],
      options: { queueMode: 'block', cameraHealth: {} },
    });
    const started = performance.now();
    pipeline.start();
    await pipeline.done;
    const elapsed = performance.now() - started;
    await model.release();
    // RSS swings by the external memory of output tensors not yet collected (~10-20 MB on
    // 2 threads); growth compares the median of the first five samples with the last five.
    const first = samples.slice(0, 5);
    const last = samples.slice(-5);
    const rss = samples.map((x) => x.rss);
    return {
      frames: processed - RSS_WARMUP,
      growthMb: (median(last.map((x) => x.rss)) - median(first.map((x) => x.rss))) / MiB,
      rssStartMb: median(first.map((x) => x.rss)) / MiB,
      rssEndMb: median(last.map((x) => x.rss)) / MiB,
      minRssMb: Math.min(...rss) / MiB,
      maxRssMb: Math.max(...rss) / MiB,
      heapGrowthMb: (median(last.map((x) => x.heap)) - median(first.map((x) => x.heap))) / MiB,
      fps: (processed * 1000) / elapsed,
      detectionsPerFrame: detections / processed,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const startedAll = performance.now();
console.log(
  `edgeloop agent benchmark: node ${process.version}, onnxruntime-node ${ort.env.versions.node}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), intra-op threads ${THREADS}`,
);
const full = await decodeFrames(30);
const frames = full.frames;
const benchModel = await loadBenchModel();
// The same frames as the agent's ffmpeg source delivers them by default: scaled to what the model asks.
const scaled = await decodeFrames(30, benchModel.adapter.sourceScale);
const a = await benchLoopVsRaw(benchModel, full, scaled);
const b = await benchDecode();
const c = await benchRss(frames);
const ratio = median(a.ratios);
const frameRatio = a.rawFrameMs / a.loopFrameMs;
// The round with the fastest raw run saw the least background load: the least flattering ratio.
const quietRound = a.raw.indexOf(Math.max(...a.raw));
const quietRatio = a.ratios[quietRound] as number;
const prePostPct = ((a.pre + a.post) / a.inference) * 100;

const rows: [string, string, string, string][] = [
  ['measure', 'value', 'target', 'ok'],
  [`raw session.run, PP-OCRv4 det ${a.dims.join('x')}, ${THREADS} threads`, `${fmt(a.rawMedian)} fps`, '', ''],
  [
    `full agent loop, camera 768x576 scaled to ${scaled.width}x${scaled.height} by ffmpeg (the default)`,
    `${fmt(a.loopMedian)} fps`,
    '',
    '',
  ],
  ['loop / raw, throughput (median of per-round ratios)', fmt(ratio, 3), '>= 0.95', ratio >= 0.95 ? 'yes' : 'NO'],
  [
    `loop / raw, least-loaded round (${fmt(a.raw[quietRound] ?? 0)} / ${fmt(a.loop[quietRound]?.fps ?? 0)} fps)`,
    fmt(quietRatio, 3),
    '>= 0.95',
    quietRatio >= 0.95 ? 'yes' : 'NO',
  ],
  [
    `loop / raw, median frame time (${fmt(a.rawFrameMs, 2)} / ${fmt(a.loopFrameMs, 2)} ms)`,
    fmt(frameRatio, 3),
    '>= 0.95',
    frameRatio >= 0.95 ? 'yes' : 'NO',
  ],
  ['  session.run / frame time inside the loop, paired per frame (median)', fmt(a.runShare, 3), '', ''],
  ['preprocess (normalise the ffmpeg-scaled frame), median of rounds', `${fmt(a.pre, 2)} ms`, '', ''],
  ['inference, median of rounds', `${fmt(a.inference, 2)} ms`, '', ''],
  ['postprocess (DB regions), median of rounds', `${fmt(a.post, 2)} ms`, '', ''],
  ['pre + post, % of inference', `${fmt(prePostPct, 1)} %`, '<= 5 %', prePostPct <= 5 ? 'yes' : 'NO'],
  [
    'JS resize path (image folders, Pi camera): loop / raw, throughput / frame time',
    `${fmt(a.jsRatio, 3)} / ${fmt(a.jsFrameRatio, 3)}`,
    '',
    '',
  ],
  [
    `  its preprocess (768x576 -> ${SIZE}x${SIZE} in JS), pre + post % of inference`,
    `${fmt(a.jsPre, 2)} ms, ${fmt(a.jsPrePostPct, 1)} %`,
    '',
    '',
  ],
  [`ffmpeg decode, vtest.avi 768x576 (${b.frames} frames)`, `${fmt(b.fps)} fps`, '', ''],
  [
    `RSS growth over ${c.frames} frames (generated yolov8 320x320, 80 cls, 2100 cand.)`,
    `${fmt(c.growthMb, 1)} MB`,
    '< 20 MB',
    c.growthMb < 20 ? 'yes' : 'NO',
  ],
  [
    '  RSS first / last five samples (medians), min .. max of all',
    `${fmt(c.rssStartMb)} / ${fmt(c.rssEndMb)}, ${fmt(c.minRssMb)} .. ${fmt(c.maxRssMb)} MB`,
    '',
    '',
  ],
  ['  heap growth over the same frames', `${fmt(c.heapGrowthMb, 2)} MB`, '', ''],
  ['  loop rate of that run', `${fmt(c.fps)} fps`, '', ''],
];
const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i]?.length ?? 0)));
for (const [i, row] of rows.entries()) {
  console.log(row.map((cell, j) => cell.padEnd(widths[j] as number)).join(' | '));
  if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
}
console.log(
  `rounds (raw fps / loop fps): ${a.raw.map((r, i) => `${fmt(r)} / ${fmt(a.loop[i]?.fps ?? 0)}`).join(', ')}; provider ${a.provider}; load average ${os
    .loadavg()
    .map((l) => fmt(l, 2))
    .join(' ')}; total ${fmt((performance.now() - startedAll) / 1000)} s`,
);
const camera = `vtest.avi 768x576 scaled by ffmpeg to ${scaled.width}x${scaled.height}`;
reportResult({
  bench: 'bench:agent',
  metric: `agent loop / raw session.run, throughput, ${camera}`,
  value: `${fmt(ratio, 3)} (median of per-round ratios; median rates ${fmt(a.loopMedian)} / ${fmt(a.rawMedian)} fps)`,
  target: '>= 0.95',
  met: ratio >= 0.95,
});
reportResult({
  bench: 'bench:agent',
  metric: `agent loop / raw session.run, median frame time, ${camera}`,
  value: `${fmt(a.loopFrameMs, 2)} vs ${fmt(a.rawFrameMs, 2)} ms: ${fmt(frameRatio, 3)}`,
  target: '>= 0.95',
  met: frameRatio >= 0.95,
});
reportResult({
  bench: 'bench:agent',
  metric: 'session.run / frame time inside the loop, paired per frame',
  value: fmt(a.runShare, 3),
});
reportResult({
  bench: 'bench:agent',
  metric: 'preprocess + postprocess, share of inference',
  value: `${fmt(a.pre, 2)} + ${fmt(a.post, 2)} ms of ${fmt(a.inference, 2)} ms: ${fmt(prePostPct, 1)} %`,
  target: '<= 5 %',
  met: prePostPct <= 5,
});
reportResult({
  bench: 'bench:agent',
  metric: 'JS resize path (768x576 -> 320x320), loop / raw, throughput',
  value: `${fmt(a.jsRatio, 3)} (preprocess ${fmt(a.jsPre, 2)} ms)`,
});
reportResult({
  bench: 'bench:agent',
  metric: `RSS growth over ${c.frames} frames`,
  value: `${fmt(c.growthMb, 1)} MB`,
  target: '< 20 MB',
  met: c.growthMb < 20,
});
