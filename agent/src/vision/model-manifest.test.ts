import { describe, expect, it } from 'vitest';
import { defaultManifest, guessAdapter, modelNameFromPath, parseModelManifest } from './model-manifest.ts';

describe('model manifests', () => {
  it('gives db-text manifests PaddleOCR normalisation unless they name their own', () => {
    const parsed = parseModelManifest({ name: 'ocr', version: '1.0.0', adapter: 'db-text' });
    expect(parsed.ok && parsed.value.input).toMatchObject({
      resize: 'stretch',
      colorOrder: 'bgr',
      mean: [0.485, 0.456, 0.406],
      std: [0.229, 0.224, 0.225],
    });
    expect(parsed.ok && parsed.value.labels).toEqual(['text']);
    const own = parseModelManifest({ name: 'ocr', version: '1.0.0', adapter: 'db-text', input: { mean: [0, 0, 0] } });
    expect(own.ok && own.value.input.mean).toEqual([0, 0, 0]);
  });

  it('keeps the protocol defaults for yolo', () => {
    const parsed = parseModelManifest({ name: 'det', version: '2.0.0', adapter: 'yolo' });
    expect(parsed.ok && parsed.value.input).toMatchObject({ resize: 'letterbox', padValue: 114, mean: [0, 0, 0] });
  });

  it('lists every problem of an invalid manifest', () => {
    const parsed = parseModelManifest({ name: 'Bad Name', version: 'one', adapter: 'sam' });
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.error.code).toBe('manifest_invalid');
      expect(parsed.error.message).toContain('name');
      expect(parsed.error.message).toContain('version');
      expect(parsed.error.message).toContain('adapter');
    }
  });

  it('guesses the adapter from the output rank', () => {
    expect(guessAdapter(['n', 1, 'h', 'w'])).toBe('db-text');
    expect(guessAdapter([1, 84, 8400])).toBe('yolo');
    expect(guessAdapter([1, 1000])).toBe('classification');
    expect(guessAdapter([1, 2, 3, 4, 5])).toBeNull();
    expect(guessAdapter(undefined)).toBeNull();
  });

  it('names a manifest-less model after its file', () => {
    expect(modelNameFromPath('/m/ch_PP-OCRv4_det_infer.onnx')).toBe('ch_pp-ocrv4_det_infer');
    expect(defaultManifest('yolo', '/m/__YOLO v8.onnx')).toMatchObject({
      name: 'yolo-v8',
      version: '0.0.0',
      adapter: 'yolo',
    });
  });
});
