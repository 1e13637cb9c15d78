import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createSeededRandom } from '../../seeded-random.ts';
import type { ResizeGeometry, TensorFormat } from './resize.ts';
import {
  channelMap,
  createInputWriter,
  lastSizeMemo,
  letterboxGeometry,
  mapBoxToSource,
  stretchGeometry,
  writeInputTensor,
} from './resize.ts';

const plain: TensorFormat = {
  layout: 'nchw',
  colorOrder: 'rgb',
  scale: 1,
  mean: [0, 0, 0],
  std: [1, 1, 1],
  padValue: 114,
};

function solidImage(width: number, height: number, rgb: [number, number, number]) {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) data.set(rgb, i * 3);
  return { data, width, height };
}

describe('letterbox geometry', () => {
  it('fits a wide frame by width and pads top and bottom equally', () => {
    const g = letterboxGeometry(960, 540, 640, 640);
    expect(g.contentWidth).toBe(640);
    expect(g.contentHeight).toBe(360);
    expect(g.contentX).toBe(0);
    expect(g.contentY).toBe(140);
    expect(g.scaleX).toBeCloseTo(2 / 3, 10);
  });

  it('fits a tall frame by height and pads left and right', () => {
    const g = letterboxGeometry(500, 1000, 640, 640);
    expect(g.contentWidth).toBe(320);
    expect(g.contentHeight).toBe(640);
    expect(g.contentX).toBe(160);
    expect(g.contentY).toBe(0);
  });

  it('maps model-input boxes back to source pixels and clamps them to the frame', () => {
    const g = letterboxGeometry(960, 540, 640, 640);
    expect(mapBoxToSource(g, { x1: 150, y1: 220, x2: 250, y2: 420 })).toEqual({ x1: 225, y1: 120, x2: 375, y2: 420 });
    const clamped = mapBoxToSource(g, { x1: -20, y1: 100, x2: 700, y2: 600 });
    expect(clamped).toEqual({ x1: 0, y1: 0, x2: 960, y2: 540 });
  });

  it('stretch maps each axis with its own scale', () => {
    const g = stretchGeometry(800, 600, 800, 608);
    expect(mapBoxToSource(g, { x1: 80, y1: 304, x2: 800, y2: 608 })).toEqual({ x1: 80, y1: 300, x2: 800, y2: 600 });
  });
});

describe('writeInputTensor', () => {
  it('normalises pixels and fills the letterbox padding with the pad value', () => {
    const image = solidImage(4, 2, [255, 0, 51]);
    const g = letterboxGeometry(4, 2, 4, 4);
    const out = new Float32Array(3 * 16);
    writeInputTensor(image, g, { ...plain, scale: 1 / 255 }, out);
    const plane = 16;
    // Row 0 and row 3 are padding (114/255), rows 1-2 the image.
    expect(out[0]).toBeCloseTo(114 / 255, 6);
    expect(out[3 * 4 + 3]).toBeCloseTo(114 / 255, 6);
    expect(out[1 * 4 + 0]).toBeCloseTo(1, 6);
    expect(out[plane + 1 * 4 + 2]).toBeCloseTo(0, 6);
    expect(out[2 * plane + 2 * 4 + 1]).toBeCloseTo(0.2, 6);
  });

  it('applies mean and std per tensor channel and swaps to BGR when asked', () => {
    const image = solidImage(2, 2, [100, 150, 200]);
    const g = stretchGeometry(2, 2, 2, 2);
    const out = new Float32Array(12);
    writeInputTensor(image, g, { ...plain, colorOrder: 'bgr', mean: [10, 20, 30], std: [2, 4, 5] }, out);
    expect(out[0]).toBeCloseTo((200 - 10) / 2, 5);
    expect(out[4]).toBeCloseTo((150 - 20) / 4, 5);
    expect(out[8]).toBeCloseTo((100 - 30) / 5, 5);
  });

  it('writes interleaved channels for nhwc', () => {
    const image = solidImage(2, 1, [1, 2, 3]);
    const out = new Float32Array(6);
    writeInputTensor(image, stretchGeometry(2, 1, 2, 1), { ...plain, layout: 'nhwc' }, out);
    expect(Array.from(out)).toEqual([1, 2, 3, 1, 2, 3]);
  });

  it('interpolates bilinearly with half-pixel centres when upscaling', () => {
    // One row: 0 then 100 (red channel). Upscaled 2 -> 4: sample positions -0.25, 0.25, 0.75, 1.25.
    const data = new Uint8Array([0, 0, 0, 100, 0, 0]);
    const out = new Float32Array(12);
    writeInputTensor({ data, width: 2, height: 1 }, stretchGeometry(2, 1, 4, 1), plain, out);
    expect(Array.from(out.subarray(0, 4))).toEqual([0, 25, 75, 100]);
  });

  it('copies a frame of the input size pixel for pixel (no interpolation)', () => {
    const data = Uint8Array.from([10, 20, 30, 40, 50, 60]);
    const out = new Float32Array(6);
    writeInputTensor({ data, width: 2, height: 1 }, stretchGeometry(2, 1, 2, 1), { ...plain, colorOrder: 'bgr' }, out);
    expect(Array.from(out)).toEqual([30, 60, 20, 50, 10, 40]);
  });

  it('refuses a buffer that is too small', () => {
    expect(() =>
      writeInputTensor(solidImage(2, 2, [0, 0, 0]), stretchGeometry(2, 2, 4, 4), plain, new Float32Array(10)),
    ).toThrow(RangeError);
  });
});

describe('the same-size fast path (a frame ffmpeg already scaled)', () => {
  const imagenet: TensorFormat = {
    layout: 'nchw',
    colorOrder: 'bgr',
    scale: 1 / 255,
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
    padValue: 114,
  };
  const cases = [
    { name: 'stretch 320x320 (one run over the whole frame)', src: [320, 320], dst: [320, 320], letterbox: false },
    { name: 'letterbox 320x240 in 320x320 (full-width rows)', src: [320, 240], dst: [320, 320], letterbox: true },
    { name: 'letterbox 213x320 in 320x320 (one run per row)', src: [213, 320], dst: [320, 320], letterbox: true },
    { name: 'odd width 7x5 (the remainder after groups of four)', src: [7, 5], dst: [7, 5], letterbox: false },
  ] as const;
  it.each(cases.map((c) => [c.name, c] as const))(
    '%s gives bit-identical values to the general bilinear path',
    (_n, c) => {
      const random = createSeededRandom(c.src[0] * 1000 + c.src[1]);
      const [sw, sh] = c.src;
      const [dw, dh] = c.dst;
      for (const format of [
        imagenet,
        { ...imagenet, colorOrder: 'rgb' as const },
        { ...imagenet, layout: 'nhwc' as const },
      ]) {
        const data = new Uint8Array(sw * sh * 3);
        for (let i = 0; i < data.length; i++) data[i] = Math.floor(random() * 256);
        const geometry = c.letterbox ? letterboxGeometry(sw, sh, dw, dh) : stretchGeometry(sw, sh, dw, dh);
        expect([geometry.contentWidth, geometry.contentHeight]).toEqual([sw, sh]);
        const fast = new Float32Array(dw * dh * 3).fill(Number.NaN);
        const general = new Float32Array(dw * dh * 3).fill(Number.NaN);
        writeInputTensor({ data, width: sw, height: sh }, geometry, format, fast);
        writeInputTensor(
          { data, width: sw, height: sh },
          geometry,
          format,
          general,
          undefined,
          channelMap(geometry, format),
          {
            resampleAlways: true,
          },
        );
        expect(fast.some(Number.isNaN)).toBe(false);
        // Bitwise: compare the float32 bit patterns, not a tolerance (-1: no value differs).
        const a = new Uint32Array(fast.buffer);
        const b = new Uint32Array(general.buffer);
        expect(a.findIndex((bits, i) => bits !== b[i])).toBe(-1);
      }
    },
  );
});

describe('the same-size path reading frames by 32-bit words', () => {
  const imagenet: TensorFormat = {
    layout: 'nchw',
    colorOrder: 'bgr',
    scale: 1 / 255,
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
    padValue: 114,
  };
  const reference = (data: Uint8Array, width: number, height: number, geometry: ResizeGeometry): Float32Array => {
    // The formula itself, per pixel and channel, in float64 then stored as float32.
    const out = new Float32Array(geometry.dstWidth * geometry.dstHeight * 3).fill(Number.NaN);
    writeInputTensor({ data, width, height }, geometry, imagenet, out, undefined, channelMap(geometry, imagenet), {
      resampleAlways: true,
    });
    return out;
  };

  it.each([0, 1, 2, 3])('gives bit-identical values for a frame starting %i bytes past a word boundary', (shift) => {
    const random = createSeededRandom(41 + shift);
    // 213 pixels a row (639 bytes): rows start at every alignment; 320x240 letterboxed rows too.
    for (const [w, h, letterbox] of [
      [213, 320, true],
      [320, 240, true],
      [64, 64, false],
      [9, 3, false],
    ] as const) {
      const backing = new Uint8Array(w * h * 3 + shift + 5);
      for (let i = 0; i < backing.length; i++) backing[i] = Math.floor(random() * 256);
      const data = backing.subarray(shift, shift + w * h * 3);
      const geometry = letterbox ? letterboxGeometry(w, h, 320, 320) : stretchGeometry(w, h, w, h);
      const out = new Float32Array(geometry.dstWidth * geometry.dstHeight * 3).fill(Number.NaN);
      createInputWriter(imagenet)({ data, width: w, height: h }, geometry, out);
      const expected = new Uint32Array(reference(data, w, h, geometry).buffer);
      const got = new Uint32Array(out.buffer);
      expect(got.findIndex((bits, i) => bits !== expected[i])).toBe(-1);
    }
  });

  it('reads each frame buffer through its own kept view when frames alternate between buffers', () => {
    const write = createInputWriter(imagenet);
    const geometry = stretchGeometry(16, 8, 16, 8);
    const frames = [1, 2, 3].map((seed) => {
      const random = createSeededRandom(seed);
      return Uint8Array.from({ length: 16 * 8 * 3 }, () => Math.floor(random() * 256));
    });
    const out = new Float32Array(16 * 8 * 3);
    for (const data of [...frames, ...frames]) {
      write({ data, width: 16, height: 8 }, geometry, out);
      expect(Array.from(out)).toEqual(Array.from(reference(data, 16, 8, geometry)));
    }
  });
});

/* Reference inputs computed with numpy (float64) by agent/scripts/resize-reference.py from the same formula image. */
const fixtures = path.resolve(import.meta.dirname, '../../../test/fixtures/resize');

interface ReferenceCase {
  name: string;
  srcWidth: number;
  srcHeight: number;
  dstWidth: number;
  dstHeight: number;
  resize: 'stretch' | 'letterbox';
  format: TensorFormat;
}

function formulaImage(width: number, height: number) {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = (x * 7 + y * 13 + c * 91 + ((x * y) % 17) * 5) % 256;
    }
  }
  return { data, width, height };
}

function referenceOf(name: string): Float32Array {
  const bytes = readFileSync(path.join(fixtures, `${name}.f32`));
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

const cases = JSON.parse(readFileSync(path.join(fixtures, 'cases.json'), 'utf8')) as ReferenceCase[];

describe('writeInputTensor against the numpy reference', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s matches within 1e-4', (_name, c) => {
    const image = formulaImage(c.srcWidth, c.srcHeight);
    const geometry = (c.resize === 'letterbox' ? letterboxGeometry : stretchGeometry)(
      c.srcWidth,
      c.srcHeight,
      c.dstWidth,
      c.dstHeight,
    );
    const expected = referenceOf(c.name);
    // A buffer of stale values: every element must be written.
    const out = new Float32Array(expected.length).fill(Number.NaN);
    createInputWriter(c.format)(image, geometry, out);
    let worst = 0;
    for (let i = 0; i < expected.length; i++)
      worst = Math.max(worst, Math.abs((out[i] as number) - (expected[i] as number)));
    expect(worst).toBeLessThan(1e-4);
  });

  it('gives the same tensor for a second frame of the same size through the kept plan', () => {
    const c = cases[0] as ReferenceCase;
    const write = createInputWriter(c.format);
    const geometry = stretchGeometry(c.srcWidth, c.srcHeight, c.dstWidth, c.dstHeight);
    const first = new Float32Array(c.dstWidth * c.dstHeight * 3);
    const second = new Float32Array(first.length);
    write(formulaImage(c.srcWidth, c.srcHeight), geometry, first);
    // Another size in between replaces the plan; coming back must rebuild it correctly.
    write(formulaImage(50, 40), stretchGeometry(50, 40, c.dstWidth, c.dstHeight), second);
    write(formulaImage(c.srcWidth, c.srcHeight), geometry, second);
    expect(Array.from(second)).toEqual(Array.from(first));
  });

  it('refuses a frame shorter than its size says', () => {
    const g = stretchGeometry(4, 4, 2, 2);
    expect(() =>
      writeInputTensor({ data: new Uint8Array(10), width: 4, height: 4 }, g, plain, new Float32Array(12)),
    ).toThrow(/frame holds 10 bytes/);
  });
});

describe('lastSizeMemo', () => {
  it('builds once per frame size and again when the size changes', () => {
    let built = 0;
    const memo = lastSizeMemo((w, h) => ({ w, h, n: ++built }));
    const a = memo(768, 576);
    expect(memo(768, 576)).toBe(a);
    expect(memo(320, 240)).toEqual({ w: 320, h: 240, n: 2 });
    expect(memo(768, 576).n).toBe(3);
  });
});
