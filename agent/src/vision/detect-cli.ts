import { parseArgs } from 'node:util';
import type { ModelManifest } from '@edgeloop/protocol';
import type { Logger } from '../logger.ts';
import { silentLogger } from '../logger.ts';
import { resolveFfmpegPath } from './ffmpeg-process.ts';
import { createFfmpegSource } from './ffmpeg-source.ts';
import type { FrameSource } from './frame-source.ts';
import { isImageFile } from './image-decoder.ts';
import { createImageFolderSource } from './image-folder-source.ts';
import { DEFAULT_PROVIDERS } from './inference.ts';
import type { LatencyHistogram } from './latency-histogram.ts';
import { createLatencyHistogram } from './latency-histogram.ts';
import { loadModelManifest } from './model-manifest.ts';
import { createVisionPipeline } from './pipeline.ts';
import { describeError, isVisionError } from './vision-error.ts';
import type { VisionModel } from './vision-model.ts';
import { loadVisionModel } from './vision-model.ts';

/*
 * `edgeloop-agent detect --model PATH [--manifest PATH] [--provider cpu] FILE...`
 *
 * Runs one model over images and videos and prints, on stdout, one JSON line per frame
 *   {"file":"a.jpg","frame":0,"boxes":[{"x1":..,"y1":..,"x2":..,"y2":..,"score":..,"label":"text"}],"ms":12.3}
 * (boxes in source pixels; ms = preprocess + inference + postprocess) and a last summary line
 *   {"summary":true,"frames":..,"fps":..,"latencyMs":{"preprocess":{"p50":..,"p95":..},...},"provider":{..},...}
 * A file that cannot be read gets an error line on stderr and the others still run.
 * Exit codes: 0 all files ran, 1 a file or the model failed, 2 bad usage or manifest.
 */

export interface DetectCliIo {
  stdout?: { write(text: string): unknown };
  stderr?: { write(text: string): unknown };
  /** Environment (main.ts passes process.env): PATH is searched for a system ffmpeg. */
  env?: Readonly<Record<string, string | undefined>>;
  signal?: AbortSignal;
  logger?: Logger;
}

const USAGE = `usage: edgeloop-agent detect --model MODEL.onnx [--manifest MANIFEST.json] [--provider NAME]... [--threads N]
                            [--max-frames N] [--ffmpeg PATH] FILE...
  Runs the model on each image or video FILE; prints one JSON line per frame and a timing summary.
  --provider   execution provider, most preferred first (repeat or comma-separate; default ${DEFAULT_PROVIDERS.join(',')})
  --threads    intra-op threads (default: onnxruntime's, one per core)
  --max-frames stop each video after N frames
  Without --manifest the adapter is guessed from the model's output shape (yolo, db-text, classification).
`;

const round = (value: number, digits: number): number => {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
};

function positiveInt(value: string | undefined, name: string): number | undefined | Error {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    return new Error(`${name} must be a whole number >= 0, got ${JSON.stringify(value)}`);
  return n;
}

export async function runDetectCli(argv: readonly string[], io: DetectCliIo = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const logger = io.logger ?? silentLogger;
  const say = (line: unknown): void => {
    stdout.write(`${JSON.stringify(line)}\n`);
  };
  const complain = (line: unknown): void => {
    stderr.write(`${typeof line === 'string' ? line : JSON.stringify(line)}\n`);
  };

  let parsed: ReturnType<typeof parseCliArgs>;
  try {
    parsed = parseCliArgs(argv);
  } catch (error) {
    complain(`detect: ${describeError(error)}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    stdout.write(USAGE);
    return 0;
  }
  const threadsArg = positiveInt(values.threads, '--threads');
  const maxFramesArg = positiveInt(values['max-frames'], '--max-frames');
  const problems: string[] = [];
  if (!values.model) problems.push('--model is required');
  if (positionals.length === 0) problems.push('at least one FILE is required');
  if (threadsArg instanceof Error) problems.push(threadsArg.message);
  if (maxFramesArg instanceof Error) problems.push(maxFramesArg.message);
  const threads = threadsArg instanceof Error ? undefined : threadsArg;
  const maxFrames = maxFramesArg instanceof Error ? undefined : maxFramesArg;
  if (problems.length > 0) {
    complain(`detect: ${problems.join('; ')}\n${USAGE}`);
    return 2;
  }
  const providers = (values.provider ?? [])
    .flatMap((p) => p.split(','))
    .map((p) => p.trim())
    .filter(Boolean);

  let manifest: ModelManifest | null = null;
  if (values.manifest) {
    const loaded = await loadModelManifest(values.manifest);
    if (!loaded.ok) {
      complain({ error: { code: loaded.error.code, message: loaded.error.message } });
      return 2;
    }
    manifest = loaded.value;
  }

  let ffmpegPath: string;
  let model: VisionModel;
  try {
    ffmpegPath = resolveFfmpegPath({ configured: values.ffmpeg, searchPath: io.env?.PATH });
    model = await loadVisionModel({
      modelPath: values.model as string,
      manifest,
      providers: providers.length > 0 ? providers : DEFAULT_PROVIDERS,
      intraOpThreads: threads,
      logger,
    });
  } catch (error) {
    complain({ error: { code: isVisionError(error) ? error.code : 'failed', message: describeError(error) } });
    return isVisionError(error) && (error.code === 'manifest_invalid' || error.code === 'adapter_unknown') ? 2 : 1;
  }

  const stages = ['preprocess', 'inference', 'postprocess', 'total'] as const;
  const latency: Record<(typeof stages)[number], LatencyHistogram> = {
    preprocess: createLatencyHistogram(),
    inference: createLatencyHistogram(),
    postprocess: createLatencyHistogram(),
    total: createLatencyHistogram(),
  };
  let frames = 0;
  let failedFiles = 0;
  const startedAt = performance.now();
  try {
    for (const file of positionals) {
      if (io.signal?.aborted) break;
      const source: FrameSource = isImageFile(file)
        ? createImageFolderSource({ files: [file], ffmpegPath })
        : createFfmpegSource({ url: file, ffmpegPath, realtime: false, loop: false, restart: { maxRestarts: 0 } });
      const fileAbort = new AbortController();
      const onAbort = (): void => fileAbort.abort();
      io.signal?.addEventListener('abort', onAbort, { once: true });
      let framesOfFile = 0;
      const pipeline = createVisionPipeline({
        source,
        model,
        logger,
        signal: fileAbort.signal,
        options: { queueMode: 'block', queueCapacity: 2, cameraHealth: false },
        sinks: [
          {
            name: 'detect-cli',
            onResult({ frame, detections, timings }) {
              frames++;
              framesOfFile++;
              const ms = timings.preprocessMs + timings.inferenceMs + timings.postprocessMs;
              latency.preprocess.record(timings.preprocessMs);
              latency.inference.record(timings.inferenceMs);
              latency.postprocess.record(timings.postprocessMs);
              latency.total.record(ms);
              say({
                file,
                frame: frame.index,
                boxes: detections.map((d) => ({
                  x1: round(d.x1, 1),
                  y1: round(d.y1, 1),
                  x2: round(d.x2, 1),
                  y2: round(d.y2, 1),
                  score: round(d.score, 4),
                  label: d.label,
                })),
                ms: round(ms, 2),
              });
              if (maxFrames !== undefined && framesOfFile >= maxFrames) fileAbort.abort();
            },
          },
        ],
      });
      pipeline.start();
      const outcome = await pipeline.done;
      io.signal?.removeEventListener('abort', onAbort);
      const stats = pipeline.stats();
      if (outcome.reason === 'failed') {
        failedFiles++;
        complain({ file, error: { code: outcome.error.code ?? 'failed', message: outcome.error.message } });
      } else if (stats.inferenceErrors > 0) {
        failedFiles++;
        complain({
          file,
          error: { code: 'inference_failed', message: `${stats.inferenceErrors} frames failed: ${stats.lastError}` },
        });
      }
    }
  } finally {
    await model.release();
  }
  const wallMs = performance.now() - startedAt;
  const summaryLatency: Record<string, { p50: number; p95: number }> = {};
  for (const stage of stages) {
    summaryLatency[stage] = {
      p50: round(latency[stage].quantile(0.5), 3),
      p95: round(latency[stage].quantile(0.95), 3),
    };
  }
  say({
    summary: true,
    files: positionals.length,
    failedFiles,
    frames,
    wallMs: round(wallMs, 1),
    fps: round(frames / Math.max(wallMs / 1000, 1e-6), 2),
    latencyMs: summaryLatency,
    provider: model.provider,
    model: model.ref,
    adapter: model.manifest.adapter,
    adapterGuessed: model.guessed,
  });
  return failedFiles > 0 ? 1 : 0;
}

function parseCliArgs(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      model: { type: 'string' },
      manifest: { type: 'string' },
      provider: { type: 'string', multiple: true },
      threads: { type: 'string' },
      'max-frames': { type: 'string' },
      ffmpeg: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}
