import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PiCameraSourceOptions } from '../../src/vision/pi-camera-source.ts';
import { createPiCameraSource } from '../../src/vision/pi-camera-source.ts';
import { collectFrames, FFMPEG, ffmpeg, makeTempDir } from './test-media.ts';

/*
 * No camera is attached here: stand-in executables play rpicam-still and raspistill. They write a
 * JPEG to stdout, fail like a Pi without a camera, or hang.
 */

const temp = makeTempDir('pi-camera');
const bins = {
  ok: path.join(temp.dir, 'ok'),
  failing: path.join(temp.dir, 'failing'),
  hanging: path.join(temp.dir, 'hanging'),
  garbage: path.join(temp.dir, 'garbage'),
  empty: path.join(temp.dir, 'empty'),
};
const jpeg = path.join(temp.dir, 'frame.jpg');
const argsLog = path.join(temp.dir, 'args.log');
const pidFile = path.join(temp.dir, 'hang.pid');

function standIn(dir: string, name: string, body: string): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

function install(kind: keyof typeof bins, name: string): string {
  const dir = bins[kind];
  switch (kind) {
    case 'ok':
      return standIn(dir, name, `printf '%s\\n' "$*" >> '${argsLog}'\ncat '${jpeg}'`);
    case 'failing':
      return standIn(dir, name, `echo "ERROR: *** no cameras available ***" >&2\nexit 1`);
    case 'hanging':
      return standIn(dir, name, `echo $$ > '${pidFile}'\nexec sleep 30`);
    case 'garbage':
      return standIn(dir, name, 'echo "not a jpeg"');
    case 'empty':
      mkdirSync(dir, { recursive: true });
      return dir;
  }
}

const camera = (options: PiCameraSourceOptions) =>
  createPiCameraSource({ intervalMs: 0, ffmpegPath: FFMPEG, maxConsecutiveFailures: 2, ...options });

const originalPath = process.env.PATH;

/** node-raspistill runs `raspistill` from PATH; point PATH at a stand-in folder for one call. */
async function withPath<T>(dir: string, run: () => Promise<T>): Promise<T> {
  process.env.PATH = `${dir}${path.delimiter}${originalPath}`;
  try {
    return await run();
  } finally {
    process.env.PATH = originalPath;
  }
}

beforeAll(async () => {
  await ffmpeg(['-f', 'lavfi', '-i', 'testsrc=size=320x240', '-frames:v', '1', jpeg]);
  for (const kind of ['ok', 'failing', 'hanging', 'garbage'] as const) {
    install(kind, 'rpicam-still');
    install(kind, 'raspistill');
  }
  install('empty', '');
});

afterAll(() => {
  process.env.PATH = originalPath;
  temp.remove();
});

describe('pi camera source, rpicam backend', () => {
  it('decodes the JPEG rpicam-still writes to stdout into RGB frames', async () => {
    const frames = await collectFrames(
      camera({ command: 'rpicam-still', searchPath: bins.ok, width: 320, height: 240 }),
      3,
    );
    expect(frames).toHaveLength(3);
    expect(frames[0]).toMatchObject({ width: 320, height: 240, index: 0 });
    expect(frames[2]?.index).toBe(2);
    const args = readFileSync(argsLog, 'utf8').trim().split('\n')[0];
    expect(args).toBe('-n -t 1 -e jpg -o - --width 320 --height 240');
  });

  it('fails with camera_unavailable after repeated "no cameras" errors', async () => {
    const source = camera({ command: path.join(bins.failing, 'rpicam-still') });
    await expect(collectFrames(source)).rejects.toMatchObject({
      code: 'camera_unavailable',
      message: expect.stringContaining('no cameras available'),
    });
    expect(source.stats()).toMatchObject({ failures: 2, framesDelivered: 0 });
  });

  it('fails quickly with camera_unavailable when the program is missing', async () => {
    const started = Date.now();
    await expect(collectFrames(camera({ searchPath: bins.empty }))).rejects.toMatchObject({
      code: 'camera_unavailable',
      message: expect.stringContaining('rpicam-still not found'),
    });
    await expect(collectFrames(camera({ command: path.join(bins.empty, 'rpicam-still') }))).rejects.toMatchObject({
      code: 'camera_unavailable',
    });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('kills a hanging rpicam-still when the capture timeout fires', async () => {
    const source = camera({
      command: path.join(bins.hanging, 'rpicam-still'),
      captureTimeoutMs: 300,
      maxConsecutiveFailures: 1,
    });
    await expect(collectFrames(source)).rejects.toMatchObject({ code: 'source_timeout' });
    const pid = Number(readFileSync(pidFile, 'utf8'));
    // The kill is sent when the timeout fires; the child is reaped asynchronously (a zombie still
    // answers signal 0), so poll for it to be gone rather than assume a fixed delay on a busy machine.
    const alive = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (let waited = 0; alive() && waited < 5000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(() => process.kill(pid, 0)).toThrow();
  });

  it('counts an undecodable image and goes on', async () => {
    const source = camera({ command: path.join(bins.garbage, 'rpicam-still'), maxConsecutiveFailures: 3 });
    await expect(collectFrames(source)).rejects.toMatchObject({ code: 'decode_failed' });
    expect(source.stats().failures).toBe(3);
  });
});

describe('pi camera source, raspistill backend (node-raspistill)', () => {
  it('takes photos through node-raspistill', async () => {
    const frames = await withPath(bins.ok, () =>
      collectFrames(camera({ backend: 'raspistill', width: 320, height: 240 }), 2),
    );
    expect(frames).toHaveLength(2);
    expect(frames[1]).toMatchObject({ width: 320, height: 240, index: 1 });
    const calls = readFileSync(argsLog, 'utf8').trim().split('\n');
    expect(calls.at(-1)).toContain('-o -');
  });

  it('times out a hanging raspistill', async () => {
    const source = camera({ backend: 'raspistill', captureTimeoutMs: 300, maxConsecutiveFailures: 1 });
    await expect(withPath(bins.hanging, () => collectFrames(source))).rejects.toMatchObject({ code: 'source_timeout' });
  });

  it('does not hang when raspistill is missing: the timeout ends the capture, and a PATH check fails at once', async () => {
    expect(existsSync(path.join(bins.empty, 'raspistill'))).toBe(false);
    // node-raspistill never settles without its binary; only the timeout ends the capture.
    const blind = camera({ backend: 'raspistill', captureTimeoutMs: 300, maxConsecutiveFailures: 1 });
    await expect(withPath(bins.empty, () => collectFrames(blind))).rejects.toMatchObject({ code: 'source_timeout' });
    const checked = camera({ backend: 'raspistill', searchPath: bins.empty });
    await expect(collectFrames(checked)).rejects.toMatchObject({
      code: 'camera_unavailable',
      message: expect.stringContaining('raspistill not found'),
    });
  });
});
