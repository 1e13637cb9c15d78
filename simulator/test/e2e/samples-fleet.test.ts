import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type SetSamplePolicyInput, take, unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFleet, type Fleet } from '../../src/fleet.ts';
import { eventually, type RunningControlPlane, runControlPlane } from '../support.ts';

/*
 * Simulated devices capture real image bytes under the same policy code as the agent: 20 virtual
 * devices run the agent's capture (selection, budget, spool, resumable upload) on synthetic frames
 * with known boxes. The policy reaches them through PUT /api/v1/sample-policy (fleet-wide, then a
 * site selector), and the samples arrive in GET /api/v1/samples under each device's budget.
 */

const DEVICES = 20;
const PER_MINUTE = 3;

describe('simulated devices capturing hard samples', () => {
  let cp: RunningControlPlane;
  let fleet: Fleet;
  let samplesDir: string;

  beforeAll(async () => {
    cp = await runControlPlane();
    samplesDir = mkdtempSync(join(tmpdir(), 'edgeloop-sim-samples-'));
    fleet = createFleet({
      controlPlaneUrl: cp.started.httpUrl,
      token: cp.token,
      devices: DEVICES,
      prefix: 'smp',
      sites: ['north', 'south'],
      keepaliveS: 30,
      telemetryIntervalS: 2,
      cameraFps: 10,
      outboxMaxBytes: 256 * 1024,
      connectRate: 200,
      samples: { dir: samplesDir, fps: 5, width: 96, height: 64 },
    });
    await fleet.enroll();
    await fleet.start();
  }, 60_000);

  afterAll(async () => {
    await fleet?.stop();
    await cp?.stop();
    if (samplesDir) rmSync(samplesDir, { recursive: true, force: true });
  }, 60_000);

  const put = (body: SetSamplePolicyInput) => unwrap(cp.client.samples.policy.set(body));

  const allSamples = () => take(cp.client.samples.each({ limit: 500 }));

  it('uploads the frames a fleet-wide policy selects, never more per device than its budget', async () => {
    const startedAt = Date.now();
    const set = await put({
      policy: {
        strategies: [
          { kind: 'near-threshold', threshold: 0.6, epsilon: 0.1, tags: ['unsure'] },
          { kind: 'random', share: 1 },
        ],
        limits: { perMinute: PER_MINUTE, bytesPerDay: 5_000_000 },
      },
    });
    expect(set).toMatchObject({ devices: DEVICES, changed: DEVICES });

    const expected = DEVICES * PER_MINUTE;
    await eventually(async () => (await allSamples()).length >= expected, 45_000, `${expected} samples stored`);
    // Frames keep coming at 5 fps: the budget, not the frame rate, is what stops them.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const samples = await allSamples();
    expect(Date.now() - startedAt).toBeLessThan(60_000);
    expect(samples).toHaveLength(expected);

    const perDevice = new Map<string, number>();
    for (const sample of samples) perDevice.set(sample.deviceId, (perDevice.get(sample.deviceId) ?? 0) + 1);
    expect(perDevice.size).toBe(DEVICES);
    for (const count of perDevice.values()) expect(count).toBe(PER_MINUTE);

    const sites = new Map(fleet.devices.map((device) => [device.id, device.site]));
    for (const sample of samples) {
      expect(sample.site).toBe(sites.get(sample.deviceId));
      expect(sample.image).toMatchObject({ width: 96, height: 64 });
      expect(sample.predictions.map((p) => p.label).sort()).toEqual(['car', 'person']);
      expect(['near-threshold', 'random']).toContain(sample.strategy);
    }
    expect(samples.some((sample) => sample.strategy === 'near-threshold')).toBe(true);

    // The bytes served are the bytes the device hashed.
    const first = samples[0]!;
    const image = await unwrap(cp.client.samples.image(first.id));
    const bytes = Buffer.from(await new Response(image.body).arrayBuffer());
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(first.image.sha256);
    expect(bytes.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
  }, 90_000);

  it('reports captured samples and the budget left in device telemetry', async () => {
    const device = fleet.devices[0]!;
    const telemetry = (await eventually(
      () => {
        const t = device.agent?.samples?.telemetry();
        return t && t.uploaded === PER_MINUTE ? t : null;
      },
      10_000,
      'telemetry shows the uploads',
    ))!;
    expect(telemetry.captured).toBe(PER_MINUTE);
    expect(telemetry.dropped.rate ?? 0).toBeGreaterThan(0);
    expect(telemetry.spooled).toBe(0);
  });

  it('turns capture off for one site through a selector policy', async () => {
    const set = await put({ selector: { labels: { site: 'north' } }, policy: { enabled: false } });
    expect(set.devices).toBe(DEVICES / 2);
    const north = fleet.devices.filter((device) => device.site === 'north');
    await eventually(() => north.every((device) => device.agent?.samples?.policy?.enabled === false), 10_000, 'off');
    const south = fleet.devices.filter((device) => device.site === 'south');
    expect(south.every((device) => device.agent?.samples?.policy?.enabled === true)).toBe(true);
  });
});
