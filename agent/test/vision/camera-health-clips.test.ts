import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CameraHealthSample } from '../../src/vision/camera-health.ts';
import { createCameraHealthMonitor, lumaThumbnail } from '../../src/vision/camera-health.ts';
import { createFfmpegSource } from '../../src/vision/ffmpeg-source.ts';
import { FFMPEG, ffmpeg, lavfiClip, makeTempDir, SCENETEXT01, VTEST, VTEST_FRAMES } from './test-media.ts';

/*
 * The detectors on real decoded video: clips generated with lavfi (10 fps) and OpenCV's vtest.avi.
 * `every` samples one frame in N, as the pipeline samples by time (the default 1000 ms is 10 frames at
 * 10 fps; every 5th frame is checked too).
 */

const temp = makeTempDir('camera-health');
const clips: Record<string, string> = {};

/** Runs the detectors over a clip; one result list per sampling step in `every`. */
async function judgeEvery(file: string, every: readonly number[]): Promise<CameraHealthSample[][]> {
  const monitors = every.map(() => createCameraHealthMonitor());
  const samples: CameraHealthSample[][] = every.map(() => []);
  let n = 0;
  let scratch = new Uint8Array(0);
  await createFfmpegSource({ url: file, ffmpegPath: FFMPEG }).run((frame) => {
    const due = every.map((step) => n % step === 0);
    n++;
    if (!due.includes(true)) return;
    const luma = lumaThumbnail(frame.data, frame.width, frame.height, 320, scratch);
    if (luma.data.buffer !== scratch.buffer) scratch = new Uint8Array(luma.data.length);
    due.forEach((isDue, i) => {
      if (isDue) samples[i]?.push((monitors[i] as ReturnType<typeof createCameraHealthMonitor>).update(luma));
    });
  }, new AbortController().signal);
  return samples;
}

async function judge(file: string): Promise<CameraHealthSample[]> {
  return (await judgeEvery(file, [1]))[0] as CameraHealthSample[];
}

const count = (samples: CameraHealthSample[], flag: 'black' | 'frozen' | 'blurred' | 'sceneChange') =>
  samples.filter((s) => s[flag]).length;

beforeAll(async () => {
  const dir = temp.dir;
  clips.black = await lavfiClip(path.join(dir, 'black.mp4'), 'color=black:size=320x240:rate=10', 3);
  const still = path.join(dir, 'still.png');
  await ffmpeg(['-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=10', '-frames:v', '1', still]);
  clips.frozen = path.join(dir, 'frozen.mp4');
  await ffmpeg([
    '-loop',
    '1',
    '-i',
    still,
    '-t',
    '3',
    '-r',
    '10',
    '-c:v',
    'libx264',
    '-pix_fmt',
    'yuv420p',
    clips.frozen,
  ]);
  // Sharp for 2 s, then out of focus.
  clips.blurred = await lavfiClip(
    path.join(dir, 'blurred.mp4'),
    'testsrc=size=320x240:rate=10',
    4,
    "gblur=sigma=6:enable='gte(t,2)'",
  );
  // Blurred from the first frame.
  clips.soft = await lavfiClip(path.join(dir, 'soft.mp4'), 'testsrc=size=320x240:rate=10', 2, 'boxblur=4:2');
  // vtest for 3 s, then the scenetext photo: the camera was turned.
  clips.turned = path.join(dir, 'turned.mp4');
  await ffmpeg([
    '-i',
    VTEST,
    '-loop',
    '1',
    '-t',
    '2',
    '-i',
    SCENETEXT01,
    '-filter_complex',
    '[0:v]trim=duration=3,scale=320:240,setsar=1,fps=10[a];[1:v]scale=320:240,setsar=1,fps=10[b];[a][b]concat=n=2:v=1[v]',
    '-map',
    '[v]',
    '-c:v',
    'libx264',
    '-pix_fmt',
    'yuv420p',
    clips.turned,
  ]);
});

afterAll(() => temp.remove());

describe('camera-health detectors on video', () => {
  it('fire black on a black clip (and nothing else)', async () => {
    const samples = await judge(clips.black as string);
    expect(samples.length).toBe(30);
    expect(count(samples, 'black')).toBe(samples.length);
    expect(count(samples, 'frozen') + count(samples, 'blurred') + count(samples, 'sceneChange')).toBe(0);
  });

  it('fire frozen on a looped still once enough identical samples arrived', async () => {
    const samples = await judge(clips.frozen as string);
    // x264 settles over the first frames (difference 0.1), then repeats the picture exactly.
    expect(samples.slice(0, 6).some((s) => s.frozen)).toBe(false);
    expect(samples.slice(8).every((s) => s.frozen)).toBe(true);
    expect(count(samples, 'black') + count(samples, 'blurred')).toBe(0);
  });

  it('fire blurred when the picture goes out of focus, and not before', async () => {
    const samples = await judge(clips.blurred as string);
    expect(count(samples.slice(0, 20), 'blurred')).toBe(0);
    expect(samples.slice(25).every((s) => s.blurred)).toBe(true);
    expect(samples.at(-1)?.sharpness).toBeLessThan((samples[0]?.sharpness ?? 0) / 10);
  });

  it('fire blurred on a clip that is soft from its first frame', async () => {
    const samples = await judge(clips.soft as string);
    expect(count(samples, 'blurred')).toBe(samples.length);
  });

  it('fire one scene change when the camera is turned to another scene', async () => {
    const samples = await judge(clips.turned as string);
    expect(count(samples, 'sceneChange')).toBe(1);
    const at = samples.findIndex((s) => s.sceneChange);
    expect(at).toBeGreaterThanOrEqual(29);
    expect(at).toBeLessThanOrEqual(31);
  });

  it('stay quiet on every frame of vtest.avi and on every 5th', async () => {
    const [everyFrame, every5th] = await judgeEvery(VTEST, [1, 5]);
    expect(everyFrame).toHaveLength(VTEST_FRAMES);
    expect(every5th).toHaveLength(Math.ceil(VTEST_FRAMES / 5));
    for (const samples of [everyFrame, every5th] as CameraHealthSample[][]) {
      for (const flag of ['black', 'frozen', 'blurred', 'sceneChange'] as const) expect(count(samples, flag)).toBe(0);
    }
  });
});
