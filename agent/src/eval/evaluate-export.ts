import type { EvaluationClass, EvaluationMetrics } from '@edgeloop/protocol';
import type { Logger } from '../logger.ts';
import { silentLogger } from '../logger.ts';
import type { Detection } from '../vision/adapters/adapter-types.ts';
import type { FrameHandler, FrameSource, SourceStats } from '../vision/frame-source.ts';
import { decodeImage } from '../vision/image-decoder.ts';
import { createVisionPipeline } from '../vision/pipeline.ts';
import { describeError, isVisionError } from '../vision/vision-error.ts';
import type { VisionModel } from '../vision/vision-model.ts';
import { evaluateClassification } from './classification-metrics.ts';
import type { CocoExport, ExportImage } from './coco-export.ts';
import { eachExportImage } from './coco-export.ts';
import { evaluateDetections, type PredictedBox, xyxyToXywh } from './detection-metrics.ts';

/*
 * One model over the images of a COCO dataset export, through the agent's own vision pipeline
 * (the frames go source -> queue -> preprocess -> onnxruntime -> the adapter's postprocess, as on
 * a device), and the metrics of what it found against the export's labels:
 *
 *   detection (yolo, db-text):  every image counts, with or without boxes (an image without
 *                               labels is a true negative or a source of false positives)
 *   classification:             an image counts when it has a label (its first annotation's
 *                               category); the model's class is its best detection
 *
 * The images stream from the tar one at a time (never all in memory), decoded by ffmpeg.
 */

export type ImageFailure = { readonly fileName: string; readonly code: string; readonly message: string };

export type ExportRun = {
  /** Detections per image file name (source pixels), for the images that ran. */
  readonly predictions: ReadonlyMap<string, readonly Detection[]>;
  readonly failures: readonly ImageFailure[];
  readonly durationMs: number;
};

export type RunOnExportOptions = {
  readonly model: VisionModel;
  readonly exportPath: string;
  readonly images: readonly ExportImage[];
  readonly ffmpegPath: string;
  readonly signal?: AbortSignal | undefined;
  readonly logger?: Logger | undefined;
  /** Called after each image the model ran on (or that failed to decode). */
  readonly onImage?: ((bytes: number) => void) | undefined;
  readonly decodeTimeoutMs?: number | undefined;
};

/** A frame source over the export's images: each decoded from its tar entry, in tar order. */
function exportSource(options: RunOnExportOptions, failures: ImageFailure[]): FrameSource {
  const wanted = new Set(options.images.map((image) => image.fileName));
  let delivered = 0;
  let failed = 0;
  let lastError: SourceStats['lastError'] = null;
  let buffer: Uint8Array = new Uint8Array(0);
  return {
    kind: 'images',
    description: options.exportPath,
    async run(onFrame: FrameHandler, signal: AbortSignal) {
      const { found } = await eachExportImage(
        options.exportPath,
        wanted,
        async (fileName, bytes) => {
          let decoded: { data: Uint8Array; width: number; height: number };
          try {
            decoded = await decodeImage(
              { bytes },
              { ffmpegPath: options.ffmpegPath, signal, target: buffer, timeoutMs: options.decodeTimeoutMs ?? 10_000 },
            );
          } catch (error) {
            if (signal.aborted) return;
            failed++;
            lastError = { code: isVisionError(error) ? error.code : 'decode_failed', message: describeError(error) };
            failures.push({ fileName, ...lastError });
            options.onImage?.(bytes.length);
            return;
          }
          if (decoded.data.buffer !== buffer.buffer) buffer = decoded.data;
          const index = delivered++;
          await onFrame({
            data: decoded.data,
            width: decoded.width,
            height: decoded.height,
            index,
            capturedAt: Date.now(),
            origin: fileName,
          });
          options.onImage?.(bytes.length);
        },
        signal,
      );
      // Images listed in annotations.json but missing from the tar are named once the run is over.
      if (found < wanted.size && !signal.aborted) {
        lastError = { code: 'source_not_found', message: `${wanted.size - found} listed images are not in the tar` };
      }
    },
    stats: (): SourceStats => ({ framesDelivered: delivered, restarts: 0, failures: failed, lastError }),
  };
}

/** Runs `model` over the listed images of the export at `exportPath`. */
export async function runOnExport(options: RunOnExportOptions): Promise<ExportRun> {
  const failures: ImageFailure[] = [];
  const predictions = new Map<string, readonly Detection[]>();
  const started = performance.now();
  const pipeline = createVisionPipeline({
    source: exportSource(options, failures),
    model: options.model,
    logger: options.logger ?? silentLogger,
    signal: options.signal,
    options: { queueMode: 'block', queueCapacity: 2, cameraHealth: false },
    sinks: [
      {
        name: 'eval',
        onResult({ frame, detections }) {
          predictions.set(
            frame.origin,
            detections.map((d) => ({ ...d })),
          );
        },
      },
    ],
  });
  pipeline.start();
  const outcome = await pipeline.done;
  if (outcome.reason === 'failed') throw outcome.error;
  const stats = pipeline.stats();
  if (stats.inferenceErrors > 0) {
    throw Object.assign(new Error(`${stats.inferenceErrors} images failed inference: ${stats.lastError}`), {
      code: 'inference_failed',
    });
  }
  if (!options.signal?.aborted) {
    const failed = new Set(failures.map((f) => f.fileName));
    for (const image of options.images) {
      if (!predictions.has(image.fileName) && !failed.has(image.fileName)) {
        failures.push({
          fileName: image.fileName,
          code: 'source_not_found',
          message: `${image.fileName} is listed in annotations.json but not in the tar`,
        });
      }
    }
  }
  return { predictions, failures, durationMs: performance.now() - started };
}

/** Detection (yolo, db-text) or classification, from the model's adapter. */
export function taskOf(model: Pick<VisionModel, 'manifest'>): EvaluationMetrics['task'] {
  return model.manifest.adapter === 'classification' ? 'classification' : 'detection';
}

/** The metrics of `predictions` against the export's labels, in the report's shape. */
export function scoreRun(
  task: EvaluationMetrics['task'],
  coco: Pick<CocoExport, 'truth'>,
  images: readonly ExportImage[],
  predictions: ReadonlyMap<string, readonly Detection[]>,
): EvaluationMetrics {
  if (task === 'classification') {
    const classified = images.flatMap((image) => {
      const truth = coco.truth.get(image.fileName)?.[0]?.category;
      if (truth === undefined) return [];
      const best = predictions.get(image.fileName)?.[0];
      return [{ id: image.fileName, truth, predicted: best?.label ?? null }];
    });
    const metrics = evaluateClassification(classified);
    return {
      task,
      images: metrics.images,
      map: null,
      map50: null,
      map75: null,
      accuracy: metrics.accuracy,
      classes: metrics.classes.map(
        (c): EvaluationClass => ({
          label: c.category,
          groundTruth: c.support,
          detections: c.predicted,
          truePositives: c.correct,
          falsePositives: c.predicted - c.correct,
          precision: c.precision,
          recall: c.recall,
          ap50: null,
          ap75: null,
          ap: null,
        }),
      ),
    };
  }
  const evaluated = images.map((image) => ({
    id: image.fileName,
    groundTruth: coco.truth.get(image.fileName) ?? [],
    predictions: (predictions.get(image.fileName) ?? []).map(
      (d): PredictedBox => ({ category: d.label, bbox: xyxyToXywh(d.x1, d.y1, d.x2, d.y2), score: d.score }),
    ),
  }));
  const metrics = evaluateDetections(evaluated);
  return {
    task,
    images: metrics.images,
    map: metrics.map,
    map50: metrics.map50,
    map75: metrics.map75,
    accuracy: null,
    classes: metrics.classes.map(
      (c): EvaluationClass => ({
        label: c.category,
        groundTruth: c.groundTruth,
        detections: c.detections,
        truePositives: c.truePositives,
        falsePositives: c.falsePositives,
        precision: c.precision,
        recall: c.recall,
        ap50: c.ap50,
        ap75: c.ap75,
        ap: c.ap,
      }),
    ),
  };
}
