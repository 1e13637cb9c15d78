import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sampleYoloBoxes, writeYoloTestModel } from './test-models.ts';

/*
 * Writes a generated YOLO-format ONNX model (and its manifest) whose output encodes known boxes:
 *
 *   tsx agent/scripts/make-yolo-model.ts --layout yolov8 --out /tmp/models [--size 640] [--anchors 8400]
 *
 * The boxes are sampleYoloBoxes() (two overlapping persons, a car over one of them, a dog, and a
 * box under the threshold), in a SIZE x SIZE input. Try it with
 *   edgeloop-agent detect --model /tmp/models/yolo-test-yolov8.onnx --manifest /tmp/models/yolo-test-yolov8.manifest.json IMAGE
 */

const { values } = parseArgs({
  options: {
    layout: { type: 'string', default: 'yolov8' },
    out: { type: 'string', default: '.' },
    size: { type: 'string', default: '640' },
    anchors: { type: 'string', default: '64' },
    classes: { type: 'string', default: '3' },
  },
});

const layout = values.layout === 'yolov5' ? 'yolov5' : values.layout === 'yolov8' ? 'yolov8' : null;
if (!layout) {
  console.error('--layout must be yolov5 or yolov8');
  process.exit(2);
}
const size = Number(values.size);
const anchors = Number(values.anchors);
const numClasses = Number(values.classes);
if (!(size >= 32) || !(anchors >= 5) || !(numClasses >= 3)) {
  console.error('--size >= 32, --anchors >= 5 and --classes >= 3 are needed');
  process.exit(2);
}
const out = path.resolve(values.out);
mkdirSync(out, { recursive: true });
const scale = size / 640;
const boxes = sampleYoloBoxes().map((b) => ({
  ...b,
  cx: b.cx * scale,
  cy: b.cy * scale,
  w: b.w * scale,
  h: b.h * scale,
}));
const written = writeYoloTestModel(out, { layout, inputWidth: size, inputHeight: size, numClasses, boxes, anchors });
console.log(JSON.stringify({ model: written.modelPath, manifest: written.manifestPath }));
