import { z } from 'zod';
import { EpochMs } from './messages.ts';
import { Sha256Hex } from './models.ts';

/*
 * Offline evaluations of a registered model on a labelled dataset version, as
 * `edgeloop-agent eval` measures them and posts them (POST /api/v1/models/:id/evaluations), and
 * the validation a rollout may require of them before it leaves `pending`.
 *
 *   detection:      mAP@0.5, mAP@0.75 and mAP@[0.5:0.95] the COCO way (greedy IoU matching per
 *                   class, 101-point interpolated AP, maxDets 100, area all), precision and recall
 *                   per class at IoU 0.5 over the detections the model keeps (its score threshold)
 *   classification: top-1 accuracy, precision and recall per class
 */

export const EVALUATION_METRICS = ['map', 'map50', 'map75', 'accuracy'] as const;
export const EvaluationMetric = z
  .enum(EVALUATION_METRICS)
  .describe('map: mAP@[0.5:0.95] (COCO AP); map50: mAP@0.5; map75: mAP@0.75; accuracy: top-1 (classification)');
export type EvaluationMetric = z.infer<typeof EvaluationMetric>;

const Share = z.number().min(0).max(1);
const Count = z.int().min(0).max(Number.MAX_SAFE_INTEGER);

export const EvaluationClass = z
  .object({
    label: z.string().min(1).max(64).describe('Class name'),
    groundTruth: Count.describe('Labelled boxes (detection) or images (classification) of the class'),
    detections: Count.describe('Detections (or top-1 predictions) of the class the model made'),
    truePositives: Count.describe('Detections matched to a labelled box at IoU 0.5 (classification: correct)'),
    falsePositives: Count.describe('Detections matched to nothing at IoU 0.5 (classification: wrong)'),
    precision: Share.nullable().describe('truePositives / detections; null without detections'),
    recall: Share.nullable().describe('truePositives / groundTruth; null without ground truth'),
    ap50: Share.nullable().describe('AP at IoU 0.5; null without ground truth or for classification'),
    ap75: Share.nullable().describe('AP at IoU 0.75; null without ground truth or for classification'),
    ap: Share.nullable().describe(
      'AP averaged over IoU 0.5:0.05:0.95; null without ground truth or for classification',
    ),
  })
  .describe('One class of an evaluation');
export type EvaluationClass = z.infer<typeof EvaluationClass>;

export const EvaluationMetrics = z
  .object({
    task: z
      .enum(['detection', 'classification'])
      .describe('Which metrics apply: mAP for detection, accuracy for classification'),
    images: Count.describe('Images evaluated'),
    map: Share.nullable().describe('mAP@[0.5:0.95] over the classes with ground truth; null for classification'),
    map50: Share.nullable().describe('mAP@0.5; null for classification'),
    map75: Share.nullable().describe('mAP@0.75; null for classification'),
    accuracy: Share.nullable().describe('Top-1 accuracy; null for detection'),
    classes: z.array(EvaluationClass).max(10_000).describe('Per class'),
  })
  .describe("A model's figures on one dataset version");
export type EvaluationMetrics = z.infer<typeof EvaluationMetrics>;

/** The value of `metric` in `metrics`, or null when the evaluation has none. */
export function metricValue(metrics: EvaluationMetrics, metric: EvaluationMetric): number | null {
  return metrics[metric];
}

export const Evaluator = z
  .object({
    tool: z.string().min(1).max(64).describe('What measured it (edgeloop-agent eval)'),
    version: z.string().max(64).describe('Its version'),
    provider: z.string().max(32).nullable().describe('Execution provider the model ran on (cpu, cuda, ...)'),
    host: z.string().max(255).nullable().describe('Machine it ran on'),
    durationMs: z.number().min(0).describe('How long the evaluation took'),
  })
  .describe('Who measured the evaluation, and where');
export type Evaluator = z.infer<typeof Evaluator>;

export const EvaluationBaseline = z
  .object({
    modelId: z
      .string()
      .min(3)
      .max(128)
      .describe('`name@version` of the registered model compared against (the champion)'),
    sha256: Sha256Hex.describe('SHA-256 of the baseline file that was evaluated'),
    metrics: EvaluationMetrics.describe("The baseline's figures, measured in the same run on the same images"),
  })
  .describe('The champion measured beside the model, on the same dataset version');
export type EvaluationBaseline = z.infer<typeof EvaluationBaseline>;

export const CreateEvaluationRequest = z
  .object({
    datasetId: z.string().min(3).max(128).describe('The dataset version evaluated on (`name@N`)'),
    modelSha256: Sha256Hex.describe("SHA-256 of the file evaluated: must be the registered model's"),
    metrics: EvaluationMetrics.describe("The model's figures"),
    baseline: EvaluationBaseline.nullable().default(null).describe('The champion beside it; null when none was run'),
    evaluator: Evaluator,
  })
  .describe('POST /api/v1/models/:id/evaluations: an evaluation report');
export type CreateEvaluationRequest = z.infer<typeof CreateEvaluationRequest>;
export type CreateEvaluationRequestInput = z.input<typeof CreateEvaluationRequest>;

export const EvaluationView = z
  .object({
    id: z.string().describe('Evaluation id'),
    modelId: z.string().describe('`name@version` of the model evaluated'),
    datasetId: z.string().describe('The dataset version'),
    modelSha256: Sha256Hex,
    metrics: EvaluationMetrics,
    baseline: EvaluationBaseline.nullable(),
    evaluator: Evaluator,
    createdAt: EpochMs.describe('When it was posted'),
    createdBy: z.string().nullable().describe('The API token that posted it'),
  })
  .describe('A stored evaluation report');
export type EvaluationView = z.infer<typeof EvaluationView>;

export const EvaluationListQuery = z
  .object({ datasetId: z.string().max(128).optional().describe('Only evaluations on this dataset version') })
  .describe('Filters of GET /api/v1/models/:id/evaluations');
export type EvaluationListQuery = z.infer<typeof EvaluationListQuery>;

export const EvaluationList = z
  .object({ items: z.array(EvaluationView).max(1000).describe('Evaluations, newest first (at most 1000)') })
  .describe("A model's evaluations");
export type EvaluationList = z.infer<typeof EvaluationList>;

/** What a rollout spec may require before the rollout leaves `pending`. */
export const ValidationSpec = z
  .object({
    dataset: z.string().min(3).max(128).describe('Dataset version (`name@N`) the evaluation must be on'),
    metric: EvaluationMetric.default('map50'),
    minDelta: z
      .number()
      .min(-1)
      .max(1)
      .default(0)
      .describe('The candidate must score at least the champion plus this (absolute; 0: no worse)'),
  })
  .describe(
    'Validation gate: the rollout stays pending until an evaluation of the candidate on this dataset version ' +
      'shows candidate >= champion (its baseline) + minDelta',
  );
export type ValidationSpec = z.infer<typeof ValidationSpec>;

/** What the validation gate judged: the evaluation it read and the numbers it compared. */
export const ValidationResult = z
  .object({
    dataset: z.string().describe('The dataset version the spec names'),
    metric: EvaluationMetric,
    minDelta: z.number().describe('The margin the spec asks for'),
    evaluationId: z.string().nullable().describe('The evaluation judged; null while none exists'),
    championModelId: z.string().nullable().describe('The champion (the evaluation baseline) compared against'),
    candidate: z.number().nullable().describe("The candidate's value of the metric"),
    champion: z.number().nullable().describe("The champion's value of the metric"),
    delta: z.number().nullable().describe('candidate - champion'),
  })
  .describe('The numbers behind a validation gate verdict');
export type ValidationResult = z.infer<typeof ValidationResult>;
