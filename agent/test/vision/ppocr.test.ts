import type { ModelManifest } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Detection, ModelAdapter } from '../../src/vision/adapters/adapter-types.ts';
import { tensorLength } from '../../src/vision/adapters/adapter-types.ts';
import { createModelAdapter } from '../../src/vision/adapters/model-adapter.ts';
import { PPOCR_DET_MANIFEST_PATH, ppocrDetModelPath } from '../../src/vision/bundled-models.ts';
import { createFfmpegSource } from '../../src/vision/ffmpeg-source.ts';
import { decodeImage } from '../../src/vision/image-decoder.ts';
import { loadModelManifest } from '../../src/vision/model-manifest.ts';
import type { VisionModel } from '../../src/vision/vision-model.ts';
import { loadVisionModel } from '../../src/vision/vision-model.ts';
import type { XyBox } from './test-media.ts';
import { collectFrames, FFMPEG, matchBoxes, SCENETEXT01 } from './test-media.ts';

/*
 * PP-OCRv4 det on OpenCV's scenetext01.jpg (800x600). test-media/README.md records five boxes:
 *   [229,36,334,52] [229,77,330,89] [229,111,330,123] [228,145,330,157] [235,180,318,192]
 * They are DB's raw regions (before unclip) in the photo scaled to 640x480: the same run at 640x480
 * with unclipRatio 0 reproduces them within a pixel, and at 800x600 they are the regions found
 * scaled by 1.25. The tests check both frames.
 */
const RECORDED: XyBox[] = [
  { x1: 229, y1: 36, x2: 334, y2: 52 },
  { x1: 229, y1: 77, x2: 330, y2: 89 },
  { x1: 229, y1: 111, x2: 330, y2: 123 },
  { x1: 228, y1: 145, x2: 330, y2: 157 },
  { x1: 235, y1: 180, x2: 318, y2: 192 },
];

let model: VisionModel;
let manifest: ModelManifest;
let rawRegions: ModelAdapter;

interface Image {
  data: Uint8Array;
  width: number;
  height: number;
}

async function detect(adapter: ModelAdapter, image: Image): Promise<Detection[]> {
  const dims = adapter.inputDims(image.width, image.height);
  const input = new Float32Array(tensorLength(dims));
  const pre = adapter.preprocess(image, input);
  const outputs = await model.session.run(model.input.name, input, pre.dims);
  return adapter.postprocess(outputs, pre);
}

const contains = (outer: XyBox, inner: XyBox, slack: number): boolean =>
  outer.x1 <= inner.x1 + slack &&
  outer.y1 <= inner.y1 + slack &&
  outer.x2 >= inner.x2 - slack &&
  outer.y2 >= inner.y2 - slack;

beforeAll(async () => {
  const loaded = await loadModelManifest(PPOCR_DET_MANIFEST_PATH);
  if (!loaded.ok) throw new Error(loaded.error.message);
  manifest = loaded.value;
  model = await loadVisionModel({ modelPath: ppocrDetModelPath(), manifest, providers: ['cpu'], intraOpThreads: 2 });
  rawRegions = createModelAdapter({ ...manifest, dbText: { ...manifest.dbText, unclipRatio: 0 } }, model.input);
});

afterAll(async () => {
  await model?.release();
});

describe('PP-OCRv4 det on scenetext01.jpg', () => {
  it('finds exactly the five recorded text lines at 640x480, each with IoU >= 0.5', async () => {
    const [frame] = await collectFrames(
      createFfmpegSource({ url: SCENETEXT01, width: 640, height: 480, ffmpegPath: FFMPEG }),
    );
    expect(frame).toMatchObject({ width: 640, height: 480 });
    const image = frame as Image;

    const regions = await detect(rawRegions, image);
    expect(regions).toHaveLength(5);
    const ious = matchBoxes(RECORDED, regions);
    for (const value of ious) expect(value).toBeGreaterThanOrEqual(0.5);

    // The shipped manifest (DB unclip 1.5) grows each region to the whole text line around it.
    const lines = await detect(model.adapter, image);
    expect(lines).toHaveLength(5);
    for (const recorded of RECORDED) {
      expect(lines.some((line) => contains(line, recorded, 1))).toBe(true);
    }
    for (const line of lines) {
      expect(line.label).toBe('text');
      expect(line.score).toBeGreaterThanOrEqual(manifest.dbText.boxThreshold);
    }
  });

  it('finds the same five lines in the full 800x600 photo, in its pixels, plus the small print on the newspaper box', async () => {
    const image = await decodeImage({ path: SCENETEXT01 }, { ffmpegPath: FFMPEG });
    expect(image).toMatchObject({ width: 800, height: 600 });
    const regions = await detect(rawRegions, image);
    const scaled = RECORDED.map((b) => ({ x1: b.x1 * 1.25, y1: b.y1 * 1.25, x2: b.x2 * 1.25, y2: b.y2 * 1.25 }));
    for (const value of matchBoxes(scaled, regions)) expect(value).toBeGreaterThanOrEqual(0.5);
    // At full resolution DB also reads "The Post" on the newspaper box (x ~210..250, y ~515..550).
    const extra = regions.filter((r) => r.y1 > 400);
    expect(regions.length - extra.length).toBe(5);
    expect(extra.length).toBeGreaterThanOrEqual(1);
    for (const r of extra) {
      expect(r.x1).toBeGreaterThan(200);
      expect(r.x2).toBeLessThan(260);
    }
  });

  it('finds no text in a blank image', async () => {
    for (const value of [0, 128, 255]) {
      const image = { data: new Uint8Array(640 * 480 * 3).fill(value), width: 640, height: 480 };
      expect(await detect(model.adapter, image)).toEqual([]);
    }
  });
});
