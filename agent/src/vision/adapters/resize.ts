/*
 * Geometry and pixel work shared by the adapters: where the source frame lands in the model input
 * (letterbox or stretch), how to map a point back, and writing the normalised input tensor with a
 * bilinear resize (half-pixel centres, like OpenCV's INTER_LINEAR) into a caller-owned buffer.
 */

export interface ResizeGeometry {
  readonly srcWidth: number;
  readonly srcHeight: number;
  /** Model input size. */
  readonly dstWidth: number;
  readonly dstHeight: number;
  /** Where the resized frame lies inside the input; the rest is padding. */
  readonly contentX: number;
  readonly contentY: number;
  readonly contentWidth: number;
  readonly contentHeight: number;
  /** Input pixels per source pixel, per axis. */
  readonly scaleX: number;
  readonly scaleY: number;
}

/** Keeps the aspect ratio, centres the frame, pads the rest (YOLO's letterbox). */
export function letterboxGeometry(
  srcWidth: number,
  srcHeight: number,
  dstWidth: number,
  dstHeight: number,
): ResizeGeometry {
  const scale = Math.min(dstWidth / srcWidth, dstHeight / srcHeight);
  const contentWidth = Math.max(1, Math.min(dstWidth, Math.round(srcWidth * scale)));
  const contentHeight = Math.max(1, Math.min(dstHeight, Math.round(srcHeight * scale)));
  return {
    srcWidth,
    srcHeight,
    dstWidth,
    dstHeight,
    contentX: Math.floor((dstWidth - contentWidth) / 2),
    contentY: Math.floor((dstHeight - contentHeight) / 2),
    contentWidth,
    contentHeight,
    scaleX: contentWidth / srcWidth,
    scaleY: contentHeight / srcHeight,
  };
}

/** Fills the whole input, changing the aspect ratio (DB text detection). */
export function stretchGeometry(
  srcWidth: number,
  srcHeight: number,
  dstWidth: number,
  dstHeight: number,
): ResizeGeometry {
  return {
    srcWidth,
    srcHeight,
    dstWidth,
    dstHeight,
    contentX: 0,
    contentY: 0,
    contentWidth: dstWidth,
    contentHeight: dstHeight,
    scaleX: dstWidth / srcWidth,
    scaleY: dstHeight / srcHeight,
  };
}

export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

/** Maps a box in model-input pixels back to source pixels, clamped to the frame. */
export function mapBoxToSource(geometry: ResizeGeometry, box: Box): Box {
  const clampX = (v: number): number => Math.min(geometry.srcWidth, Math.max(0, v));
  const clampY = (v: number): number => Math.min(geometry.srcHeight, Math.max(0, v));
  return {
    x1: clampX((box.x1 - geometry.contentX) / geometry.scaleX),
    y1: clampY((box.y1 - geometry.contentY) / geometry.scaleY),
    x2: clampX((box.x2 - geometry.contentX) / geometry.scaleX),
    y2: clampY((box.y2 - geometry.contentY) / geometry.scaleY),
  };
}

/** How pixel values become tensor values (from the manifest's InputSpec). */
export interface TensorFormat {
  layout: 'nchw' | 'nhwc';
  colorOrder: 'rgb' | 'bgr';
  /** value = (pixel * scale - mean[c]) / std[c], c in tensor channel order. */
  scale: number;
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
  /** Grey level (0..255) of the letterbox padding. */
  padValue: number;
}

/** Source sample positions for one geometry; built once and reused while the geometry stays. */
export interface ResizePlan {
  readonly key: string;
  /** Byte offset (x * 3) of the first source column, the step to the second, and its weight, per content column. */
  readonly x0: Int32Array;
  readonly xStep: Int32Array;
  readonly fx: Float32Array;
  /** Source rows and the weight of the second, per content row. */
  readonly y0: Int32Array;
  readonly y1: Int32Array;
  readonly fy: Float32Array;
}

function geometryKey(g: ResizeGeometry): string {
  return `${g.srcWidth}x${g.srcHeight}>${g.contentWidth}x${g.contentHeight}`;
}

function axisSamples(
  srcSize: number,
  dstSize: number,
  scale: number,
  multiplier: number,
): { i0: Int32Array; i1: Int32Array; f: Float32Array } {
  const i0 = new Int32Array(dstSize);
  const i1 = new Int32Array(dstSize);
  const f = new Float32Array(dstSize);
  for (let d = 0; d < dstSize; d++) {
    let s = (d + 0.5) / scale - 0.5;
    if (s < 0) s = 0;
    let lo = Math.floor(s);
    let frac = s - lo;
    if (lo >= srcSize - 1) {
      lo = srcSize - 1;
      frac = 0;
    }
    i0[d] = lo * multiplier;
    i1[d] = Math.min(lo + 1, srcSize - 1) * multiplier;
    f[d] = frac;
  }
  return { i0, i1, f };
}

export function createResizePlan(geometry: ResizeGeometry): ResizePlan {
  const xs = axisSamples(geometry.srcWidth, geometry.contentWidth, geometry.scaleX, 3);
  const ys = axisSamples(geometry.srcHeight, geometry.contentHeight, geometry.scaleY, 1);
  const xStep = new Int32Array(xs.i0.length);
  for (let i = 0; i < xStep.length; i++) xStep[i] = (xs.i1[i] as number) - (xs.i0[i] as number);
  return { key: geometryKey(geometry), x0: xs.i0, xStep, fx: xs.f, y0: ys.i0, y1: ys.i1, fy: ys.f };
}

/** Keeps the plan of the latest geometry: frames of one stream all share it. */
export function createResizePlanCache(): (geometry: ResizeGeometry) => ResizePlan {
  let cached: ResizePlan | null = null;
  return (geometry) => {
    const key = geometryKey(geometry);
    if (cached?.key !== key) cached = createResizePlan(geometry);
    return cached;
  };
}

export interface RgbImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

function fillRect(
  out: Float32Array,
  geometry: ResizeGeometry,
  format: TensorFormat,
  values: readonly [number, number, number],
  x: number,
  y: number,
  w: number,
  h: number,
): void {
  if (w <= 0 || h <= 0) return;
  const W = geometry.dstWidth;
  const plane = W * geometry.dstHeight;
  if (format.layout === 'nchw') {
    for (let c = 0; c < 3; c++) {
      const v = values[c] as number;
      for (let row = y; row < y + h; row++) {
        const start = c * plane + row * W + x;
        out.fill(v, start, start + w);
      }
    }
    return;
  }
  const [v0, v1, v2] = values;
  for (let row = y; row < y + h; row++) {
    let o = (row * W + x) * 3;
    for (let col = 0; col < w; col++, o += 3) {
      out[o] = v0;
      out[o + 1] = v1;
      out[o + 2] = v2;
    }
  }
}

/**
 * Writes the model input for `image` into `out` (length >= dstWidth * dstHeight * 3): bilinear
 * resize into the content area, normalisation, channel order and layout per `format`, padding
 * around the content. Allocates nothing when `plan` is reused.
 */
export function writeInputTensor(
  image: RgbImage,
  geometry: ResizeGeometry,
  format: TensorFormat,
  out: Float32Array,
  plan: ResizePlan = createResizePlan(geometry),
): void {
  const W = geometry.dstWidth;
  const H = geometry.dstHeight;
  if (out.length < W * H * 3) throw new RangeError(`input buffer holds ${out.length} values, needs ${W * H * 3}`);
  const k0 = format.scale / format.std[0];
  const k1 = format.scale / format.std[1];
  const k2 = format.scale / format.std[2];
  const b0 = -format.mean[0] / format.std[0];
  const b1 = -format.mean[1] / format.std[1];
  const b2 = -format.mean[2] / format.std[2];
  const cx = geometry.contentX;
  const cy = geometry.contentY;
  const cw = geometry.contentWidth;
  const ch = geometry.contentHeight;
  if (cw < W || ch < H) {
    const p = format.padValue;
    const pad: [number, number, number] = [p * k0 + b0, p * k1 + b1, p * k2 + b2];
    fillRect(out, geometry, format, pad, 0, 0, W, cy);
    fillRect(out, geometry, format, pad, 0, cy + ch, W, H - cy - ch);
    fillRect(out, geometry, format, pad, 0, cy, cx, ch);
    fillRect(out, geometry, format, pad, cx + cw, cy, W - cx - cw, ch);
  }
  const src = image.data;
  const stride = image.width * 3;
  const nchw = format.layout === 'nchw';
  const pixelStep = nchw ? 1 : 3;
  const channelStep = nchw ? W * H : 1;
  // Where red, green and blue go (tensor channel order), decided once rather than per pixel.
  const swap = format.colorOrder === 'bgr';
  const offR = (swap ? 2 : 0) * channelStep;
  const offG = channelStep;
  const offB = (swap ? 0 : 2) * channelStep;
  const kR = swap ? k2 : k0;
  const bR = swap ? b2 : b0;
  const kB = swap ? k0 : k2;
  const bB = swap ? b0 : b2;
  if (cw === image.width && ch === image.height) {
    // Same size (the camera already delivers the model's size): normalise and reorder only.
    for (let dy = 0; dy < ch; dy++) {
      let a = dy * stride;
      let o = ((cy + dy) * W + cx) * pixelStep;
      for (let dx = 0; dx < cw; dx++, o += pixelStep, a += 3) {
        out[o + offR] = (src[a] as number) * kR + bR;
        out[o + offG] = (src[a + 1] as number) * k1 + b1;
        out[o + offB] = (src[a + 2] as number) * kB + bB;
      }
    }
    return;
  }
  const { x0, xStep, fx, y0, y1, fy } = plan;
  for (let dy = 0; dy < ch; dy++) {
    const r0 = (y0[dy] as number) * stride;
    const rowStep = (y1[dy] as number) * stride - r0;
    const wy = fy[dy] as number;
    let o = ((cy + dy) * W + cx) * pixelStep;
    for (let dx = 0; dx < cw; dx++, o += pixelStep) {
      const a = r0 + (x0[dx] as number);
      const c = a + rowStep;
      const step = xStep[dx] as number;
      const wx = fx[dx] as number;
      // Per channel: two horizontal lerps, then one vertical.
      let top = src[a] as number;
      let bottom = src[c] as number;
      top += ((src[a + step] as number) - top) * wx;
      bottom += ((src[c + step] as number) - bottom) * wx;
      const red = top + (bottom - top) * wy;
      top = src[a + 1] as number;
      bottom = src[c + 1] as number;
      top += ((src[a + 1 + step] as number) - top) * wx;
      bottom += ((src[c + 1 + step] as number) - bottom) * wx;
      const green = top + (bottom - top) * wy;
      top = src[a + 2] as number;
      bottom = src[c + 2] as number;
      top += ((src[a + 2 + step] as number) - top) * wx;
      bottom += ((src[c + 2 + step] as number) - bottom) * wx;
      const blue = top + (bottom - top) * wy;
      out[o + offR] = red * kR + bR;
      out[o + offG] = green * k1 + b1;
      out[o + offB] = blue * kB + bB;
    }
  }
}
