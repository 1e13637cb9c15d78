import { unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFleet, type Fleet } from '../../src/fleet.ts';
import { eventually, type RunningControlPlane, runControlPlane } from '../support.ts';

/*
 * Acceptance: control plane + simulator with 200 devices: all online; kill 100 without a clean
 * disconnect, they are offline within 1.5x keepalive; bring them back, online again.
 * The 100 are partitioned (every byte silently dropped, no FIN or RST), the hardest case: only
 * the broker's keepalive timer can notice them.
 */

const KEEPALIVE_S = 5;

describe('a fleet of 200 simulated devices against a real control plane', () => {
  let cp: RunningControlPlane;
  let fleet: Fleet;

  beforeAll(async () => {
    cp = await runControlPlane();
    fleet = createFleet({
      controlPlaneUrl: cp.started.httpUrl,
      token: cp.token,
      devices: 200,
      prefix: 'e2e',
      keepaliveS: KEEPALIVE_S,
      telemetryIntervalS: 2,
      cameraFps: 15,
      outboxMaxBytes: 256 * 1024,
      connectRate: 400,
      reconnect: { initialMs: 200, maxMs: 1000, jitter: 0.5 },
    });
    await fleet.enroll();
    await fleet.start();
  }, 120_000);

  afterAll(async () => {
    await fleet?.stop();
    await cp?.stop();
  }, 60_000);

  const summary = () => unwrap(cp.client.fleet.summary());

  it('comes online, notices 100 silent deaths within 1.5x keepalive, and sees them return', async () => {
    await eventually(async () => (await summary()).online === 200, 60_000, 'all 200 online');
    expect(fleet.stats().connected).toBe(200);

    const victims = fleet.devices.slice(0, 100);
    const cutAt = Date.now();
    for (const device of victims) device.partition();
    const offlineAt = new Map<string, number>();
    await eventually(
      async () => {
        const page = await unwrap(cp.client.devices.list({ status: 'offline', limit: 500 }));
        for (const item of page.items) if (!offlineAt.has(item.id)) offlineAt.set(item.id, Date.now() - cutAt);
        return offlineAt.size >= 100;
      },
      KEEPALIVE_S * 1500 + 5_000,
      '100 devices offline',
      50,
    );
    // When the control plane itself recorded each change (no polling delay in this number).
    const recorded = await Promise.all(
      victims.map(async (device) => {
        const detail = await unwrap(cp.client.devices.get(device.id));
        return (detail.statusChangedAt ?? Number.POSITIVE_INFINITY) - cutAt;
      }),
    );
    const slowest = Math.max(...recorded);
    // aedes closes a silent client 1.5 x keepalive after its last packet, which came before the
    // cut; the margin covers the will's trip through the ingest batch (a few ms).
    expect(slowest).toBeLessThanOrEqual(KEEPALIVE_S * 1500 + 100);
    expect([...offlineAt.keys()].sort()).toEqual(victims.map((d) => d.id).sort());
    const during = await summary();
    expect(during).toMatchObject({ total: 200, online: 100, offline: 100 });

    for (const device of victims) device.heal();
    await eventually(async () => (await summary()).online === 200, 30_000, 'all 200 back online');
    console.info(
      `slowest offline detection: ${slowest} ms (keepalive ${KEEPALIVE_S} s, bound ${KEEPALIVE_S * 1500} ms)`,
    );
  }, 120_000);
});
