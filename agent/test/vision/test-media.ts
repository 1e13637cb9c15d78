import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { resolveFfmpegPath } from '../../src/vision/ffmpeg-process.ts';
import type { Frame, FrameSource } from '../../src/vision/frame-source.ts';

/* Media for the vision integration tests: test-media/ in the repository and clips generated with ffmpeg. */

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** In the repository (see test-media/README.md for each file's source, licence and known facts). */
export const FIXTURES = path.join(REPO_ROOT, 'test-media');
/** Frames in test-media/video/vtest.avi (the first 200 of OpenCV's 795). */
export const VTEST_FRAMES = 200;
export const VTEST = path.join(FIXTURES, 'video/vtest.avi');
export const SCENETEXT01 = path.join(FIXTURES, 'images/scenetext01.jpg');
export const FFMPEG = resolveFfmpegPath();

const run = promisify(execFile);

export function makeTempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), `edgeloop-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs the ffmpeg binary; returns its stderr. */
export async function ffmpeg(args: readonly string[]): Promise<string> {
  const { stderr } = await run(FFMPEG, ['-hide_banner', '-y', ...args], { maxBuffer: 16 * 1024 * 1024 });
  return stderr;
}

/** A clip from a lavfi graph, encoded with libx264 (the static ffmpeg has it). */
export async function lavfiClip(file: string, graph: string, seconds: number, filters?: string): Promise<string> {
  await ffmpeg([
    '-f',
    'lavfi',
    '-i',
    graph,
    '-t',
    String(seconds),
    ...(filters ? ['-vf', filters] : []),
    '-c:v',
    'libx264',
    '-pix_fmt',
    'yuv420p',
    file,
  ]);
  return file;
}

export interface CollectedFrame {
  data: Uint8Array;
  width: number;
  height: number;
  index: number;
}

/** Runs a source to its end and keeps copies of its frames (only for small counts). */
export async function collectFrames(source: FrameSource, limit = Number.POSITIVE_INFINITY): Promise<CollectedFrame[]> {
  const frames: CollectedFrame[] = [];
  const controller = new AbortController();
  await source.run((frame: Frame) => {
    frames.push({ data: frame.data.slice(), width: frame.width, height: frame.height, index: frame.index });
    if (frames.length >= limit) controller.abort();
  }, controller.signal);
  return frames;
}

export interface XyBox {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

export function iou(a: XyBox, b: XyBox): number {
  const iw = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  const ih = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  return inter / ((a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter);
}

/** For each expected box, the best IoU among `found`, matching one to one (greedy by IoU). */
export function matchBoxes(expected: readonly XyBox[], found: readonly XyBox[]): number[] {
  const used = new Set<number>();
  return expected.map((e) => {
    let best = 0;
    let bestIndex = -1;
    found.forEach((f, i) => {
      if (used.has(i)) return;
      const v = iou(e, f);
      if (v > best) {
        best = v;
        bestIndex = i;
      }
    });
    if (bestIndex >= 0) used.add(bestIndex);
    return best;
  });
}
