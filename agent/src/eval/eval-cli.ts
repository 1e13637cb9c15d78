import os from 'node:os';
import { parseArgs } from 'node:util';
import {
  type ApiClient,
  type CreateEvaluationRequest,
  createApiClient,
  createProgress,
  type EvaluationMetrics,
  type EvaluationView,
  type ModelManifest,
} from '@edgeloop/protocol';
import type { Logger } from '../logger.ts';
import { silentLogger } from '../logger.ts';
import { AGENT_VERSION } from '../version.ts';
import { resolveFfmpegPath } from '../vision/ffmpeg-process.ts';
import { DEFAULT_PROVIDERS } from '../vision/inference.ts';
import { loadModelManifest } from '../vision/model-manifest.ts';
import { describeError, isVisionError } from '../vision/vision-error.ts';
import { loadVisionModel, type VisionModel } from '../vision/vision-model.ts';
import { type CocoExport, type ExportImage, readCocoExport } from './coco-export.ts';
import { type ImageFailure, runOnExport, scoreRun, taskOf } from './evaluate-export.ts';

/*
 * `edgeloop-agent eval --model M.onnx --manifest M.json --dataset EXPORT.tar [--baseline M0.onnx
 *  --baseline-manifest M0.json] [--control-plane-url URL --token T]`
 *
 * Runs the model (and the champion beside it, on the same images) over a labelled COCO dataset
 * export (`edgeloop datasets export NAME@N`) through the agent's vision pipeline, prints mAP@0.5,
 * mAP@[0.5:0.95] and per-class precision and recall (classification: accuracy), and, with a
 * control plane, posts the report to POST /api/v1/models/:name/:version/evaluations, where a
 * rollout's validation gate reads it.
 *
 * Exit codes: 0 evaluated (and posted, when asked); 1 the model, an image or the post failed;
 * 2 bad usage, manifest or dataset export.
 */

export interface EvalCliIo {
  stdout?: { write(text: string): unknown };
  stderr?: { write(text: string): unknown; isTTY?: boolean };
  /** Environment (main.ts passes process.env): PATH for ffmpeg, EDGELOOP_TOKEN, EDGELOOP_CONTROL_PLANE_URL. */
  env?: Readonly<Record<string, string | undefined>>;
  signal?: AbortSignal;
  logger?: Logger;
  /** The API client for a base URL and token (tests pass one over app.request). */
  createClient?: (baseUrl: string, token: string | null) => ApiClient;
  now?: () => number;
}

const USAGE = `usage: edgeloop-agent eval --model MODEL.onnx [--manifest MANIFEST.json] --dataset EXPORT.tar
                          [--baseline CHAMPION.onnx [--baseline-manifest CHAMPION.json]]
                          [--control-plane-url URL] [--token TOKEN] [--dataset-id NAME@N] [--split NAME]
                          [--provider NAME]... [--threads N] [--ffmpeg PATH] [--json]
  Runs the model over a labelled COCO dataset export (edgeloop datasets export NAME@N --out EXPORT.tar)
  and reports, for detection, mAP@0.5, mAP@0.75 and mAP@[0.5:0.95] (COCO: greedy IoU matching,
  101-point AP) with precision and recall per class at IoU 0.5; for classification, top-1 accuracy.
  --baseline           the champion, run on the same images in the same process (the rollout
                       validation gate compares the two)
  --control-plane-url  post the report to POST /api/v1/models/NAME/VERSION/evaluations
                       (or EDGELOOP_CONTROL_PLANE_URL); the model is the manifest's name@version
  --token              an operator token (or EDGELOOP_TOKEN)
  --dataset-id         the dataset version (default: the one the export names)
  --split              only the images of this split (train, val, test)
  --provider           execution provider, most preferred first (default ${DEFAULT_PROVIDERS.join(',')})
  --json               print the report as one JSON document instead of a table
  A progress line goes to stderr when it is a terminal.
Exit codes: 0 evaluated (and posted), 1 the model, an image or the post failed, 2 bad usage, manifest or export.
`;

type Flags = ReturnType<typeof parseCliArgs>['values'];

function parseCliArgs(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: false,
    strict: true,
    options: {
      model: { type: 'string' },
      manifest: { type: 'string' },
      dataset: { type: 'string' },
      'dataset-id': { type: 'string' },
      split: { type: 'string' },
      baseline: { type: 'string' },
      'baseline-manifest': { type: 'string' },
      'control-plane-url': { type: 'string' },
      token: { type: 'string' },
      provider: { type: 'string', multiple: true },
      threads: { type: 'string' },
      ffmpeg: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

class CliFailure extends Error {
  readonly exitCode: 1 | 2;
  readonly code: string;
  constructor(exitCode: 1 | 2, code: string, message: string) {
    super(message);
    this.exitCode = exitCode;
    this.code = code;
  }
}

const round = (value: number | null, digits = 4): number | null =>
  value === null ? null : Math.round(value * 10 ** digits) / 10 ** digits;

const figure = (value: number | null): string => (value === null ? '-' : value.toFixed(3));

/** The report as a table, for people. */
export function formatEvaluation(report: {
  modelId: string;
  datasetId: string;
  metrics: EvaluationMetrics;
  baseline: { modelId: string; metrics: EvaluationMetrics } | null;
}): string {
  const lines: string[] = [];
  const headline = (metrics: EvaluationMetrics) =>
    metrics.task === 'classification'
      ? `accuracy ${figure(metrics.accuracy)}`
      : `mAP@0.5 ${figure(metrics.map50)}  mAP@0.75 ${figure(metrics.map75)}  mAP@[0.5:0.95] ${figure(metrics.map)}`;
  lines.push(`${report.modelId} on ${report.datasetId} (${report.metrics.images} images): ${headline(report.metrics)}`);
  if (report.baseline) {
    lines.push(`${report.baseline.modelId} (baseline): ${headline(report.baseline.metrics)}`);
  }
  lines.push('');
  const rows = [['class', 'truth', 'detections', 'tp', 'fp', 'precision', 'recall', 'AP50', 'AP']];
  for (const c of report.metrics.classes) {
    rows.push([
      c.label,
      String(c.groundTruth),
      String(c.detections),
      String(c.truePositives),
      String(c.falsePositives),
      figure(c.precision),
      figure(c.recall),
      figure(c.ap50),
      figure(c.ap),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const row of rows)
    lines.push(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
  return `${lines.join('\n')}\n`;
}

const roundMetrics = (metrics: EvaluationMetrics): EvaluationMetrics => ({
  ...metrics,
  map: round(metrics.map),
  map50: round(metrics.map50),
  map75: round(metrics.map75),
  accuracy: round(metrics.accuracy),
  classes: metrics.classes.map((c) => ({
    ...c,
    precision: round(c.precision),
    recall: round(c.recall),
    ap50: round(c.ap50),
    ap75: round(c.ap75),
    ap: round(c.ap),
  })),
});

export async function runEvalCli(argv: readonly string[], io: EvalCliIo = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const env = io.env ?? {};
  const complain = (text: string) => stderr.write(`${text}\n`);

  let flags: Flags;
  try {
    flags = parseCliArgs(argv).values;
  } catch (error) {
    complain(`eval: ${describeError(error)}\n${USAGE}`);
    return 2;
  }
  if (flags.help) {
    stdout.write(USAGE);
    return 0;
  }
  const problems: string[] = [];
  if (!flags.model) problems.push('--model is required');
  if (!flags.dataset) problems.push('--dataset is required');
  if (flags['baseline-manifest'] && !flags.baseline) problems.push('--baseline-manifest needs --baseline');
  let threads: number | undefined;
  if (flags.threads !== undefined) {
    threads = Number(flags.threads);
    if (!Number.isInteger(threads) || threads < 1)
      problems.push(`--threads must be a whole number >= 1, got ${flags.threads}`);
  }
  if (flags['dataset-id'] !== undefined && !/^[^@\s]+@\d+$/.test(flags['dataset-id'])) {
    problems.push(`--dataset-id must be NAME@N, got ${JSON.stringify(flags['dataset-id'])}`);
  }
  const baseUrl = flags['control-plane-url'] ?? env.EDGELOOP_CONTROL_PLANE_URL;
  const token = flags.token ?? env.EDGELOOP_TOKEN ?? null;
  if (baseUrl !== undefined && !/^https?:\/\//.test(baseUrl)) {
    problems.push(`--control-plane-url must be an http(s) URL, got ${JSON.stringify(baseUrl)}`);
  }
  if (baseUrl !== undefined && token === null) problems.push('posting needs a token: --token or EDGELOOP_TOKEN');
  if (problems.length > 0) {
    complain(`eval: ${problems.join('; ')}\n${USAGE}`);
    return 2;
  }
  const providers = (flags.provider ?? [])
    .flatMap((p) => p.split(','))
    .map((p) => p.trim())
    .filter(Boolean);

  try {
    return await evaluate(flags, { baseUrl, token, providers, threads }, io, stdout, stderr);
  } catch (error) {
    if (error instanceof CliFailure) {
      complain(
        flags.json ? JSON.stringify({ error: { code: error.code, message: error.message } }) : `eval: ${error.message}`,
      );
      return error.exitCode;
    }
    const code = isVisionError(error) ? error.code : ((error as { code?: string }).code ?? 'failed');
    complain(
      flags.json ? JSON.stringify({ error: { code, message: describeError(error) } }) : `eval: ${describeError(error)}`,
    );
    return isVisionError(error) && (code === 'manifest_invalid' || code === 'adapter_unknown') ? 2 : 1;
  }
}

async function readManifest(path: string | undefined): Promise<ModelManifest | null> {
  if (!path) return null;
  const loaded = await loadModelManifest(path);
  if (!loaded.ok) throw new CliFailure(2, loaded.error.code, loaded.error.message);
  return loaded.value;
}

async function evaluate(
  flags: Flags,
  options: { baseUrl: string | undefined; token: string | null; providers: string[]; threads: number | undefined },
  io: EvalCliIo,
  stdout: NonNullable<EvalCliIo['stdout']>,
  stderr: NonNullable<EvalCliIo['stderr']>,
): Promise<number> {
  const logger = io.logger ?? silentLogger;
  const now = io.now ?? (() => Date.now());
  const started = now();
  const exportPath = flags.dataset as string;
  const read = await readCocoExport(exportPath, io.signal);
  if (!read.ok) throw new CliFailure(2, `dataset_${read.error.code}`, read.error.message);
  const coco: CocoExport = read.value;
  const datasetId = flags['dataset-id'] ?? coco.datasetId;
  if (datasetId === null) {
    throw new CliFailure(2, 'dataset_invalid', `${exportPath} names no dataset version: pass --dataset-id NAME@N`);
  }
  if (coco.annotationCount === 0 || coco.scoredAnnotations === coco.annotationCount) {
    throw new CliFailure(
      2,
      'dataset_unlabelled',
      `${exportPath} has no labels to evaluate against${coco.annotationCount > 0 ? " (its boxes carry scores: a model's predictions)" : ''}: ` +
        'import labels (edgeloop datasets import-labels) and export the labelled version',
    );
  }
  const images: ExportImage[] = coco.images.filter((image) => !flags.split || image.split === flags.split);
  if (images.length === 0) {
    throw new CliFailure(
      2,
      'dataset_empty',
      `${exportPath} has no images${flags.split ? ` in split ${flags.split}` : ''}`,
    );
  }

  const manifest = await readManifest(flags.manifest);
  const baselineManifest = await readManifest(flags['baseline-manifest']);
  const ffmpegPath = resolveFfmpegPath({ configured: flags.ffmpeg, searchPath: io.env?.PATH });
  const load = (modelPath: string, m: ModelManifest | null) =>
    loadVisionModel({
      modelPath,
      manifest: m,
      providers: options.providers.length > 0 ? options.providers : DEFAULT_PROVIDERS,
      intraOpThreads: options.threads,
      logger,
    });

  const runs = flags.baseline ? 2 : 1;
  const progress = createProgress({
    label: 'eval',
    enabled: stderr.isTTY === true && !flags.json,
    write: (text) => stderr.write(text),
    now,
  });
  progress.setTotal(images.length * runs);
  const runModel = async (model: VisionModel) => {
    const run = await runOnExport({
      model,
      exportPath,
      images,
      ffmpegPath,
      signal: io.signal,
      logger,
      onImage: (bytes) => progress.add(bytes, true),
    });
    return run;
  };

  const model = await load(flags.model as string, manifest);
  let metrics: EvaluationMetrics;
  let failures: readonly ImageFailure[];
  try {
    const run = await runModel(model);
    failures = run.failures;
    metrics = roundMetrics(scoreRun(taskOf(model), coco, images, run.predictions));
  } finally {
    await model.release();
  }
  let baseline: CreateEvaluationRequest['baseline'] = null;
  if (flags.baseline && failures.length === 0) {
    const champion = await load(flags.baseline, baselineManifest);
    try {
      if (taskOf(champion) !== metrics.task) {
        throw new CliFailure(
          2,
          'baseline_task',
          `the baseline is a ${taskOf(champion)} model, the model a ${metrics.task} one: they cannot be compared`,
        );
      }
      const run = await runModel(champion);
      failures = run.failures;
      baseline = {
        modelId: champion.ref.id,
        sha256: champion.ref.sha256,
        metrics: roundMetrics(scoreRun(taskOf(champion), coco, images, run.predictions)),
      };
    } finally {
      await champion.release();
    }
  }
  progress.done();
  if (io.signal?.aborted) throw new CliFailure(1, 'aborted', 'interrupted');
  if (failures.length > 0) {
    const examples = failures
      .slice(0, 3)
      .map((f) => `${f.fileName}: ${f.message}`)
      .join('; ');
    throw new CliFailure(
      1,
      'images_failed',
      `${failures.length} of ${images.length} images could not be evaluated (nothing posted): ${examples}`,
    );
  }

  const report: CreateEvaluationRequest = {
    datasetId,
    modelSha256: model.ref.sha256,
    metrics,
    baseline,
    evaluator: {
      tool: 'edgeloop-agent eval',
      version: AGENT_VERSION,
      provider: model.provider.active,
      host: os.hostname().slice(0, 255) || null,
      durationMs: Math.max(0, now() - started),
    },
  };
  let posted: EvaluationView | null = null;
  let postError: string | null = null;
  if (options.baseUrl !== undefined) {
    const client = io.createClient
      ? io.createClient(options.baseUrl, options.token)
      : createApiClient({ baseUrl: options.baseUrl, token: options.token });
    const answer = await client.models.postEvaluation(model.ref.name, model.ref.version, report, io.signal);
    if (answer.ok) posted = answer.value;
    else
      postError = `posting to ${options.baseUrl} failed (${answer.error.status ?? 'no answer'} ${answer.error.code}): ${answer.error.message}`;
  }
  if (flags.json) {
    stdout.write(`${JSON.stringify({ modelId: model.ref.id, ...report, posted })}\n`);
  } else {
    stdout.write(formatEvaluation({ modelId: model.ref.id, datasetId, metrics, baseline }));
    if (posted) stdout.write(`\nposted as ${posted.id} (${options.baseUrl})\n`);
  }
  if (postError !== null) throw new CliFailure(1, 'post_failed', postError);
  return 0;
}
