import type { ModelManifestInput } from '@edgeloop/protocol';
import { ModelManifest } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { createBoxSet } from './box-set.ts';
import { createYoloAdapter, decodeYoloCandidates, resolveYoloShape } from './yolo-adapter.ts';

function manifest(extra: Partial<ModelManifestInput> = {}): ModelManifest {
  return ModelManifest.parse({ name: 'm', version: '1.0.0', adapter: 'yolo', labels: ['a', 'b'], ...extra });
}

describe('resolveYoloShape', () => {
  it('tells the layouts apart by the class count when labels are known', () => {
    expect(resolveYoloShape([1, 10, 7], 'auto', 2)).toEqual({
      ok: true,
      value: { layout: 'yolov5', anchors: 10, classes: 2 },
    });
    expect(resolveYoloShape([1, 84, 8400], 'auto', 80)).toEqual({
      ok: true,
      value: { layout: 'yolov8', anchors: 8400, classes: 80 },
    });
    expect(resolveYoloShape([1, 6, 100], 'auto', 2)).toMatchObject({
      value: { layout: 'yolov8', anchors: 100, classes: 2 },
    });
  });

  it('falls back on the longer axis holding the candidates, also when both layouts fit the labels', () => {
    expect(resolveYoloShape([1, 6, 7], 'auto', 2)).toMatchObject({ value: { layout: 'yolov8', anchors: 7 } });
    expect(resolveYoloShape([1, 25200, 85], 'auto', null)).toMatchObject({ value: { layout: 'yolov5', classes: 80 } });
    expect(resolveYoloShape([1, 84, 8400], 'auto', null)).toMatchObject({ value: { layout: 'yolov8', classes: 80 } });
  });

  it('obeys an explicit layout and rejects shapes that are not [1, A, B]', () => {
    expect(resolveYoloShape([1, 100, 7], 'yolov8', 2)).toMatchObject({
      value: { layout: 'yolov8', anchors: 7, classes: 96 },
    });
    expect(resolveYoloShape([1, 1, 64, 64], 'auto', null)).toMatchObject({ ok: false });
  });
});

describe('decodeYoloCandidates', () => {
  const scratch = { best: new Float32Array(0), bestClass: new Int32Array(0) };

  it('multiplies objectness by the best class score in the yolov5 layout', () => {
    // Two rows of (cx, cy, w, h, obj, c0, c1).
    const data = Float32Array.from([50, 50, 20, 10, 0.5, 0.2, 0.9, 10, 10, 4, 4, 0.1, 0.9, 0.9]);
    const out = createBoxSet();
    decodeYoloCandidates(data, { layout: 'yolov5', anchors: 2, classes: 2 }, 0.25, out, scratch);
    expect(out.count).toBe(1);
    expect(out.score[0]).toBeCloseTo(0.45, 6);
    expect(out.classId[0]).toBe(1);
    expect([out.x1[0], out.y1[0], out.x2[0], out.y2[0]]).toEqual([40, 45, 60, 55]);
  });

  it('reads the transposed yolov8 layout', () => {
    // 3 anchors, 2 classes: rows cx, cy, w, h, c0, c1.
    const data = Float32Array.from([10, 20, 30, 10, 20, 30, 4, 4, 4, 4, 4, 4, 0.1, 0.8, 0.3, 0.2, 0.1, 0.6]);
    const out = createBoxSet();
    decodeYoloCandidates(data, { layout: 'yolov8', anchors: 3, classes: 2 }, 0.5, out, scratch);
    expect(out.count).toBe(2);
    expect([out.classId[0], out.score[0], out.x1[0]]).toEqual([0, Math.fround(0.8), 18]);
    expect([out.classId[1], out.score[1], out.x1[1]]).toEqual([1, Math.fround(0.6), 28]);
  });
});

describe('YOLO adapter', () => {
  it('caps candidates at topK before NMS', () => {
    const adapter = createYoloAdapter({
      manifest: manifest({ thresholds: { topK: 3, confidence: 0.1 } }),
      input: { name: 'images', layout: 'nchw', width: 100, height: 100 },
    });
    // 10 disjoint boxes of class 0, scores 0.1 .. 1.0: only the 3 best survive.
    const n = 10;
    const data = new Float32Array(6 * n);
    for (let i = 0; i < n; i++) {
      data[i] = 5 + i * 10;
      data[n + i] = 50;
      data[2 * n + i] = 8;
      data[3 * n + i] = 8;
      data[4 * n + i] = (i + 1) / 10;
      data[5 * n + i] = 0;
    }
    const geometry = { srcWidth: 100, srcHeight: 100, dstWidth: 100, dstHeight: 100, contentX: 0, contentY: 0 };
    const pre = {
      dims: [1, 3, 100, 100],
      geometry: { ...geometry, contentWidth: 100, contentHeight: 100, scaleX: 1, scaleY: 1 },
    };
    const detections = adapter.postprocess({ out: { dims: [1, 6, n], data } }, pre);
    expect(detections.map((d) => Math.round(d.score * 10))).toEqual([10, 9, 8]);
    expect(detections[0]).toMatchObject({ x1: 91, x2: 99, label: 'a' });
  });

  it('letterboxes a non-square frame into the input', () => {
    const adapter = createYoloAdapter({
      manifest: manifest(),
      input: { name: 'images', layout: 'nchw', width: 64, height: 64 },
    });
    const image = { data: new Uint8Array(128 * 64 * 3).fill(255), width: 128, height: 64 };
    const out = new Float32Array(3 * 64 * 64);
    const pre = adapter.preprocess(image, out);
    expect(pre.dims).toEqual([1, 3, 64, 64]);
    expect(pre.geometry).toMatchObject({ contentWidth: 64, contentHeight: 32, contentY: 16, scaleX: 0.5 });
    expect(out[0]).toBeCloseTo(114 / 255, 6);
    expect(out[20 * 64]).toBeCloseTo(1, 6);
  });
});
