import { createHash } from 'node:crypto';
import { SamplePolicy } from '@edgeloop/protocol';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { createSeededRandom } from '../seeded-random.ts';
import { redactAndEncode } from './encode.ts';

const W = 320;
const H = 240;

function noisyFrame(): Uint8Array {
  const random = createSeededRandom(7);
  const rgb = new Uint8Array(W * H * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = 40 + Math.floor(random() * 180);
  return rgb;
}

async function decode(bytes: Buffer): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** Mean and variance of the grey level inside [x0, x1) x [y0, y1). */
function stats(img: { data: Uint8Array; width: number }, x0: number, y0: number, x1: number, y1: number) {
  let sum = 0;
  let sq = 0;
  let n = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const i = (y * img.width + x) * 3;
      const v = ((img.data[i] as number) + (img.data[i + 1] as number) + (img.data[i + 2] as number)) / 3;
      sum += v;
      sq += v * v;
      n++;
    }
  }
  const mean = sum / n;
  return { mean, variance: sq / n - mean * mean };
}

const plate = { x1: 160, y1: 120, x2: 260, y2: 200, score: 0.9, classId: 3, label: 'plate' };
const car = { x1: 10, y1: 150, x2: 100, y2: 230, score: 0.6, classId: 1, label: 'car' };

describe('redaction and JPEG encoding', () => {
  it('paints black-out rectangles black and blurs boxes of blurred classes in the encoded bytes', async () => {
    const original = noisyFrame();
    const policy = SamplePolicy.parse({
      jpegQuality: 90,
      redaction: { blackout: [{ x: 0, y: 0, w: 0.25, h: 0.25 }], blurClasses: ['plate'] },
    });
    const encoded = await redactAndEncode(
      { rgb: Uint8Array.from(original), width: W, height: H, detections: [plate, car] },
      policy,
    );
    expect(encoded.sha256).toBe(createHash('sha256').update(encoded.bytes).digest('hex'));
    expect(encoded.bytes.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
    const image = await decode(encoded.bytes);
    expect([image.width, image.height]).toEqual([W, H]);
    const before = { data: original, width: W };

    // Black-out: 80x60 from the top-left, read away from the edge where JPEG blocks ring.
    expect(stats(image, 4, 4, 76, 56).mean).toBeLessThan(4);
    // Blurred: the noise inside the box is gone; outside it (the car) it stays.
    const blurred = stats(image, 170, 130, 250, 190);
    expect(blurred.variance).toBeLessThan(stats(before, 170, 130, 250, 190).variance / 20);
    expect(stats(image, 20, 160, 90, 220).variance).toBeGreaterThan(stats(before, 20, 160, 90, 220).variance / 3);
  });

  it('downscales to maxWidth and scales the predictions to the stored pixels', async () => {
    const policy = SamplePolicy.parse({ maxWidth: 160 });
    const encoded = await redactAndEncode({ rgb: noisyFrame(), width: W, height: H, detections: [plate] }, policy);
    expect([encoded.width, encoded.height]).toEqual([160, 120]);
    expect((await decode(encoded.bytes)).width).toBe(160);
    expect(encoded.predictions).toEqual([{ box: [80, 60, 130, 100], score: 0.9, classId: 3, label: 'plate' }]);
  });
});
