import { unwrap } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOCK_FLOOR_MS, isClockSkewed } from '../src/apply-batch.ts';
import { loadConfig } from '../src/config.ts';
import { SYSTEM, startTestControlPlane, type TestControlPlane } from './harness.ts';

/*
 * Device clocks that cannot be trusted (issue 12 §3): a ts beyond the receive time plus
 * --clock-skew-max-s, or before 2020, is stored with clockSkew and never decides the order of the
 * history, which is the control plane's receive time and the device's seq.
 */

/** The largest ts the envelope accepts (EpochMs max): 8.64e15 ms, +275760-09-13. */
const YEAR_275760 = 8.64e15;
const YEAR_2019 = Date.UTC(2019, 6, 1);

describe('isClockSkewed', () => {
  const now = Date.UTC(2026, 0, 1);
  const day = 86_400_000;

  it('flags a ts beyond the allowed skew after the receive time, and not one within it', () => {
    expect(isClockSkewed(now + day + 1, now, day)).toBe(true);
    expect(isClockSkewed(now + day, now, day)).toBe(false);
    expect(isClockSkewed(YEAR_275760, now, day)).toBe(true);
  });

  it('flags a ts before 2020 however far behind the receive time it is, and not a late one after it', () => {
    expect(isClockSkewed(CLOCK_FLOOR_MS - 1, now, day)).toBe(true);
    expect(isClockSkewed(0, now, day)).toBe(true);
    // A device whose outbox held a message for a month is late, not skewed.
    expect(isClockSkewed(now - 30 * day, now, day)).toBe(false);
    expect(isClockSkewed(CLOCK_FLOOR_MS, now, day)).toBe(false);
  });
});

describe('the clock-skew setting', () => {
  it('defaults to one day and is read from --clock-skew-max-s or EDGELOOP_CLOCK_SKEW_MAX_S', () => {
    expect(loadConfig({}).clockSkewMaxS).toBe(86_400);
    expect(loadConfig({ argv: ['--clock-skew-max-s', '120'] }).clockSkewMaxS).toBe(120);
    expect(loadConfig({ env: { EDGELOOP_CLOCK_SKEW_MAX_S: '300' } }).clockSkewMaxS).toBe(300);
    expect(() => loadConfig({ argv: ['--clock-skew-max-s=0'] })).toThrow(/clock-skew-max-s/);
  });
});

describe('telemetry from a skewed device clock, through the real broker', () => {
  let t: TestControlPlane;

  beforeAll(async () => {
    t = await startTestControlPlane({ clockSkewMaxS: 60 });
  });
  afterAll(async () => {
    await t.stop();
  });

  it('stores ts in the year 275760 and in 2019 with clockSkew, orders the history by receipt, and counts them', async () => {
    const d = await t.device('skewed-cam');
    const telemetry = { intervalS: 10, system: SYSTEM };
    await d.send('telemetry', { ...telemetry, ts: YEAR_275760 });
    await d.send('telemetry', { ...telemetry, ts: YEAR_2019 });
    const ahead = await d.send('telemetry', { ...telemetry, ts: Date.now() + 30_000 }); // within 60 s
    const plain = await d.send('telemetry', { ...telemetry });

    const history = await unwrap(t.client.devices.telemetry('skewed-cam', { limit: 10 }));
    expect(history.items.map((item) => [item.message.seq, item.clockSkew])).toEqual([
      [plain.seq, false],
      [ahead.seq, false],
      [2, true],
      [1, true],
    ]);
    // The device's own ts is kept as data.
    expect(history.items.map((item) => item.message.ts).slice(2)).toEqual([YEAR_2019, YEAR_275760]);

    // Paging by the receipt cursor walks the same order.
    const first = await unwrap(t.client.devices.telemetry('skewed-cam', { limit: 3 }));
    expect(first.nextCursor).toBeTruthy();
    const rest = await unwrap(
      t.client.devices.telemetry('skewed-cam', { limit: 3, cursor: first.nextCursor as string }),
    );
    expect(rest.items.map((item) => item.message.ts)).toEqual([YEAR_275760]);

    const messages = await unwrap(t.client.devices.messages('skewed-cam', { channel: 'telemetry', limit: 10 }));
    expect(messages.items.map((item) => [item.deviceTs, item.clockSkew]).slice(2)).toEqual([
      [YEAR_2019, true],
      [YEAR_275760, true],
    ]);

    const metrics = await (await t.raw('GET', '/metrics')).text();
    expect(metrics).toContain('edgeloop_ingest_clock_skew_total{channel="telemetry"} 2');
  });

  it('does not count a resent skewed message twice', async () => {
    const d = await t.device('skewed-resend');
    const sent = await d.send('events', { type: 'agent.started', severity: 'info', ts: YEAR_2019 });
    await d.send('events', {
      type: 'agent.started',
      severity: 'info',
      ts: YEAR_2019,
      msgId: sent.msgId,
      seq: sent.seq,
    });
    const metrics = await (await t.raw('GET', '/metrics')).text();
    expect(metrics).toContain('edgeloop_ingest_clock_skew_total{channel="events"} 1');
    expect(await t.store.messages.count('skewed-resend')).toBe(1);
  });
});
