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

/**
 * A one-entry memo keyed by frame size: the adapters build a frame's geometry and dims once per
 * stream instead of once per frame.
 */
export function lastSizeMemo<T>(make: (width: number, height: number) => T): (width: number, height: number) => T {
  let lastWidth = -1;
  let lastHeight = -1;
  let value: T | undefined;
  return (width, height) => {
    if (width !== lastWidth || height !== lastHeight || value === undefined) {
      value = make(width, height);
      lastWidth = width;
      lastHeight = height;
    }
    return value;
  };
}

/**
 * What a source that can scale (ffmpeg) should deliver so that preprocess only normalises: the
 * model input size, keeping the aspect ratio inside it for a letterbox (ffmpeg's
 * force_original_aspect_ratio=decrease). Null when the input size depends on the frame.
 */
export interface SourceScale {
  readonly width: number;
  readonly height: number;
  readonly keepAspect: boolean;
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

/**
 * Source sample positions for one geometry: built once per (source size, content size) and reused
 * for every frame of that size, so a frame costs one pass and no allocation.
 */
export interface ResizePlan {
  readonly srcWidth: number;
  readonly srcHeight: number;
  readonly contentWidth: number;
  readonly contentHeight: number;
  /** Byte offsets (x * 3) of the two source columns per content column, and the second one's weight. */
  readonly x0: Int32Array;
  readonly x1: Int32Array;
  readonly fx: Float64Array;
  /** Byte offsets (y * width * 3) of the two source rows per content row, and the second one's weight. */
  readonly y0: Int32Array;
  readonly y1: Int32Array;
  readonly fy: Float64Array;
}

function axisSamples(
  srcSize: number,
  dstSize: number,
  scale: number,
  multiplier: number,
): { i0: Int32Array; i1: Int32Array; f: Float64Array } {
  const i0 = new Int32Array(dstSize);
  const i1 = new Int32Array(dstSize);
  const f = new Float64Array(dstSize);
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
  const ys = axisSamples(geometry.srcHeight, geometry.contentHeight, geometry.scaleY, geometry.srcWidth * 3);
  return {
    srcWidth: geometry.srcWidth,
    srcHeight: geometry.srcHeight,
    contentWidth: geometry.contentWidth,
    contentHeight: geometry.contentHeight,
    x0: xs.i0,
    x1: xs.i1,
    fx: xs.f,
    y0: ys.i0,
    y1: ys.i1,
    fy: ys.f,
  };
}

function planFits(plan: ResizePlan, g: ResizeGeometry): boolean {
  return (
    plan.srcWidth === g.srcWidth &&
    plan.srcHeight === g.srcHeight &&
    plan.contentWidth === g.contentWidth &&
    plan.contentHeight === g.contentHeight
  );
}

/** Keeps the plan of the latest geometry: frames of one stream all share it (compared by number, no key string). */
export function createResizePlanCache(): (geometry: ResizeGeometry) => ResizePlan {
  let cached: ResizePlan | null = null;
  return (geometry) => {
    if (cached === null || !planFits(cached, geometry)) cached = createResizePlan(geometry);
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
 * Per source channel (red, green, blue): the tensor offset it is written to (its tensor channel's
 * plane for NCHW, its slot in the pixel for NHWC) and value = pixel * k + b.
 */
export interface ChannelMap {
  offR: number;
  offG: number;
  offB: number;
  kR: number;
  kG: number;
  kB: number;
  bR: number;
  bG: number;
  bB: number;
  /** Tensor values between two horizontally adjacent pixels (1 for NCHW, 3 for NHWC). */
  pixelStep: number;
}

export function channelMap(geometry: ResizeGeometry, format: TensorFormat): ChannelMap {
  const nchw = format.layout === 'nchw';
  const channelStep = nchw ? geometry.dstWidth * geometry.dstHeight : 1;
  // Tensor channel of red and blue (green stays in the middle).
  const r = format.colorOrder === 'bgr' ? 2 : 0;
  const b = 2 - r;
  const k = (c: number): number => format.scale / (format.std[c] as number);
  const bias = (c: number): number => -(format.mean[c] as number) / (format.std[c] as number);
  return {
    offR: r * channelStep,
    offG: channelStep,
    offB: b * channelStep,
    kR: k(r),
    kG: k(1),
    kB: k(b),
    bR: bias(r),
    bG: bias(1),
    bB: bias(b),
    pixelStep: nchw ? 1 : 3,
  };
}

/** Word reads assume the byte order of every platform Node runs the agent on; checked, not assumed. */
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/**
 * 32-bit views of frame buffers, one per ArrayBuffer (the pipeline's queue slots and the ffmpeg
 * source's frames each keep theirs), so reading a frame by words allocates nothing per frame.
 */
export type WordViews = WeakMap<ArrayBufferLike, Uint32Array>;

function wordsOf(src: Uint8Array, views: WordViews | undefined): Uint32Array {
  const cached = views?.get(src.buffer);
  if (cached) return cached;
  const words = new Uint32Array(src.buffer, 0, src.buffer.byteLength >>> 2);
  views?.set(src.buffer, words);
  return words;
}

/**
 * NCHW, `n` pixels of one contiguous run: source bytes from `a`, tensor offsets from `o` in each
 * plane. Groups of four pixels are read as three 32-bit words instead of twelve bytes; up to
 * three pixels before the first word boundary and the tail go byte by byte. Measured on 320x320:
 * 0.25 against 0.40 ms for byte reads unrolled by four in a hot loop; in the loop's own
 * conditions, each frame right after a session.run, 0.42 against 0.49 ms (the rest is cache
 * misses on the 1.2 MB tensor). A 256-entry table per channel measured no better. Byte reads
 * unrolled by four were themselves about a quarter faster than a loop with a variable pixel step.
 * The same double-precision multiply-add per value as every other path, so values are identical.
 */
function normaliseRunNchw(
  src: Uint8Array,
  a: number,
  out: Float32Array,
  o: number,
  n: number,
  m: ChannelMap,
  views: WordViews | undefined,
): void {
  const { offR, offG, offB, kR, kG, kB, bR, bG, bB } = m;
  const end = o + n;
  if (LITTLE_ENDIAN && n >= 8) {
    // A pixel is 3 bytes, so one of the first four starts on a word boundary.
    for (; ((src.byteOffset + a) & 3) !== 0; o++, a += 3) {
      out[offR + o] = (src[a] as number) * kR + bR;
      out[offG + o] = (src[a + 1] as number) * kG + bG;
      out[offB + o] = (src[a + 2] as number) * kB + bB;
    }
    const words = wordsOf(src, views);
    let w = (src.byteOffset + a) >>> 2;
    for (; o + 3 < end; o += 4, a += 12, w += 3) {
      // Little-endian: the lowest byte of each word comes first in the frame.
      const w0 = words[w] as number;
      const w1 = words[w + 1] as number;
      const w2 = words[w + 2] as number;
      out[offR + o] = (w0 & 255) * kR + bR;
      out[offG + o] = ((w0 >>> 8) & 255) * kG + bG;
      out[offB + o] = ((w0 >>> 16) & 255) * kB + bB;
      out[offR + o + 1] = (w0 >>> 24) * kR + bR;
      out[offG + o + 1] = (w1 & 255) * kG + bG;
      out[offB + o + 1] = ((w1 >>> 8) & 255) * kB + bB;
      out[offR + o + 2] = ((w1 >>> 16) & 255) * kR + bR;
      out[offG + o + 2] = (w1 >>> 24) * kG + bG;
      out[offB + o + 2] = (w2 & 255) * kB + bB;
      out[offR + o + 3] = ((w2 >>> 8) & 255) * kR + bR;
      out[offG + o + 3] = ((w2 >>> 16) & 255) * kG + bG;
      out[offB + o + 3] = (w2 >>> 24) * kB + bB;
    }
  }
  for (; o < end; o++, a += 3) {
    out[offR + o] = (src[a] as number) * kR + bR;
    out[offG + o] = (src[a + 1] as number) * kG + bG;
    out[offB + o] = (src[a + 2] as number) * kB + bB;
  }
}

/** A frame of the content size: normalise and reorder only (the camera or ffmpeg already scaled). */
function copyNormalised(
  src: Uint8Array,
  width: number,
  height: number,
  geometry: ResizeGeometry,
  m: ChannelMap,
  out: Float32Array,
  views: WordViews | undefined,
): void {
  const W = geometry.dstWidth;
  const cx = geometry.contentX;
  const cy = geometry.contentY;
  if (m.pixelStep === 1) {
    // NCHW: a frame as wide as the input is one run (the ffmpeg-scaled frame of a stretch model).
    if (width === W) normaliseRunNchw(src, 0, out, cy * W, width * height, m, views);
    else {
      for (let dy = 0; dy < height; dy++) {
        normaliseRunNchw(src, dy * width * 3, out, (cy + dy) * W + cx, width, m, views);
      }
    }
    return;
  }
  const { offR, offG, offB, kR, kG, kB, bR, bG, bB, pixelStep } = m;
  for (let dy = 0; dy < height; dy++) {
    let a = dy * width * 3;
    let o = ((cy + dy) * W + cx) * pixelStep;
    const end = o + width * pixelStep;
    for (; o < end; o += pixelStep, a += 3) {
      out[offR + o] = (src[a] as number) * kR + bR;
      out[offG + o] = (src[a + 1] as number) * kG + bG;
      out[offB + o] = (src[a + 2] as number) * kB + bB;
    }
  }
}

/** Bilinear resize into the content area, normalised, in one pass over the plan's tables. */
function resampleNormalised(
  src: Uint8Array,
  geometry: ResizeGeometry,
  plan: ResizePlan,
  m: ChannelMap,
  out: Float32Array,
): void {
  const { offR, offG, offB, kR, kG, kB, bR, bG, bB, pixelStep } = m;
  const { x0, x1, fx, y0, y1, fy } = plan;
  const W = geometry.dstWidth;
  const cx = geometry.contentX;
  const cy = geometry.contentY;
  const cw = geometry.contentWidth;
  const ch = geometry.contentHeight;
  for (let dy = 0; dy < ch; dy++) {
    const r0 = y0[dy] as number;
    const r1 = y1[dy] as number;
    const wy = fy[dy] as number;
    let o = ((cy + dy) * W + cx) * pixelStep;
    for (let dx = 0; dx < cw; dx++, o += pixelStep) {
      const c0 = x0[dx] as number;
      const c1 = x1[dx] as number;
      const wx = fx[dx] as number;
      const a0 = r0 + c0;
      const a1 = r0 + c1;
      const b0 = r1 + c0;
      const b1 = r1 + c1;
      // Per channel: two horizontal lerps, then one vertical, then the normalisation.
      let top = src[a0] as number;
      let bottom = src[b0] as number;
      top += ((src[a1] as number) - top) * wx;
      bottom += ((src[b1] as number) - bottom) * wx;
      out[offR + o] = (top + (bottom - top) * wy) * kR + bR;
      top = src[a0 + 1] as number;
      bottom = src[b0 + 1] as number;
      top += ((src[a1 + 1] as number) - top) * wx;
      bottom += ((src[b1 + 1] as number) - bottom) * wx;
      out[offG + o] = (top + (bottom - top) * wy) * kG + bG;
      top = src[a0 + 2] as number;
      bottom = src[b0 + 2] as number;
      top += ((src[a1 + 2] as number) - top) * wx;
      bottom += ((src[b1 + 2] as number) - bottom) * wx;
      out[offB + o] = (top + (bottom - top) * wy) * kB + bB;
    }
  }
}

export interface WriteOptions {
  /**
   * Take the general bilinear path even for a frame of the content size (its samples then fall on
   * pixel centres, weight 0): the reference the same-size fast path is tested against.
   */
  resampleAlways?: boolean;
  /** Kept word views of frame buffers (createInputWriter keeps one); absent: a view per call. */
  wordViews?: WordViews;
}

/**
 * Writes the model input for `image` into `out` (length >= dstWidth * dstHeight * 3): bilinear
 * resize into the content area, normalisation, channel order and layout per `format` (NCHW
 * planes written directly), padding around the content. One pass over the pixels; allocates
 * nothing when `plan` is reused (the adapters keep one per stream), `channels` is given and the
 * frame buffer's word view is kept in `options.wordViews` (createInputWriter does all three).
 */
export function writeInputTensor(
  image: RgbImage,
  geometry: ResizeGeometry,
  format: TensorFormat,
  out: Float32Array,
  plan?: ResizePlan,
  channels: ChannelMap = channelMap(geometry, format),
  options: WriteOptions = {},
): void {
  const W = geometry.dstWidth;
  const H = geometry.dstHeight;
  if (out.length < W * H * 3) throw new RangeError(`input buffer holds ${out.length} values, needs ${W * H * 3}`);
  if (image.data.length < image.width * image.height * 3) {
    throw new RangeError(
      `frame holds ${image.data.length} bytes, ${image.width}x${image.height} RGB needs ${image.width * image.height * 3}`,
    );
  }
  const cx = geometry.contentX;
  const cy = geometry.contentY;
  const cw = geometry.contentWidth;
  const ch = geometry.contentHeight;
  if (cw < W || ch < H) {
    const p = format.padValue;
    const padOf = (c: number): number => (p * format.scale - (format.mean[c] as number)) / (format.std[c] as number);
    const pad: [number, number, number] = [padOf(0), padOf(1), padOf(2)];
    fillRect(out, geometry, format, pad, 0, 0, W, cy);
    fillRect(out, geometry, format, pad, 0, cy + ch, W, H - cy - ch);
    fillRect(out, geometry, format, pad, 0, cy, cx, ch);
    fillRect(out, geometry, format, pad, cx + cw, cy, W - cx - cw, ch);
  }
  if (cw === image.width && ch === image.height && !options.resampleAlways) {
    copyNormalised(image.data, cw, ch, geometry, channels, out, options.wordViews);
    return;
  }
  resampleNormalised(image.data, geometry, plan ?? createResizePlan(geometry), channels, out);
}

/**
 * The adapters' preprocess: `write(image, geometry, out)` with the plan and channel map of the
 * latest geometry kept, so frames of one stream allocate nothing.
 */
export function createInputWriter(
  format: TensorFormat,
): (image: RgbImage, geometry: ResizeGeometry, out: Float32Array) => void {
  let plan: ResizePlan | null = null;
  let channels: ChannelMap | null = null;
  let channelsFor: ResizeGeometry | null = null;
  const options: WriteOptions = { wordViews: new WeakMap() };
  return (image, geometry, out) => {
    if (plan === null || !planFits(plan, geometry)) plan = createResizePlan(geometry);
    if (
      channels === null ||
      channelsFor === null ||
      channelsFor.dstWidth !== geometry.dstWidth ||
      channelsFor.dstHeight !== geometry.dstHeight
    ) {
      channels = channelMap(geometry, format);
      channelsFor = geometry;
    }
    writeInputTensor(image, geometry, format, out, plan, channels, options);
  };
}
