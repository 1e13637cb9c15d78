import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { SamplePolicyInput } from '@edgeloop/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import type { FrameResult } from '../vision/pipeline.ts';
import { type CaptureFrameInput, createSampleCapture, type SampleCaptureDeps, sampleFrameOf } from './capture.ts';
import { openSpool } from './spool.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'capture-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const W = 64;
const H = 48;
const T0 = Date.UTC(2026, 0, 10, 8, 0, 0);

function frameInput(n: number, over: Partial<CaptureFrameInput> = {}): CaptureFrameInput {
  const data = new Uint8Array(W * H * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + n * 13) % 251;
  return {
    data,
    width: W,
    height: H,
    capturedAt: T0 + n,
    detections: [{ x1: 4, y1: 4, x2: 30, y2: 20, score: 0.52, classId: 0, label: 'text' }],
    model: { id: 'det@1.0.0', sha256: 'a'.repeat(64) },
    camera: null,
    shadow: null,
    ...over,
  };
}

function make(dir: string, clock: { now(): number }, over: Partial<SampleCaptureDeps> = {}) {
  const capture = createSampleCapture({
    dir,
    deviceId: 'cam-1',
    bootId: 'boot-1',
    clock,
    random: () => 0,
    options: { fsync: false },
    ...over,
  });
  cleanups.push(() => capture.stop());
  return capture;
}

const everyFrame: SamplePolicyInput = { strategies: [{ kind: 'random', share: 1 }] };

describe('hard-sample capture', () => {
  it('reports no sample telemetry before a policy is set', () => {
    const capture = make(tempDir(), { now: () => T0 });
    expect(capture.telemetry()).toBeUndefined();
    expect(capture.offer(frameInput(1))).toBe('none');
  });

  it('captures a near-threshold frame into the spool with its predictions as pre-annotations', async () => {
    const dir = tempDir();
    const capture = make(dir, { now: () => T0 });
    capture.applyDesired({ strategies: [{ kind: 'near-threshold', threshold: 0.5, tags: ['unsure'] }] });
    expect(capture.offer(frameInput(1))).toBe('queued');
    expect(capture.offer(frameInput(2, { detections: [] }))).toBe('none');
    await capture.whenIdle();
    const t = capture.telemetry();
    expect(t).toMatchObject({ captured: 1, spooled: 1, policyError: null });
    expect(t?.spooledBytes).toBeGreaterThan(0);
    const spool = openSpool({ dir: path.join(dir, 'spool'), maxBytes: 1 << 20 });
    const stored = await spool.read(spool.oldest()!);
    expect(stored?.metadata).toMatchObject({
      deviceId: 'cam-1',
      strategy: 'near-threshold',
      tags: ['unsure'],
      model: { id: 'det@1.0.0' },
      predictions: [{ box: [4, 4, 30, 20], score: 0.52, classId: 0, label: 'text' }],
      image: { width: W, height: H, bytes: stored?.bytes.length },
    });
    expect(createHash('sha256').update(stored!.bytes).digest('hex')).toBe(stored?.metadata.image.sha256);
  });

  it('counts frames dropped when the encode queue is full and never waits for the encoder', async () => {
    const capture = make(tempDir(), { now: () => T0 }, { options: { fsync: false, queueCapacity: 2 } });
    capture.applyDesired(everyFrame);
    const outcomes = Array.from({ length: 50 }, (_, n) => capture.offer(frameInput(n)));
    // offer() is synchronous: all 50 were judged before the encoder ran once.
    expect(outcomes.filter((o) => o === 'queued')).toHaveLength(2);
    expect(outcomes.filter((o) => o === 'queue-full')).toHaveLength(48);
    await capture.whenIdle();
    expect(capture.telemetry()).toMatchObject({ captured: 2, dropped: { 'queue-full': 48 } });
  });

  it('never exceeds 10 per minute and 2 MB per day over 3 minutes of 100% selection, and keeps the day across a restart', async () => {
    const dir = tempDir();
    const clock = { t: T0, now: () => clock.t };
    const policy: SamplePolicyInput = { ...everyFrame, limits: { perMinute: 10, bytesPerDay: 2_000_000 } };
    const first = make(dir, clock);
    first.applyDesired(policy);
    for (let n = 0; n < 180 * 5; n++) {
      clock.t += 200;
      first.offer(frameInput(n));
      await first.whenIdle();
    }
    const t1 = first.telemetry()!;
    expect(t1.captured).toBe(30);
    expect(t1.dropped.rate).toBe(180 * 5 - 30);
    const bytesUsed = 2_000_000 - (t1.budgetLeft.bytesToday as number);
    expect(bytesUsed).toBeGreaterThan(0);
    expect(bytesUsed).toBe((first.stats().budgetToday as Record<string, { bytes: number }>)['*']?.bytes);
    expect(bytesUsed).toBeLessThan(t1.spooledBytes);
    await first.stop();

    const second = make(dir, clock);
    second.applyDesired(policy);
    expect(second.telemetry()?.budgetLeft.bytesToday).toBe(2_000_000 - bytesUsed);
    expect(second.telemetry()?.spooled).toBe(30);
  });

  it('drops a sample over the byte budget as budget after encoding', async () => {
    const capture = make(tempDir(), { now: () => T0 });
    capture.applyDesired({ ...everyFrame, limits: { bytesPerDay: 100 } });
    capture.offer(frameInput(1));
    await capture.whenIdle();
    expect(capture.telemetry()).toMatchObject({ captured: 0, dropped: { budget: 1 }, budgetLeft: { bytesToday: 100 } });
  });

  it('refuses a malformed policy, keeps capturing under the old one and reports the error once', async () => {
    const refused: string[] = [];
    const capture = make(tempDir(), { now: () => T0 }, { onPolicyRefused: (m) => refused.push(m) });
    capture.applyDesired(everyFrame);
    capture.applyDesired({ strategies: [{ kind: 'random' }], jpegQuality: 500 });
    capture.applyDesired({ strategies: [{ kind: 'random' }], jpegQuality: 500 });
    expect(refused).toHaveLength(1);
    expect(capture.telemetry()?.policyError).toMatch(/jpegQuality/);
    expect(capture.offer(frameInput(1))).toBe('queued');
    await capture.whenIdle();
    // A good policy later clears the error.
    capture.applyDesired(everyFrame);
    expect(capture.telemetry()?.policyError).toBeNull();
  });

  it('captures exactly the next N frames on a capture command, with no on-demand strategy in the policy', async () => {
    const capture = make(tempDir(), { now: () => T0 });
    capture.applyDesired({ strategies: [{ kind: 'class-rare', classes: ['fox'] }] });
    expect(capture.capture(3)).toBe(3);
    const outcomes = Array.from({ length: 5 }, (_, n) => capture.offer(frameInput(n)));
    expect(outcomes).toEqual(['queued', 'queued', 'queued', 'none', 'none']);
    await capture.whenIdle();
    expect(capture.telemetry()?.captured).toBe(3);
  });

  it('selects camera events through the pipeline sink', async () => {
    const capture = make(tempDir(), { now: () => T0 });
    capture.applyDesired({ strategies: [{ kind: 'camera-event', events: ['blurred'] }] });
    const input = frameInput(1);
    const result = {
      frame: { data: input.data, width: W, height: H, index: 1, capturedAt: T0, origin: 'test' },
      detections: [],
      timings: { queueMs: 0, preprocessMs: 0, inferenceMs: 0, postprocessMs: 0, totalMs: 0 },
      model: {
        adapter: { threshold: 0.5 },
        ref: { id: 'det@1.0.0', name: 'det', version: '1.0.0', sha256: 'b'.repeat(64) },
      },
      cameraHealth: { black: false, frozen: false, blurred: true, sceneChange: false, brightness: 100, sharpness: 1 },
    } as unknown as FrameResult;
    await capture.sink.onResult(result);
    await capture.sink.onResult({ ...result, cameraHealth: null });
    await capture.whenIdle();
    expect(capture.telemetry()?.captured).toBe(1);
  });

  it('keeps identical frames (a frozen camera) as one sample, charged to the budget once', async () => {
    const capture = make(tempDir(), { now: () => T0 });
    capture.applyDesired({ ...everyFrame, limits: { bytesPerDay: 1_000_000 } });
    for (let i = 0; i < 3; i++) {
      capture.offer(frameInput(7));
      await capture.whenIdle();
    }
    const t = capture.telemetry()!;
    expect(t).toMatchObject({ captured: 1, spooled: 1 });
    expect(capture.stats().duplicates).toBe(2);
    expect(1_000_000 - (t.budgetLeft.bytesToday as number)).toBeLessThan(t.spooledBytes);
  });
});

describe('sampleFrameOf', () => {
  const frame = (width: number, height: number, extra: object = {}) => ({
    data: new Uint8Array(width * height * 3),
    width,
    height,
    index: 0,
    capturedAt: 0,
    origin: 'test',
    ...extra,
  });

  it('cuts samples from the full-resolution copy of a frame scaled for the model, with the box scale factors', () => {
    const full = frame(768, 576);
    const picked = sampleFrameOf(frame(320, 240, { scaledForModel: true, full }));
    expect(picked?.frame).toBe(full);
    expect(picked?.sx).toBeCloseTo(2.4, 10);
    expect(picked?.sy).toBeCloseTo(2.4, 10);
  });

  it('skips a scaled frame without a full copy and takes an unscaled frame as it is', () => {
    expect(sampleFrameOf(frame(320, 240, { scaledForModel: true }))).toBeNull();
    const plain = frame(640, 480);
    expect(sampleFrameOf(plain)).toEqual({ frame: plain, sx: 1, sy: 1 });
  });
});
