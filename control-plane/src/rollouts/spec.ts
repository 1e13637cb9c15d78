import { z } from 'zod';

/* What an operator asks for when starting a rollout. Defaults make a careful rollout:
 * shadow on a canary cohort, then the canary cohort live against a control cohort, then 1%, 10%,
 * 50% and 100% of the target, each stage gated on how the model behaves on the devices. */

export const StageSpec = z.object({
  name: z.string().min(1).max(32),
  /**
   * shadow:  the canary cohort runs the candidate beside the current model (no switch);
   * canary:  the canary cohort switches to the candidate, compared with the control cohort;
   * percent: at least `percent` % of the target runs the candidate (cumulative).
   */
  kind: z.enum(['shadow', 'canary', 'percent']),
  percent: z.number().min(0).max(100).optional(),
});
export type StageSpec = z.infer<typeof StageSpec>;

export const DEFAULT_STAGES: readonly StageSpec[] = [
  { name: 'shadow', kind: 'shadow' },
  { name: 'canary', kind: 'canary' },
  { name: '1%', kind: 'percent', percent: 1 },
  { name: '10%', kind: 'percent', percent: 10 },
  { name: '50%', kind: 'percent', percent: 50 },
  { name: '100%', kind: 'percent', percent: 100 },
];

export const EvidenceSpec = z.object({
  /** Devices of the stage that must be reporting before a verdict. */
  minDevices: z.int().min(1).default(3),
  /** Share of the stage's devices that must be reporting: silent devices are unknown, never success. */
  minReportingShare: z.number().min(0).max(1).default(0.8),
  /** Frames the stage's devices must have processed on the candidate within the window. */
  minFrames: z.int().min(0).default(500),
  /** Time a stage runs before any pass verdict. */
  soakS: z.number().min(0).default(120),
});
export type EvidenceSpec = z.infer<typeof EvidenceSpec>;

export const GateSpec = z.object({
  /** Seconds between gate evaluations (the evaluation window is the soak so far, at most windowS). */
  intervalS: z.number().min(0.05).default(30),
  /** Width of the metrics window compared between cohorts. */
  windowS: z.number().min(1).default(300),
  /** Consecutive failing evaluations before a stage fails (one bad window can be noise). */
  failingWindowsRequired: z.int().min(1).default(2),
  /** Canary inference error rate may exceed control's by at most this (absolute). */
  maxErrorRateIncrease: z.number().min(0).default(0.02),
  /** Share of the stage's devices that failed or reverted the update locally. */
  maxRevertShare: z.number().min(0).max(1).default(0.05),
  /** Canary p95 inference latency over control's. */
  maxLatencyRatio: z.number().min(1).default(1.5),
  /** Canary fps over control's. */
  minFpsRatio: z.number().min(0).max(1).default(0.8),
  /** |canary - control| / control of detections per 1000 frames. */
  maxDetectionChange: z.number().min(0).default(0.4),
  /** Population stability index of the confidence histograms. */
  maxPsi: z.number().min(0).default(0.25),
  /** Shadow stage: candidate against current, IoU-matched. */
  minShadowPrecision: z.number().min(0).max(1).default(0.6),
  minShadowRecall: z.number().min(0).max(1).default(0.6),
});
export type GateSpec = z.infer<typeof GateSpec>;

export const AbortSpec = z.object({
  /** Roll back when this share of devices that got the model failed the update... */
  maxFailureShare: z.number().min(0).max(1).default(0.2),
  /** ...once at least this many failed. */
  minFailures: z.int().min(1).default(3),
});
export type AbortSpec = z.infer<typeof AbortSpec>;

export const MaintenanceWindow = z.object({
  /** Days of week (0 = Sunday) in UTC; all when left out. */
  days: z.array(z.int().min(0).max(6)).max(7).optional(),
  /** `HH:MM` UTC; a window may wrap past midnight. */
  start: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/),
  end: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/),
});
export type MaintenanceWindow = z.infer<typeof MaintenanceWindow>;

export const CanarySpec = z.object({
  /** Devices per (hardware, site) combination in the canary cohort. */
  perGroup: z.int().min(1).default(1),
  /** Lower bound on the canary cohort size (when the target has enough devices). */
  minSize: z.int().min(1).default(3),
  /** Upper bound on the canary cohort size. */
  maxSize: z.int().min(1).default(50),
  /** Label naming the site; the hardware profile comes from reports or the `hardware` label. */
  siteLabel: z.string().default('site'),
});
export type CanarySpec = z.infer<typeof CanarySpec>;

export const RolloutSpec = z.object({
  /** `name@version` of a registered model. */
  modelId: z.string().min(3).max(128),
  /** Target devices: every enrolled device whose labels include all of these. */
  selector: z.object({ labels: z.record(z.string(), z.string()).default({}) }).prefault({}),
  stages: z
    .array(StageSpec)
    .min(1)
    .max(16)
    .default([...DEFAULT_STAGES]),
  canary: CanarySpec.prefault({}),
  evidence: EvidenceSpec.prefault({}),
  gates: GateSpec.prefault({}),
  abort: AbortSpec.prefault({}),
  maintenanceWindows: z.array(MaintenanceWindow).max(16).default([]),
  /** Each device's start is spread uniformly over this many seconds (from a stable hash). */
  jitterS: z.number().min(0).max(86_400).default(0),
});
export type RolloutSpec = z.infer<typeof RolloutSpec>;
export type RolloutSpecInput = z.input<typeof RolloutSpec>;
