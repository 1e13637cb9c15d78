import { z } from 'zod';
import { EpochMs } from './messages.ts';
import { Sha256Hex } from './models.ts';

/*
 * Drift of a model's outputs at a site or on one device, as the control plane judges it from the
 * compact histograms already in telemetry (PipelineMetrics): each closed window of
 * `--drift-window-s` against a reference window of the same (model sha, site) or (model sha, device).
 *
 *   confidence PSI   over the CONFIDENCE_BINS confidence histogram
 *   class-mix PSI    over detections per 1000 frames, per class label
 *   band             the worst of the two PSIs against `DriftBands`; a near-threshold share that rose
 *                    by more than the configured delta, or a scene-change rate above the configured
 *                    share, lifts a stable band to moderate (they never make it major on their own)
 */

export const DRIFT_BANDS = ['stable', 'moderate', 'major'] as const;
export const DriftBand = z
  .enum(DRIFT_BANDS)
  .describe('stable: PSI below the moderate bound; moderate: between the bounds; major: at or above the major bound');
export type DriftBand = z.infer<typeof DriftBand>;

/** The PSI bounds of the bands: below `moderate` stable, below `major` moderate, else major. */
export const DriftBands = z
  .object({
    moderate: z.number().positive().default(0.1).describe('PSI at or above which the band is moderate'),
    major: z.number().positive().default(0.25).describe('PSI at or above which the band is major'),
  })
  .refine((b) => b.major > b.moderate, { message: 'major must be greater than moderate' })
  .describe('PSI bounds of the drift bands');
export type DriftBands = z.infer<typeof DriftBands>;

export const DEFAULT_DRIFT_BANDS: DriftBands = Object.freeze({ moderate: 0.1, major: 0.25 });

/** How bad a band is: stable 0, moderate 1, major 2. */
export function driftBandRank(band: DriftBand): number {
  return DRIFT_BANDS.indexOf(band);
}

export const DriftScope = z.enum(['site', 'device']).describe('site: every device with that site label; device: one');
export type DriftScope = z.infer<typeof DriftScope>;

export const DriftReferenceSource = z
  .enum(['auto', 'dataset', 'pinned'])
  .describe(
    'auto: the first --drift-reference-s after the model was first seen there; dataset: the predictions of a dataset version; pinned: a time range the operator chose',
  );
export type DriftReferenceSource = z.infer<typeof DriftReferenceSource>;

const Share = z.number().min(0).max(1);

export const DriftReferenceView = z
  .object({
    source: DriftReferenceSource,
    from: EpochMs.nullable().describe('Start of the reference window; null for a dataset reference'),
    to: EpochMs.nullable().describe('End of the reference window (reached or planned); null for a dataset reference'),
    frames: z.int().min(0).describe('Frames processed inside the reference (or sample images of a dataset)'),
    complete: z.boolean().describe('Whether the reference is closed; windows are judged only against a complete one'),
    datasetId: z.string().nullable().describe('The dataset version of a dataset reference; null otherwise'),
  })
  .describe('The reference window current windows are compared with');
export type DriftReferenceView = z.infer<typeof DriftReferenceView>;

export const DriftNumbers = z
  .object({
    confidencePsi: z.number().min(0).nullable().describe('PSI of the confidence histogram; null until judged'),
    classMixPsi: z.number().min(0).nullable().describe('PSI of the class mix (detections per 1000); null until judged'),
    nearThresholdShare: z
      .object({
        reference: Share.nullable().describe('Near-threshold share in the reference (frame-weighted)'),
        current: Share.nullable().describe('Near-threshold share in the last closed window'),
      })
      .describe('Share of detections within 0.1 above the threshold'),
    sceneChangeRate: z
      .object({
        reference: Share.nullable().describe(
          'Share of telemetry messages that reported a scene change, in the reference',
        ),
        current: Share.nullable().describe('The same share in the last closed window'),
      })
      .describe('Camera scene-change events per telemetry message'),
  })
  .describe('The numbers behind a drift band');
export type DriftNumbers = z.infer<typeof DriftNumbers>;

export const DriftState = z
  .object({
    scope: DriftScope,
    key: z.string().describe('The site label value (scope site) or the device id (scope device)'),
    modelSha256: Sha256Hex.describe('sha256 of the model the telemetry named'),
    modelId: z.string().nullable().describe('name@version of the model; null when telemetry did not say'),
    band: DriftBand,
    sustainedWindows: z
      .int()
      .min(0)
      .describe('Consecutive closed windows at this band or worse (0 while stable or before any judged window)'),
    since: EpochMs.nullable().describe('When the band was entered; null while stable'),
    reference: DriftReferenceView,
    numbers: DriftNumbers,
    window: z
      .object({
        index: z.int().min(0).describe('Window number since the epoch (floor(at / windowMs))'),
        from: EpochMs.describe('Start of the window'),
        to: EpochMs.describe('End of the window'),
      })
      .nullable()
      .describe('The last closed window judged; null before any'),
    updatedAt: EpochMs.describe('When the state last changed'),
  })
  .describe('Drift of one model at one site or on one device');
export type DriftState = z.infer<typeof DriftState>;

export const DriftQuery = z
  .object({
    site: z.string().max(128).optional().describe('Only this site (scope site, and devices of the site)'),
    device: z.string().max(128).optional().describe('Only this device'),
    model: z.string().max(128).optional().describe('Only this model: name, name@version or sha256'),
    band: DriftBand.optional().describe('Only states at this band'),
    scope: DriftScope.optional().describe('Only sites or only devices'),
  })
  .describe('Filters of GET /api/v1/drift');
export type DriftQuery = z.infer<typeof DriftQuery>;

export const DriftList = z
  .object({ items: z.array(DriftState).describe('Drift states, worst band first') })
  .describe('Drift states of sites and devices');
export type DriftList = z.infer<typeof DriftList>;

/** PUT /api/v1/drift/reference: set the reference of one (scope, key, model). */
export const SetDriftReferenceRequest = z
  .object({
    scope: DriftScope,
    key: z.string().min(1).max(128).describe('Site label value or device id'),
    modelSha256: Sha256Hex.describe('sha256 of the model'),
    source: DriftReferenceSource,
    datasetId: z
      .string()
      .max(128)
      .optional()
      .describe('source dataset: the dataset version whose predictions form the reference'),
    from: EpochMs.optional().describe('source pinned: start of the range (stored telemetry is read once)'),
    to: EpochMs.optional().describe('source pinned: end of the range'),
  })
  .superRefine((r, ctx) => {
    if (r.source === 'dataset' && r.datasetId === undefined) {
      ctx.addIssue({ code: 'custom', path: ['datasetId'], message: 'source dataset needs datasetId' });
    }
    if (r.source === 'pinned') {
      if (r.from === undefined || r.to === undefined) {
        ctx.addIssue({ code: 'custom', path: ['from'], message: 'source pinned needs from and to' });
      } else if (r.to <= r.from) {
        ctx.addIssue({ code: 'custom', path: ['to'], message: 'to must be after from' });
      }
    }
  })
  .describe(
    'Set a drift reference: auto restarts the default (the first --drift-reference-s from the next telemetry), dataset uses a dataset version, pinned a time range of stored telemetry',
  );
export type SetDriftReferenceRequest = z.infer<typeof SetDriftReferenceRequest>;
