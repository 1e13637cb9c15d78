import { SamplePolicy, type SamplePolicyInput } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { countUnmatched, type SelectionInput, selectFrame } from './select.ts';

const box = (label: string, score: number, x1 = 0, y1 = 0, x2 = 10, y2 = 10) => ({ x1, y1, x2, y2, score, label });
const policyOf = (input: SamplePolicyInput) => SamplePolicy.parse(input);
const frame = (over: Partial<SelectionInput> = {}): SelectionInput => ({
  detections: [],
  camera: null,
  shadow: null,
  onDemand: false,
  ...over,
});
const never = () => 0.999_999;
const always = () => 0;

describe('sample selection', () => {
  const cases: Array<{
    name: string;
    policy: SamplePolicyInput;
    frame: SelectionInput;
    random?: () => number;
    kind: string | null;
  }> = [
    {
      name: 'random picks a frame when the draw is under the share',
      policy: { strategies: [{ kind: 'random', share: 0.01 }] },
      frame: frame(),
      random: always,
      kind: 'random',
    },
    {
      name: 'random skips a frame when the draw is over the share',
      policy: { strategies: [{ kind: 'random', share: 0.01 }] },
      frame: frame(),
      random: never,
      kind: null,
    },
    {
      name: 'near-threshold picks a detection within threshold +- epsilon',
      policy: { strategies: [{ kind: 'near-threshold', threshold: 0.5, epsilon: 0.1 }] },
      frame: frame({ detections: [box('car', 0.55)] }),
      kind: 'near-threshold',
    },
    {
      name: 'near-threshold skips confident detections',
      policy: { strategies: [{ kind: 'near-threshold', threshold: 0.5, epsilon: 0.1 }] },
      frame: frame({ detections: [box('car', 0.9), box('car', 0.2)] }),
      kind: null,
    },
    {
      name: 'near-threshold needs minBoxes unsure detections',
      policy: { strategies: [{ kind: 'near-threshold', threshold: 0.5, minBoxes: 2 }] },
      frame: frame({ detections: [box('car', 0.5), box('car', 0.95)] }),
      kind: null,
    },
    {
      name: 'near-threshold counts only the listed classes',
      policy: { strategies: [{ kind: 'near-threshold', threshold: 0.5, classes: ['person'] }] },
      frame: frame({ detections: [box('car', 0.5)] }),
      kind: null,
    },
    {
      name: 'shadow-disagreement picks a box the shadow model lacks',
      policy: { strategies: [{ kind: 'shadow-disagreement' }] },
      frame: frame({ detections: [box('car', 0.9)], shadow: [] }),
      kind: 'shadow-disagreement',
    },
    {
      name: 'shadow-disagreement skips frames where both models agree',
      policy: { strategies: [{ kind: 'shadow-disagreement' }] },
      frame: frame({ detections: [box('car', 0.9)], shadow: [box('car', 0.8, 1, 1, 10, 10)] }),
      kind: null,
    },
    {
      name: 'shadow-disagreement skips frames the shadow did not run on',
      policy: { strategies: [{ kind: 'shadow-disagreement' }] },
      frame: frame({ detections: [box('car', 0.9)] }),
      kind: null,
    },
    {
      name: 'camera-event picks a frame whose listed flag fired',
      policy: { strategies: [{ kind: 'camera-event', events: ['sceneChange'] }] },
      frame: frame({ camera: { sceneChange: true, blurred: false, black: false, frozen: false } }),
      kind: 'camera-event',
    },
    {
      name: 'camera-event ignores flags it does not list',
      policy: { strategies: [{ kind: 'camera-event', events: ['blurred'] }] },
      frame: frame({ camera: { sceneChange: true, blurred: false, black: false, frozen: false } }),
      kind: null,
    },
    {
      name: 'class-rare picks a frame where a listed class was seen',
      policy: { strategies: [{ kind: 'class-rare', classes: ['fox'] }] },
      frame: frame({ detections: [box('car', 0.9), box('fox', 0.3)] }),
      kind: 'class-rare',
    },
    {
      name: 'class-rare ignores a listed class under minScore',
      policy: { strategies: [{ kind: 'class-rare', classes: ['fox'], minScore: 0.5 }] },
      frame: frame({ detections: [box('fox', 0.3)] }),
      kind: null,
    },
    {
      name: 'on-demand picks frames while a capture command is pending',
      policy: { strategies: [{ kind: 'on-demand' }] },
      frame: frame({ onDemand: true }),
      kind: 'on-demand',
    },
    {
      name: 'on-demand skips frames without a pending capture command',
      policy: { strategies: [{ kind: 'on-demand' }] },
      frame: frame(),
      kind: null,
    },
    {
      name: 'a probability draw over the probability drops a selected frame',
      policy: { strategies: [{ kind: 'on-demand', probability: 0.5 }] },
      frame: frame({ onDemand: true }),
      random: never,
      kind: null,
    },
    {
      name: 'a disabled policy selects nothing',
      policy: { enabled: false, strategies: [{ kind: 'on-demand' }] },
      frame: frame({ onDemand: true }),
      kind: null,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(selectFrame(policyOf(c.policy), c.frame, c.random ?? always)?.kind ?? null).toBe(c.kind);
    });
  }

  it('tries strategies in order and reports the first match with its tags and reason', () => {
    const policy = policyOf({
      strategies: [
        { kind: 'class-rare', classes: ['fox'], tags: ['rare'] },
        { kind: 'near-threshold', threshold: 0.5, tags: ['unsure'] },
      ],
    });
    const selected = selectFrame(policy, frame({ detections: [box('car', 0.5)] }), always);
    expect(selected).toMatchObject({ kind: 'near-threshold', index: 1, tags: ['unsure'] });
    expect(selected?.reason).toContain('0.5');
  });

  it('counts a pair below iouBelow as two unmatched boxes and a different label as unmatched', () => {
    expect(countUnmatched([box('car', 1, 0, 0, 10, 10)], [box('car', 1, 8, 8, 18, 18)], 0.5)).toBe(2);
    expect(countUnmatched([box('car', 1)], [box('bus', 1)], 0.5)).toBe(2);
    expect(countUnmatched([box('car', 1), box('car', 1, 20, 20, 30, 30)], [box('car', 1)], 0.5)).toBe(1);
  });
});
