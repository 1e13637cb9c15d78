import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import { createSeededRandom } from '../seeded-random.ts';
import type { FrameHandler, FrameSource, SourceStats } from './frame-source.ts';
import { sleepUnlessAborted } from './frame-source.ts';
import { VisionError } from './vision-error.ts';

/*
 * Generated frames: deterministic, no I/O. A few distinct frames are made once and cycled, so the
 * source costs almost nothing per frame (the benchmark uses it to measure the loop, not a decoder).
 * `frames` replaces the generated ones with frames the caller decoded earlier (all of one size).
 */

export type SyntheticPattern = 'moving-box' | 'black' | 'gray' | 'noise';

export interface SyntheticSourceOptions {
  width?: number | undefined;
  height?: number | undefined;
  /** Frames per second; null or absent: as fast as the consumer takes them. */
  fps?: number | null | undefined;
  /** Stop after this many frames; null or absent: never. */
  frameCount?: number | null | undefined;
  pattern?: SyntheticPattern | undefined;
  /** How many different frames are generated and cycled (default 8). */
  distinctFrames?: number | undefined;
  /** Frames to cycle instead of generated ones: RGB24, each width * height * 3 bytes. */
  frames?: readonly Uint8Array[] | undefined;
  /** Seed of the noise pattern. */
  seed?: number | undefined;
}

export interface SyntheticSourceDeps {
  clock?: Clock;
}

/** Draws frame `index` of a pattern into `out` (RGB24). Pure apart from writing `out`. */
export function drawSyntheticFrame(
  out: Uint8Array,
  width: number,
  height: number,
  pattern: SyntheticPattern,
  index: number,
  seed = 1,
): void {
  if (pattern === 'black') {
    out.fill(0);
    return;
  }
  if (pattern === 'gray') {
    out.fill(128);
    return;
  }
  if (pattern === 'noise') {
    const random = createSeededRandom(seed + index * 7919);
    for (let i = 0; i < width * height * 3; i++) out[i] = (random() * 256) | 0;
    return;
  }
  // moving-box: a diagonal gradient with a bright box moving across it.
  const boxW = Math.max(4, Math.round(width / 6));
  const boxH = Math.max(4, Math.round(height / 6));
  const span = Math.max(1, width - boxW);
  const bx = (index * 17) % span;
  const by = Math.round(((height - boxH) * (1 + Math.sin(index / 5))) / 2);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      const inBox = x >= bx && x < bx + boxW && y >= by && y < by + boxH;
      if (inBox) {
        out[o] = 240;
        out[o + 1] = 230;
        out[o + 2] = 40;
      } else {
        out[o] = (x * 255) / width;
        out[o + 1] = (y * 255) / height;
        out[o + 2] = ((x + y) * 127) / (width + height);
      }
    }
  }
}

export function createSyntheticSource(
  options: SyntheticSourceOptions = {},
  deps: SyntheticSourceDeps = {},
): FrameSource {
  const clock = deps.clock ?? systemClock;
  const width = options.width ?? 640;
  const height = options.height ?? 480;
  const pattern = options.pattern ?? 'moving-box';
  const frameBytes = width * height * 3;
  if (options.frames) {
    if (options.frames.length === 0) throw new VisionError('source_invalid', 'synthetic source: frames is empty');
    for (const f of options.frames) {
      if (f.length !== frameBytes) {
        throw new VisionError(
          'source_invalid',
          `synthetic source: a frame has ${f.length} bytes, expected ${frameBytes}`,
        );
      }
    }
  }
  let framesDelivered = 0;
  let images: readonly Uint8Array[] | null = options.frames ?? null;

  function generate(): readonly Uint8Array[] {
    const count = Math.max(1, options.distinctFrames ?? 8);
    const out: Uint8Array[] = [];
    for (let i = 0; i < count; i++) {
      const data = new Uint8Array(frameBytes);
      drawSyntheticFrame(data, width, height, pattern, i, options.seed ?? 1);
      out.push(data);
    }
    return out;
  }

  async function run(onFrame: FrameHandler, signal: AbortSignal): Promise<void> {
    if (!images) images = generate();
    const frames = images;
    const fps = options.fps ?? null;
    const period = fps ? 1000 / fps : 0;
    const startedAt = performance.now();
    const limit = options.frameCount ?? Number.POSITIVE_INFINITY;
    const frame = {
      data: frames[0] as Uint8Array,
      width,
      height,
      index: 0,
      capturedAt: 0,
      origin: `synthetic:${pattern}`,
    };
    for (let i = 0; i < limit && !signal.aborted; i++) {
      if (period > 0) {
        const due = startedAt + i * period - performance.now();
        if (due > 0 && !(await sleepUnlessAborted(due, signal))) return;
      }
      frame.data = frames[i % frames.length] as Uint8Array;
      frame.index = framesDelivered;
      frame.capturedAt = clock.now();
      framesDelivered++;
      const pending = onFrame(frame);
      if (pending) await pending;
      else if (period === 0) await yieldToEventLoop();
    }
  }

  return {
    kind: 'synthetic',
    description: `synthetic ${pattern} ${width}x${height}`,
    run,
    stats: (): SourceStats => ({ framesDelivered, restarts: 0, failures: 0, lastError: null }),
  };
}
