import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFfmpegSource } from '../../src/vision/ffmpeg-source.ts';
import { collectFrames, FFMPEG, ffmpeg, lavfiClip, makeTempDir, VTEST, VTEST_FRAMES } from './test-media.ts';

const temp = makeTempDir('ffmpeg-source');
let h264Clip = '';

beforeAll(async () => {
  // libx264 is in the static ffmpeg of @ffmpeg-installer (N-47683, 2018).
  h264Clip = await lavfiClip(path.join(temp.dir, 'testsrc.mp4'), 'testsrc=size=320x240:rate=25', 2);
});

afterAll(() => temp.remove());

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('ffmpeg source', () => {
  it('decodes every one of the 200 frames of the vtest.avi clip at 768x576', async () => {
    const source = createFfmpegSource({ url: VTEST, ffmpegPath: FFMPEG });
    let count = 0;
    let firstSum = 0;
    let lastSum = 0;
    await source.run((frame) => {
      expect(frame.width).toBe(768);
      expect(frame.height).toBe(576);
      expect(frame.index).toBe(count);
      let sum = 0;
      for (let i = 0; i < frame.data.length; i += 997) sum += frame.data[i] as number;
      if (count === 0) firstSum = sum;
      lastSum = sum;
      count++;
    }, new AbortController().signal);
    expect(count).toBe(VTEST_FRAMES);
    expect(source.stats()).toEqual({ framesDelivered: VTEST_FRAMES, restarts: 0, failures: 0, lastError: null });
    expect(firstSum).not.toBe(lastSum);
    expect(source.lastArgs()).not.toContain('-re');
  });

  it('decodes a generated H.264 clip, scaled on request', async () => {
    const probe = await ffmpeg(['-i', h264Clip, '-f', 'null', '-']).catch((error: { stderr: string }) => error.stderr);
    expect(probe).toMatch(/Video: h264/);
    const full = await collectFrames(createFfmpegSource({ url: h264Clip, ffmpegPath: FFMPEG }));
    expect(full).toHaveLength(50);
    expect(full[0]).toMatchObject({ width: 320, height: 240 });
    // testsrc is colourful: the frame is far from uniform.
    const data = full[0]?.data as Uint8Array;
    const values = new Set<number>();
    for (let i = 0; i < data.length; i += 31) values.add(data[i] as number);
    expect(values.size).toBeGreaterThan(20);
    const scaled = await collectFrames(createFfmpegSource({ url: h264Clip, width: 160, ffmpegPath: FFMPEG }), 3);
    expect(scaled[0]).toMatchObject({ width: 160, height: 120 });
    expect(scaled[0]?.data.length).toBe(160 * 120 * 3);
  });

  it('restarts a killed ffmpeg child and keeps delivering frames', async () => {
    const source = createFfmpegSource({
      url: VTEST,
      width: 192,
      height: 144,
      ffmpegPath: FFMPEG,
      restart: { initialDelayMs: 50 },
    });
    const controller = new AbortController();
    let count = 0;
    let killedPid = 0;
    await source.run(async (frame) => {
      count++;
      expect(frame.width).toBe(192);
      if (count === 30) {
        killedPid = source.childPid() as number;
        process.kill(killedPid, 'SIGKILL');
      }
      if (count === 90) controller.abort();
      // A slow consumer, so the kill lands mid-file.
      await new Promise((resolve) => setTimeout(resolve, 1));
    }, controller.signal);
    expect(count).toBe(90);
    expect(killedPid).toBeGreaterThan(0);
    const stats = source.stats();
    expect(stats.restarts).toBe(1);
    expect(stats.lastError).toMatchObject({ code: 'source_failed', message: expect.stringContaining('SIGKILL') });
    // The restarted child continued from about where the first stopped (-ss), not from frame 0.
    expect(source.lastArgs()).toContain('-ss');
  });

  it('gives up at once on a missing file with source_not_found', async () => {
    const source = createFfmpegSource({ url: path.join(temp.dir, 'nope.mp4'), ffmpegPath: FFMPEG });
    await expect(source.run(() => {}, new AbortController().signal)).rejects.toMatchObject({
      code: 'source_not_found',
      message: expect.stringContaining('No such file or directory'),
    });
    expect(source.stats().restarts).toBe(0);
  });

  it('rejects a file that is not a video with source_invalid', async () => {
    const file = path.join(temp.dir, 'notes.mp4');
    writeFileSync(file, 'this is not a video\n'.repeat(100));
    const source = createFfmpegSource({ url: file, ffmpegPath: FFMPEG });
    await expect(source.run(() => {}, new AbortController().signal)).rejects.toMatchObject({ code: 'source_invalid' });
  });

  it('fails at once when the ffmpeg binary cannot be run', async () => {
    const source = createFfmpegSource({ url: VTEST, ffmpegPath: path.join(temp.dir, 'no-ffmpeg') });
    await expect(source.run(() => {}, new AbortController().signal)).rejects.toMatchObject({
      code: 'source_failed',
      message: expect.stringContaining('cannot run ffmpeg'),
    });
  });

  it('paces frames at the native rate when realtime is on', async () => {
    const arrivals: number[] = [];
    await createFfmpegSource({
      url: 'testsrc=size=32x24:rate=10:duration=1',
      format: 'lavfi',
      realtime: true,
      ffmpegPath: FFMPEG,
    }).run(() => {
      arrivals.push(performance.now());
    }, new AbortController().signal);
    expect(arrivals).toHaveLength(10);
    // Ten frames at 10 fps span about 0.9 s; as fast as possible they arrive within a few ms.
    expect((arrivals.at(-1) as number) - (arrivals[0] as number)).toBeGreaterThan(600);
  });

  it('reads lavfi graphs with an explicit input format', async () => {
    const frames = await collectFrames(
      createFfmpegSource({ url: 'testsrc=size=64x48:rate=10:duration=1', format: 'lavfi', ffmpegPath: FFMPEG }),
    );
    expect(frames).toHaveLength(10);
    expect(frames[9]).toMatchObject({ width: 64, height: 48, index: 9 });
  });

  it('loops a file and stops its child when aborted', async () => {
    const source = createFfmpegSource({ url: h264Clip, width: 32, height: 24, loop: true, ffmpegPath: FFMPEG });
    const controller = new AbortController();
    let count = 0;
    let pid = 0;
    await source.run(() => {
      count++;
      pid = source.childPid() ?? pid;
      if (count === 120) controller.abort();
    }, controller.signal);
    expect(count).toBe(120);
    expect(source.stats().restarts).toBe(0);
    expect(source.lastArgs()).toEqual(expect.arrayContaining(['-stream_loop', '-1']));
    expect(source.childPid()).toBeNull();
    expect(isAlive(pid)).toBe(false);
  });

  it('reads an HTTP MJPEG camera stream (multipart/x-mixed-replace)', async () => {
    const jpegs: Buffer[] = [];
    for (let i = 0; i < 3; i++) {
      const file = path.join(temp.dir, `part${i}.jpg`);
      await ffmpeg(['-f', 'lavfi', '-i', `color=c=0x${i}0${i}0${i}0:size=64x48`, '-frames:v', '1', file]);
      jpegs.push(readFileSync(file));
    }
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'multipart/x-mixed-replace; boundary=frame' });
      let i = 0;
      const timer = setInterval(() => {
        const jpeg = jpegs[i % jpegs.length] as Buffer;
        res.write(`--frame\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.length}\r\n\r\n`);
        res.write(jpeg);
        res.write('\r\n');
        i++;
      }, 20);
      res.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      const frames = await collectFrames(
        createFfmpegSource({ url: `http://127.0.0.1:${port}/mjpeg`, ffmpegPath: FFMPEG }),
        6,
      );
      expect(frames).toHaveLength(6);
      expect(frames[0]).toMatchObject({ width: 64, height: 48 });
      // The parts differ in grey level: the frames follow the stream.
      expect(frames[1]?.data[0]).toBeGreaterThan(frames[0]?.data[0] as number);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('restarts a stream that stalls, with backoff, and gives up after maxRestarts', async () => {
    // An HTTP "camera" that accepts the connection and never answers.
    const sockets: net.Socket[] = [];
    const server = net.createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      const source = createFfmpegSource({
        url: `http://127.0.0.1:${port}/video.mjpg`,
        ffmpegPath: FFMPEG,
        stallTimeoutMs: 300,
        restart: { initialDelayMs: 20, maxRestarts: 1 },
      });
      await expect(source.run(() => {}, new AbortController().signal)).rejects.toMatchObject({
        code: 'source_timeout',
        message: expect.stringContaining('gave up after 1 restarts'),
      });
      expect(source.stats()).toMatchObject({ restarts: 1, failures: 2, framesDelivered: 0 });
      expect(sockets.length).toBe(2);
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });

  it('retries a refused stream connection and reports source_failed when it gives up', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    const source = createFfmpegSource({
      url: `http://127.0.0.1:${port}/stream`,
      ffmpegPath: FFMPEG,
      restart: { initialDelayMs: 10, maxRestarts: 2 },
    });
    await expect(source.run(() => {}, new AbortController().signal)).rejects.toMatchObject({
      code: 'source_failed',
      message: expect.stringContaining('Connection refused'),
    });
    expect(source.stats().restarts).toBe(2);
  });
});
