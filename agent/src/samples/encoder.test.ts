import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SamplePolicy } from '@edgeloop/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { type CaptureFrameInput, createSampleCapture } from './capture.ts';
import type { EncodedSample } from './encode.ts';
import { createChildEncoder, createInlineEncoder, type SampleEncoder } from './encoder.ts';
import { openSpool } from './spool.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'encoder-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
function child(deps: Parameters<typeof createChildEncoder>[0] = {}): SampleEncoder {
  const encoder = createChildEncoder(deps);
  cleanups.push(() => encoder.stop());
  return encoder;
}

const W = 96;
const H = 64;
const policy = SamplePolicy.parse({ strategies: [{ kind: 'random', share: 1 }], jpegQuality: 80 });
function rgb(n: number): Uint8Array {
  const data = new Uint8Array(W * H * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + n * 13) % 251;
  return data;
}
function frame(n: number): CaptureFrameInput {
  return {
    data: rgb(n),
    width: W,
    height: H,
    capturedAt: Date.UTC(2026, 0, 10) + n,
    detections: [{ x1: 4, y1: 4, x2: 30, y2: 20, score: 0.52, classId: 0, label: 'text' }],
    model: null,
    camera: null,
    shadow: null,
  };
}

/** Nice values of every thread of a process (Linux /proc; field 19 of each task's stat). */
function threadNice(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  });
}

const CHILD_TIMEOUT = 60_000; // a cold tsx start of the child on a loaded 2-core machine

describe('sample encoders', () => {
  it(
    'encodes in the child the same JPEG bytes as in this process',
    async () => {
      const input = { rgb: rgb(1), width: W, height: H, detections: frame(1).detections };
      const inline = await createInlineEncoder().encode({ ...input, rgb: input.rgb.slice() }, policy);
      const remote = await child().encode({ ...input, rgb: input.rgb.slice() }, policy);
      expect(remote.sha256).toBe(inline.sha256);
      expect(Buffer.compare(remote.bytes, inline.bytes)).toBe(0);
      expect(remote.predictions).toEqual(inline.predictions);
      expect([remote.width, remote.height]).toEqual([W, H]);
    },
    CHILD_TIMEOUT,
  );

  it.runIf(process.platform === 'linux')(
    'runs every thread of the child at the nice value asked for',
    async () => {
      const encoder = child({ priority: 15 });
      await encoder.encode({ rgb: rgb(2), width: W, height: H, detections: [] }, policy);
      const pid = encoder.stats().pid as number;
      const nice = threadNice(pid);
      expect(nice.length).toBeGreaterThan(3);
      expect(new Set(nice)).toEqual(new Set([15]));
      expect(threadNice(process.pid)).toContain(0);
    },
    CHILD_TIMEOUT,
  );

  it(
    'loses no spooled sample when the child is killed -9 mid-encode, counts the lost frame and starts a new child',
    async () => {
      const dir = tempDir();
      let now = 0;
      const encoder = child({ clock: { now: () => now } });
      const capture = createSampleCapture({
        dir,
        deviceId: 'cam-1',
        bootId: 'boot-1',
        random: () => 0,
        encoder,
        options: { fsync: false },
      });
      cleanups.push(() => capture.stop());
      capture.applyDesired({ strategies: [{ kind: 'random', share: 1 }] });

      expect(capture.offer(frame(1))).toBe('queued');
      await capture.whenIdle();
      expect(capture.telemetry()?.captured).toBe(1);

      expect(capture.offer(frame(2))).toBe('queued');
      process.kill(encoder.stats().pid as number, 'SIGKILL');
      await capture.whenIdle();
      expect(capture.telemetry()?.dropped).toEqual({ 'encode-failed': 1 });
      // The frame can fail on EPIPE before the child's exit is seen; wait for the exit.
      while (encoder.stats().pid !== null) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(encoder.stats()).toMatchObject({ crashes: 1, spawned: 1 });

      // Within the respawn delay a frame fails at once, counted; after it a new child encodes.
      now = 500;
      capture.offer(frame(3));
      await capture.whenIdle();
      expect(capture.telemetry()?.dropped).toEqual({ 'encode-failed': 2 });
      now = 2000;
      capture.offer(frame(4));
      await capture.whenIdle();
      expect(capture.telemetry()?.captured).toBe(2);
      // Each spooled sample: the budget counters and the sample file, both written by the child.
      expect(encoder.stats()).toMatchObject({ crashes: 1, spawned: 2, writes: 4 });

      // What the spool holds on disk: the two samples, whole.
      const reopened = openSpool({ dir: path.join(dir, 'spool'), maxBytes: 1 << 30 });
      expect(reopened.stats().count).toBe(2);
      expect(reopened.recovery).toMatchObject({ removedBad: 0, removedTemp: 0 });
      for (let e = reopened.oldest(); e; e = reopened.oldest()) {
        const read = await reopened.read(e);
        expect(read?.bytes.length).toBe(read?.metadata.image.bytes);
        reopened.remove(e);
      }
    },
    CHILD_TIMEOUT,
  );

  it(
    'leaves no partial sample when the child is killed -9 during a spool write',
    async () => {
      const dir = tempDir();
      const encoder = child({ respawnDelayMs: 0 });
      const spool = openSpool({ dir, maxBytes: 1 << 30, write: encoder.write });
      await encoder.ready();
      const bytes = new Uint8Array(8 << 20).fill(7);
      const meta = (seq: number, sha: string) => ({
        deviceId: 'cam-1',
        site: null,
        labels: {},
        model: null,
        strategy: 'random' as const,
        reason: 'test',
        tags: [],
        predictions: [],
        frameTs: 0,
        bootId: 'boot-1',
        seq,
        image: { sha256: sha, bytes: bytes.length, width: 1, height: 1, contentType: 'image/jpeg' as const },
      });
      await spool.put(meta(1, 'a'.repeat(64)), bytes);
      const put = spool.put(meta(2, 'b'.repeat(64)), bytes);
      process.kill(encoder.stats().pid as number, 'SIGKILL');
      // The child died with the write in flight: the exit, or EPIPE on the channel, fails it.
      await expect(put).rejects.toThrow();
      expect(spool.stats().count).toBe(1);
      const reopened = openSpool({ dir, maxBytes: 1 << 30 });
      expect(reopened.stats().count).toBe(1);
      expect(reopened.recovery.removedBad).toBe(0);
      const first = reopened.oldest();
      expect(first?.sha256).toBe('a'.repeat(64));
      expect((await reopened.read(first as NonNullable<typeof first>))?.bytes.length).toBe(bytes.length);
    },
    CHILD_TIMEOUT,
  );

  it(
    "starts its own child at start() with options.encoder 'child', encodes through it and ends it at stop()",
    async () => {
      const capture = createSampleCapture({
        dir: tempDir(),
        deviceId: 'cam-1',
        bootId: 'boot-1',
        random: () => 0,
        options: { fsync: false, encoder: 'child', encoderPriority: 12 },
      });
      cleanups.push(() => capture.stop());
      capture.applyDesired({ strategies: [{ kind: 'random', share: 1 }] });
      capture.start();
      capture.offer(frame(1));
      await capture.whenIdle();
      const stats = capture.stats().encoder as { kind: string; pid: number; encoded: number };
      expect(stats).toMatchObject({ kind: 'child', encoded: 1, priority: 12 });
      expect(capture.telemetry()?.captured).toBe(1);
      await capture.stop();
      expect(() => process.kill(stats.pid, 0)).toThrow(/ESRCH/);
    },
    CHILD_TIMEOUT,
  );

  it('fails a request a hung child never answers, and kills that child', async () => {
    // A child that says it is ready and then ignores every request.
    const hung = () =>
      spawn(process.execPath, ['-e', 'process.send({ ready: true }); setInterval(() => {}, 1000);'], {
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
        serialization: 'advanced',
      });
    const encoder = child({ fork: hung, requestTimeoutMs: 300 });
    await expect(encoder.encode({ rgb: rgb(1), width: W, height: H, detections: [] }, policy)).rejects.toThrow(
      /did not answer in 300 ms/,
    );
    while (encoder.stats().pid !== null) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(encoder.stats()).toMatchObject({ failed: 1, crashes: 1, spawned: 1 });
  });

  it('counts frames dropped while the encoder is slow, and the loop never waits for it', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const inline = createInlineEncoder();
    let calls = 0;
    const slow: SampleEncoder = {
      ...inline,
      async encode(input, options): Promise<EncodedSample> {
        calls++;
        await gate;
        return inline.encode(input, options);
      },
    };
    const capture = createSampleCapture({
      dir: tempDir(),
      deviceId: 'cam-1',
      bootId: 'boot-1',
      random: () => 0,
      encoder: slow,
      options: { fsync: false, queueCapacity: 3 },
    });
    cleanups.push(() => capture.stop());
    capture.applyDesired({ strategies: [{ kind: 'random', share: 1 }] });
    const outcomes = Array.from({ length: 10 }, (_, i) => capture.offer(frame(i)));
    expect(outcomes.filter((o) => o === 'queued')).toHaveLength(3);
    expect(capture.telemetry()?.dropped).toEqual({ 'queue-full': 7 });
    expect(calls).toBe(1);
    release();
    await capture.whenIdle();
    expect(capture.telemetry()).toMatchObject({ captured: 3, spooled: 3, dropped: { 'queue-full': 7 } });
  });
});
