import { describe, expect, it } from 'vitest';
import {
  boxIou,
  COCO_IOU_THRESHOLDS,
  COCO_RECALL_THRESHOLDS,
  type EvaluatedImage,
  evaluateDetections,
  xyxyToXywh,
} from './detection-metrics.ts';

type Xyxy = [number, number, number, number];
const truth = (category: number | string, [x1, y1, x2, y2]: Xyxy) => ({
  category: String(category),
  bbox: xyxyToXywh(x1, y1, x2, y2),
});
const det = (category: number | string, [x1, y1, x2, y2]: Xyxy, score: number) => ({
  category: String(category),
  bbox: xyxyToXywh(x1, y1, x2, y2),
  score,
});

/*
 * Reference 1: pycocotools' own figures on four COCO val2014 images (ids 42, 73, 74, 133) with
 * boxes from cocoapi's results/instances_val2014_fakebbox100_results.json, as published in
 * Lightning-AI/torchmetrics, tests/detection/test_map.py (commit 02fe7f5f), `_inputs` and the
 * docstring of `_compare_fn` ("Official pycocotools results calculated from a subset of
 * https://github.com/cocodataset/cocoapi/tree/master/results"):
 *   AP @[IoU=0.50:0.95 | area=all | maxDets=100] = 0.706
 *   AP @[IoU=0.50      | area=all | maxDets=100] = 0.901
 *   AP @[IoU=0.75      | area=all | maxDets=100] = 0.846
 *   per class AP @[0.50:0.95]: 0 -> 0.725, 1 -> 0.800, 2 -> 0.454, 3 -> -1 (no ground truth),
 *   4 -> 0.650, 5 -> 0.900
 * Boxes are [x1, y1, x2, y2] there (torchmetrics' default box_format "xyxy"); pycocotools got them
 * as [x, y, w, h]. pycocotools prints 3 decimals, hence the 0.001 tolerance.
 */
const COCO_SUBSET: EvaluatedImage[] = [
  {
    id: '42',
    groundTruth: [truth(4, [214.15, 41.29, 562.41, 285.07])],
    predictions: [det(4, [258.15, 41.29, 606.41, 285.07], 0.236)],
  },
  {
    id: '73',
    groundTruth: [truth(2, [13.0, 22.75, 548.98, 632.42]), truth(2, [1.66, 3.32, 270.26, 275.23])],
    predictions: [det(3, [61.0, 22.75, 565.0, 632.42], 0.318), det(2, [12.66, 3.32, 281.26, 275.23], 0.726)],
  },
  {
    id: '74',
    groundTruth: [
      truth(4, [61.87, 276.25, 358.29, 379.43]),
      truth(1, [2.75, 3.66, 162.15, 316.06]),
      truth(0, [295.55, 93.96, 313.97, 152.79]),
      truth(0, [326.94, 97.05, 340.49, 122.98]),
      truth(0, [356.62, 95.47, 372.33, 147.55]),
      truth(0, [462.08, 105.09, 493.74, 146.99]),
      truth(0, [277.11, 103.84, 292.44, 150.72]),
    ],
    predictions: [
      det(4, [87.87, 276.25, 384.29, 379.43], 0.546),
      det(1, [0.0, 3.66, 142.15, 316.06], 0.3),
      det(0, [296.55, 93.96, 314.97, 152.79], 0.407),
      det(0, [328.94, 97.05, 342.49, 122.98], 0.611),
      det(0, [356.62, 95.47, 372.33, 147.55], 0.335),
      det(0, [464.08, 105.09, 495.74, 146.99], 0.805),
      det(0, [276.11, 103.84, 291.44, 150.72], 0.953),
    ],
  },
  {
    id: '133',
    groundTruth: [truth(5, [13.99, 2.87, 640.0, 421.52])],
    predictions: [det(5, [0.0, 2.87, 601.0, 421.52], 0.699)],
  },
];

describe('mAP against published pycocotools figures', () => {
  it('reproduces pycocotools on four COCO val2014 images within 0.001 (torchmetrics tests/detection/test_map.py)', () => {
    const metrics = evaluateDetections(COCO_SUBSET);
    expect(metrics.map).not.toBeNull();
    expect(Math.abs((metrics.map as number) - 0.706)).toBeLessThanOrEqual(0.001);
    expect(Math.abs((metrics.map50 as number) - 0.901)).toBeLessThanOrEqual(0.001);
    expect(Math.abs((metrics.map75 as number) - 0.846)).toBeLessThanOrEqual(0.001);
    const perClass = Object.fromEntries(metrics.classes.map((c) => [c.category, c.ap]));
    const expected: Record<string, number | null> = {
      '0': 0.725,
      '1': 0.8,
      '2': 0.454,
      '3': null,
      '4': 0.65,
      '5': 0.9,
    };
    for (const [category, ap] of Object.entries(expected)) {
      if (ap === null) expect(perClass[category], `class ${category}`).toBeNull();
      else expect(Math.abs((perClass[category] as number) - ap), `class ${category}`).toBeLessThanOrEqual(0.001);
    }
  });

  /*
   * Reference 2: the docstring example of torchmetrics' MeanAveragePrecision
   * (Lightning-AI/torchmetrics, src/torchmetrics/detection/mean_ap.py, backend pycocotools):
   * one box of IoU 0.78 gives map 0.6000, map_50 1.0, map_75 1.0.
   */
  it('reproduces the torchmetrics MeanAveragePrecision docstring example (map 0.6, map_50 1, map_75 1)', () => {
    const metrics = evaluateDetections([
      {
        id: 'a',
        groundTruth: [truth(0, [214.0, 41.0, 562.0, 285.0])],
        predictions: [det(0, [258.0, 41.0, 606.0, 285.0], 0.536)],
      },
    ]);
    expect(metrics.map).toBeCloseTo(0.6, 4);
    // pycocotools divides by TP + FP + numpy.spacing(1): a perfect score is 1 - 2e-16 there too.
    expect(metrics.map50).toBeCloseTo(1, 12);
    expect(metrics.map75).toBeCloseTo(1, 12);
  });
});

describe('COCO matching rules', () => {
  const box: Xyxy = [10, 10, 50, 50];

  it('builds the thresholds as numpy.linspace does (10 IoU, 101 recall)', () => {
    expect(COCO_IOU_THRESHOLDS).toHaveLength(10);
    expect(COCO_IOU_THRESHOLDS[0]).toBe(0.5);
    expect(COCO_IOU_THRESHOLDS[9]).toBe(0.95);
    expect(COCO_RECALL_THRESHOLDS).toHaveLength(101);
    expect(COCO_RECALL_THRESHOLDS[100]).toBe(1);
  });

  it('computes IoU on xywh boxes, zero for boxes that only touch', () => {
    expect(boxIou([0, 0, 10, 10], [5, 0, 10, 10])).toBeCloseTo(50 / 150, 12);
    expect(boxIou([0, 0, 10, 10], [10, 0, 10, 10])).toBe(0);
    expect(boxIou([0, 0, 10, 10], [0, 0, 10, 10])).toBe(1);
  });

  it('gives a perfect detector AP 1 and precision and recall 1', () => {
    const m = evaluateDetections([{ id: 'a', groundTruth: [truth('car', box)], predictions: [det('car', box, 0.9)] }]);
    expect(m.map).toBeCloseTo(1, 12);
    expect(m.classes[0]).toMatchObject({ precision: 1, recall: 1, truePositives: 1, falsePositives: 0 });
  });

  it('lets one ground-truth box match only one detection: the duplicate is a false positive', () => {
    const m = evaluateDetections([
      { id: 'a', groundTruth: [truth('car', box)], predictions: [det('car', box, 0.9), det('car', box, 0.8)] },
    ]);
    const car = m.classes[0];
    expect(car).toMatchObject({ truePositives: 1, falsePositives: 1, precision: 0.5, recall: 1 });
    // The best-scored detection matched first: precision at recall 1 is 1, so AP stays 1.
    expect(car?.ap50).toBeCloseTo(1, 12);
  });

  it('matches greedily by score: a lower-scored better box loses to the first detection', () => {
    const m = evaluateDetections([
      {
        id: 'a',
        groundTruth: [truth('car', box)],
        predictions: [det('car', [12, 12, 52, 52], 0.95), det('car', box, 0.5)],
      },
    ]);
    // The 0.95 box (IoU 0.82) takes the truth at 0.5..0.8; the exact box is then a false positive.
    expect(m.classes[0]).toMatchObject({ truePositives: 1, falsePositives: 1 });
    expect(m.classes[0]?.ap50).toBeCloseTo(1, 12);
  });

  it('never matches across classes', () => {
    const m = evaluateDetections([{ id: 'a', groundTruth: [truth('car', box)], predictions: [det('bus', box, 0.9)] }]);
    const byName = Object.fromEntries(m.classes.map((c) => [c.category, c]));
    expect(byName.car).toMatchObject({ recall: 0, ap: 0, precision: null });
    // A class without ground truth has no AP (COCO's -1) and stays out of the mean.
    expect(byName.bus).toMatchObject({ ap: null, precision: 0, falsePositives: 1 });
    expect(m.map).toBe(0);
  });

  it('needs IoU at or above the threshold: 0.49 is a miss at 0.5', () => {
    // Detection [0,0,10,10] against truth [0,0,w,10] with IoU = 10/w.
    const m = evaluateDetections([
      {
        id: 'a',
        groundTruth: [{ category: 'x', bbox: [0, 0, 10 / 0.49, 10] }],
        predictions: [{ category: 'x', bbox: [0, 0, 10, 10], score: 0.9 }],
      },
    ]);
    expect(m.classes[0]).toMatchObject({ truePositives: 0, recall: 0, ap50: 0 });
  });

  it('keeps only the best 100 detections per image and class', () => {
    const predictions = Array.from({ length: 150 }, (_, i) => det('x', [1000, 1000, 1010, 1010], 0.99 - i * 0.001));
    predictions.push(det('x', box, 0.01));
    const m = evaluateDetections([{ id: 'a', groundTruth: [truth('x', box)], predictions }]);
    expect(m.classes[0]).toMatchObject({ detections: 100, truePositives: 0, recall: 0 });
  });

  it('treats a crowd box as neither a miss nor a false positive', () => {
    const m = evaluateDetections([
      {
        id: 'a',
        groundTruth: [truth('x', box), { ...truth('x', [100, 100, 200, 200]), crowd: true }],
        predictions: [det('x', box, 0.9), det('x', [120, 120, 140, 140], 0.8)],
      },
    ]);
    expect(m.classes[0]).toMatchObject({ groundTruth: 1, truePositives: 1, falsePositives: 0, recall: 1 });
    expect(m.classes[0]?.ap).toBeCloseTo(1, 12);
  });

  it('samples precision at 101 recall points: one of two boxes found at rank 2 gives AP 51/101 x 0.5', () => {
    const m = evaluateDetections([
      {
        id: 'a',
        groundTruth: [truth('x', box), truth('x', [100, 100, 140, 140])],
        predictions: [det('x', [300, 300, 340, 340], 0.9), det('x', box, 0.8)],
      },
    ]);
    // Recall reaches 0.5 at precision 0.5: thresholds 0..0.5 (51 of 101) get 0.5, the rest 0.
    expect(m.classes[0]?.ap50).toBeCloseTo((51 / 101) * 0.5, 12);
  });

  it('returns null metrics for an empty set', () => {
    expect(evaluateDetections([])).toEqual({ images: 0, map50: null, map75: null, map: null, classes: [] });
  });
});
