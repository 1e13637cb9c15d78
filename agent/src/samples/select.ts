import type { SamplePolicy, SampleStrategy, SampleStrategyKind } from '@edgeloop/protocol';

/*
 * Selection: which strategy (if any) wants this frame. Pure and cheap, it runs in the vision loop
 * on every frame: no allocation unless a frame is selected (then one small object and a reason).
 * Strategies are tried in order; the first whose test passes and whose probability draw keeps the
 * frame wins. Limits are not judged here (budget.ts).
 */

export interface BoxLike {
  readonly x1: number;
  readonly y1: number;
  readonly x2: number;
  readonly y2: number;
  readonly score: number;
  readonly label: string;
}

export interface CameraFlags {
  readonly sceneChange: boolean;
  readonly blurred: boolean;
  readonly black: boolean;
  readonly frozen: boolean;
}

export interface SelectionInput {
  readonly detections: readonly BoxLike[];
  /** Camera-health flags when this frame was judged; absent otherwise. */
  readonly camera?: CameraFlags | null | undefined;
  /** The shadow candidate's detections on this frame, when one ran on it. */
  readonly shadow?: readonly BoxLike[] | null | undefined;
  /** True while a capture command still asks for frames. */
  readonly onDemand: boolean;
}

export type Selection = {
  readonly kind: SampleStrategyKind;
  /** Index of the strategy in the policy. */
  readonly index: number;
  readonly reason: string;
  readonly tags: readonly string[];
};

export function selectFrame(policy: SamplePolicy, input: SelectionInput, random: () => number): Selection | null {
  if (!policy.enabled) return null;
  const strategies = policy.strategies;
  for (let i = 0; i < strategies.length; i++) {
    const strategy = strategies[i] as SampleStrategy;
    const reason = testStrategy(strategy, input, random);
    if (reason === null) continue;
    if (strategy.probability < 1 && random() >= strategy.probability) continue;
    return { kind: strategy.kind, index: i, reason, tags: strategy.tags };
  }
  return null;
}

/** The reason a strategy picks the frame, or null. */
export function testStrategy(strategy: SampleStrategy, input: SelectionInput, random: () => number): string | null {
  switch (strategy.kind) {
    case 'random':
      return strategy.share > 0 && random() < strategy.share ? `random ${strategy.share} share` : null;
    case 'near-threshold': {
      const low = strategy.threshold - strategy.epsilon;
      const high = strategy.threshold + strategy.epsilon;
      const classes = strategy.classes;
      let unsure = 0;
      for (const d of input.detections) {
        if (d.score < low || d.score > high) continue;
        if (classes && !classes.includes(d.label)) continue;
        unsure++;
      }
      return unsure >= strategy.minBoxes
        ? `${unsure} detection(s) within ${strategy.threshold} +- ${strategy.epsilon}`
        : null;
    }
    case 'shadow-disagreement': {
      const shadow = input.shadow;
      if (!shadow) return null;
      const unmatched = countUnmatched(input.detections, shadow, strategy.iouBelow);
      return unmatched >= strategy.minUnmatched ? `${unmatched} box(es) unmatched between shadow and active` : null;
    }
    case 'camera-event': {
      const camera = input.camera;
      if (!camera) return null;
      for (const event of strategy.events) if (camera[event]) return `camera ${event}`;
      return null;
    }
    case 'class-rare': {
      for (const d of input.detections) {
        if (d.score >= strategy.minScore && strategy.classes.includes(d.label)) return `rare class ${d.label} seen`;
      }
      return null;
    }
    case 'on-demand':
      return input.onDemand ? 'capture command' : null;
  }
}

export function iou(a: BoxLike, b: BoxLike): number {
  const w = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  const h = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  const union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Boxes one model has and the other does not: a greedy match per label (best IoU first in the
 * order given); a pair below `iouBelow` does not match. Returns unmatched active + unmatched shadow.
 */
export function countUnmatched(active: readonly BoxLike[], shadow: readonly BoxLike[], iouBelow: number): number {
  if (active.length === 0) return shadow.length;
  if (shadow.length === 0) return active.length;
  // A bit mask of matched shadow boxes; frames rarely have more than a few dozen boxes.
  const used = new Uint8Array(shadow.length);
  let matched = 0;
  for (const a of active) {
    let best = -1;
    let bestIou = iouBelow;
    for (let j = 0; j < shadow.length; j++) {
      if (used[j]) continue;
      const s = shadow[j] as BoxLike;
      if (s.label !== a.label) continue;
      const v = iou(a, s);
      if (v >= bestIou) {
        bestIou = v;
        best = j;
      }
    }
    if (best >= 0) {
      used[best] = 1;
      matched++;
    }
  }
  return active.length - matched + (shadow.length - matched);
}
