import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSampleCapture, type SampleCapture } from '@edgeloop/agent';
import { unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, type RunningControlPlane, runControlPlane } from '../support.ts';

/*
 * The device budget, counted on the control plane's side: the agent's capture code (selection,
 * persisted counters, sharp encoding, spool, resumable upload) selects 100% of a 5 fps camera for
 * 3 minutes under 10 samples a minute and 2 MB a day, and is restarted half-way on the same data
 * dir. The clock is the test's (the 3 minutes pass in seconds); the upload is real. No rolling
 * minute of frame times holds more than 10 stored samples, the stored bytes stay within 2 MB, and
 * the restart did not hand out a fresh day.
 */

const DEVICE = 'cam-budget-1';
const W = 400;
const H = 300;
const T0 = Date.UTC(2026, 5, 1, 10, 0, 0);

let cp: RunningControlPlane;
let dataDir: string;
let password: string;

beforeAll(async () => {
  cp = await runControlPlane();
  dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-e2e-budget-'));
  password = (await unwrap(cp.client.devices.enroll({ id: DEVICE, labels: {} }))).credentials.password;
});

afterAll(async () => {
  await cp?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('sample budget seen from the control plane', () => {
  it('stores at most 10 samples per minute and 2 MB per day over 3 minutes of 100% selection, across a restart', async () => {
    const clock = { t: T0, now: () => clock.t };
    const policy = { strategies: [{ kind: 'random', share: 1 }], limits: { perMinute: 10, bytesPerDay: 2_000_000 } };
    const open = (): SampleCapture => {
      const capture = createSampleCapture({
        dir: dataDir,
        deviceId: DEVICE,
        bootId: `boot-${clock.t}`,
        clock,
        upload: { baseUrl: cp.started.httpUrl, credentials: { username: DEVICE, password } },
        options: { fsync: false },
      });
      capture.applyDesired(policy);
      capture.start();
      return capture;
    };
    const noise = randomBytes(W * H * 3);
    const detections = [{ x1: 10, y1: 10, x2: 90, y2: 60, score: 0.5, classId: 0, label: 'text' }];
    let capture = open();
    let leftBeforeRestart: number | null = null;
    for (let frame = 0; frame < 180 * 5; frame++) {
      clock.t += 200;
      if (frame === 90 * 5) {
        await capture.stop();
        leftBeforeRestart = capture.telemetry()?.budgetLeft.bytesToday ?? null;
        capture = open();
        expect(capture.telemetry()?.budgetLeft.bytesToday).toBe(leftBeforeRestart);
      }
      // Frames differ visibly (a band whose shade changes), so each JPEG is a sample of its own.
      noise.fill((frame * 37) % 256, 0, W * 40 * 3);
      capture.offer({
        data: noise,
        width: W,
        height: H,
        capturedAt: clock.t,
        detections,
        model: null,
        camera: null,
        shadow: null,
      });
      await capture.whenIdle();
    }
    await eventually(() => capture.telemetry()?.spooled === 0, 60_000, 'spool drained');
    const telemetry = capture.telemetry();
    await capture.stop();

    const list = await unwrap(cp.client.samples.list({ deviceId: DEVICE, limit: 500 }));
    const times = list.items.map((s) => s.frameTs).sort((a, b) => a - b);
    const bytes = list.items.reduce((sum, s) => sum + s.image.bytes, 0);
    for (let i = 10; i < times.length; i++) {
      expect((times[i] as number) - (times[i - 10] as number)).toBeGreaterThanOrEqual(60_000);
    }
    expect(bytes).toBeLessThanOrEqual(2_000_000);
    // The device's persisted count of bytes is exactly what the control plane stored.
    expect(bytes).toBe(2_000_000 - (telemetry?.budgetLeft.bytesToday as number));
    // The byte budget, not the rate, ended the day: 30 would have fitted the rate.
    expect(list.items.length).toBeLessThan(30);
    expect(telemetry?.dropped.budget ?? 0).toBeGreaterThan(0);
    expect(leftBeforeRestart).not.toBeNull();
    console.log(
      `samples budget e2e: ${list.items.length} stored, ${bytes} B of 2000000, budget left ${telemetry?.budgetLeft.bytesToday} B, dropped ${JSON.stringify(telemetry?.dropped)}`,
    );
  }, 120_000);
});
