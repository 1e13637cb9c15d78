import { spawnSync } from 'node:child_process';
import { createApiClient, messageId, unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newBootId, SYSTEM, startTestControlPlane, type TestControlPlane } from './harness.ts';

/*
 * The real /metrics output, linted by Prometheus's own `promtool check metrics` (names, units,
 * types, HELP text). CI installs Debian's `prometheus` package for it; on a workstation without
 * it the test is skipped with the reason in its title, under CI=true a missing promtool fails.
 */

const PROMTOOL = process.env.EDGELOOP_PROMTOOL ?? 'promtool';
const probe = spawnSync(PROMTOOL, ['--version'], { encoding: 'utf8' });
const available = probe.status === 0;
const missingReason = `${PROMTOOL} not found (${probe.error?.message ?? `exit ${probe.status}`}); install Debian "prometheus"`;
// Like the service probes in vitest.global-setup.ts: any CI value makes a missing tool a failure.
const skip = !available && !process.env.CI;

let t: TestControlPlane | undefined;

beforeAll(async () => {
  if (skip) return;
  t = await startTestControlPlane();
  // Some traffic first, so labelled counters and summaries have samples to check.
  const device = await t.device('promtool-cam');
  const bootId = newBootId();
  await device.send('telemetry', { intervalS: 10, system: SYSTEM, bootId, msgId: messageId(bootId, 1), seq: 1 });
  await t.raw('GET', '/api/v1/devices', { token: 'wrong' });
});

afterAll(async () => {
  await t?.stop();
});

describe('GET /metrics', () => {
  it.skipIf(skip)(
    `passes promtool check metrics with no lint findings${skip ? ` (skipped: ${missingReason})` : ''}`,
    async () => {
      expect(available, missingReason).toBe(true);
      // Over the real socket, as Prometheus scrapes it.
      const scraper = createApiClient({ baseUrl: t!.started.httpUrl, token: t!.adminToken });
      const text = await unwrap(scraper.metrics());
      expect(text).toContain('edgeloop_ingest_flush_seconds_count');
      const checked = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(`${checked.stdout}${checked.stderr}`).toBe('');
      expect(checked.status).toBe(0);
    },
  );
});
