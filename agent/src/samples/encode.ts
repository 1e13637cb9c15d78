import { createHash } from 'node:crypto';
import type { RedactionRect, SamplePolicy, SamplePrediction } from '@edgeloop/protocol';
import sharp from 'sharp';
import type { BoxLike } from './select.ts';

/*
 * Redaction and JPEG encoding of one selected frame, with sharp (libvips): runs in the capture
 * worker (in this process or in the low-priority encoder child, encoder.ts), never in the vision
 * loop. The RGB buffer passed in is the worker's own copy and is
 * redacted in place:
 *   blackout rectangles (normalised) are painted black;
 *   boxes whose label is in blurClasses are replaced by a strong Gaussian blur of themselves.
 * Then the frame is downscaled to maxWidth (when wider), encoded at jpegQuality, and hashed.
 * Predictions are scaled to the stored image's pixels.
 */

export type EncodeInput = {
  readonly rgb: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly detections: readonly (BoxLike & { readonly classId: number })[];
};

export type EncodedSample = {
  readonly bytes: Buffer;
  readonly sha256: string;
  readonly width: number;
  readonly height: number;
  readonly predictions: SamplePrediction[];
};

export type EncodeOptions = Pick<SamplePolicy, 'jpegQuality' | 'maxWidth' | 'redaction'>;

/** Pixel rectangle [left, top, width, height] of a normalised rect, clamped to the image (null when empty). */
export function pixelRect(rect: RedactionRect, width: number, height: number): [number, number, number, number] | null {
  const left = Math.max(0, Math.floor(rect.x * width));
  const top = Math.max(0, Math.floor(rect.y * height));
  const right = Math.min(width, Math.ceil((rect.x + rect.w) * width));
  const bottom = Math.min(height, Math.ceil((rect.y + rect.h) * height));
  return right > left && bottom > top ? [left, top, right - left, bottom - top] : null;
}

export function paintBlack(rgb: Uint8Array, width: number, rect: [number, number, number, number]): void {
  const [left, top, w, h] = rect;
  for (let y = top; y < top + h; y++) rgb.fill(0, (y * width + left) * 3, (y * width + left + w) * 3);
}

function boxRect(box: BoxLike, width: number, height: number): [number, number, number, number] | null {
  const left = Math.max(0, Math.floor(box.x1));
  const top = Math.max(0, Math.floor(box.y1));
  const right = Math.min(width, Math.ceil(box.x2));
  const bottom = Math.min(height, Math.ceil(box.y2));
  return right - left >= 2 && bottom - top >= 2 ? [left, top, right - left, bottom - top] : null;
}

async function blurInPlace(rgb: Uint8Array, width: number, height: number, rect: [number, number, number, number]) {
  const [left, top, w, h] = rect;
  // A sigma that scales with the box wipes out text and faces of any size.
  const sigma = Math.max(3, Math.min(w, h) / 4);
  const blurred = await sharp(rgb, { raw: { width, height, channels: 3 } })
    .extract({ left, top, width: w, height: h })
    .blur(sigma)
    .raw()
    .toBuffer();
  for (let y = 0; y < h; y++) rgb.set(blurred.subarray(y * w * 3, (y + 1) * w * 3), ((top + y) * width + left) * 3);
}

export async function redactAndEncode(input: EncodeInput, options: EncodeOptions): Promise<EncodedSample> {
  const { rgb, width, height } = input;
  const redaction = options.redaction;
  if (redaction.blurClasses.length > 0) {
    for (const d of input.detections) {
      if (!redaction.blurClasses.includes(d.label)) continue;
      const rect = boxRect(d, width, height);
      if (rect) await blurInPlace(rgb, width, height, rect);
    }
  }
  for (const r of redaction.blackout) {
    const rect = pixelRect(r, width, height);
    if (rect) paintBlack(rgb, width, rect);
  }
  let outWidth = width;
  let outHeight = height;
  let image = sharp(rgb, { raw: { width, height, channels: 3 } });
  if (options.maxWidth !== undefined && width > options.maxWidth) {
    outWidth = options.maxWidth;
    outHeight = Math.max(1, Math.round((height * options.maxWidth) / width));
    image = image.resize(outWidth, outHeight, { fit: 'fill' });
  }
  const bytes = await image.jpeg({ quality: options.jpegQuality, mozjpeg: false }).toBuffer();
  const sx = outWidth / width;
  const sy = outHeight / height;
  const predictions: SamplePrediction[] = input.detections.slice(0, 1000).map((d) => ({
    box: [
      clamp(d.x1 * sx, outWidth),
      clamp(d.y1 * sy, outHeight),
      clamp(d.x2 * sx, outWidth),
      clamp(d.y2 * sy, outHeight),
    ],
    score: Math.min(1, Math.max(0, d.score)),
    classId: Math.max(0, Math.trunc(d.classId)),
    label: d.label.slice(0, 64),
  }));
  return {
    bytes,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    width: outWidth,
    height: outHeight,
    predictions,
  };
}

function clamp(v: number, max: number): number {
  return Math.round(Math.min(max, Math.max(0, v)) * 100) / 100;
}
