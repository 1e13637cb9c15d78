import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { DiskState } from './disk-monitor.ts';
import { createMetricsRegistry } from './metrics.ts';
import { assessReadiness, createReadiness, type ReadinessReadings } from './readiness.ts';
import type { Timers } from './time.ts';

const MIB = 1024 * 1024;

const fineDisk: DiskState = {
  low: false,
  reading: { freeBytes: 500 * MIB, totalBytes: 1024 * MIB, freeInodes: 10 },
  reason: null,
  statfsError: null,
  fullErrorAt: null,
  minFreeBytes: 64 * MIB,
};
const lowDisk: DiskState = {
  ...fineDisk,
  low: true,
  reading: { freeBytes: 0, totalBytes: 1024 * MIB, freeInodes: 10 },
  reason: '0 B free, at or below the watermark of 64 MiB',
};

const ready: ReadinessReadings = {
  now: 100_000,
  database: { ok: true },
  disk: fineDisk,
  mqtt: { listening: true, port: 1883 },
  lastFlushError: null,
  flushErrorWindowMs: 30_000,
};

describe('assessReadiness', () => {
  it('is ok when every check passes, and names every check', () => {
    const report = assessReadiness(ready);
    expect(report.ok).toBe(true);
    expect(report.failing).toEqual([]);
    expect(report.error).toBeUndefined();
    expect(report.checks.map((check) => [check.name, check.ok])).toEqual([
      ['database', true],
      ['disk', true],
      ['mqtt', true],
      ['ingest', true],
    ]);
    expect(report.checks[1]!.detail).toBe('500 MiB free of 1.0 GiB (watermark 64 MiB)');
    expect(report.checks[2]!.detail).toBe('listening on port 1883');
  });

  it('names the disk when it is below the watermark, and says what waits', () => {
    const report = assessReadiness({ ...ready, disk: lowDisk });
    expect(report.ok).toBe(false);
    expect(report.failing).toEqual(['disk']);
    expect(report.checks[1]!.detail).toMatch(/^0 B free, at or below the watermark of 64 MiB; uploads .* answer 507/);
    expect(report.error).toEqual({
      code: 'unavailable',
      message: expect.stringMatching(/^not ready: disk \(0 B free/),
    });
  });

  it('names the database when a write would be refused', () => {
    const report = assessReadiness({
      ...ready,
      database: { ok: false, error: 'attempt to write a readonly database' },
    });
    expect(report.failing).toEqual(['database']);
    expect(report.checks[0]!.detail).toBe('not writable: attempt to write a readonly database');
  });

  it('names mqtt when the listener is not listening', () => {
    expect(assessReadiness({ ...ready, mqtt: { listening: false, port: null } }).failing).toEqual(['mqtt']);
  });

  it('names ingest within the window after a failed commit, and not after it', () => {
    const failed = { ...ready, lastFlushError: { at: 90_000, message: 'disk I/O error' } };
    const report = assessReadiness(failed);
    expect(report.failing).toEqual(['ingest']);
    expect(report.checks[3]!.detail).toBe('a batch failed to commit 10 s ago: disk I/O error');
    expect(assessReadiness({ ...failed, now: 120_000 }).ok).toBe(true);
  });

  it('names every failing check at once', () => {
    const report = assessReadiness({
      ...ready,
      disk: lowDisk,
      database: { ok: false, error: 'database or disk is full' },
      lastFlushError: { at: 99_000, message: 'database or disk is full' },
    });
    expect(report.failing).toEqual(['database', 'disk', 'ingest']);
    expect(report.error?.message).toMatch(/^not ready: database \(.*\); disk \(.*\); ingest \(.*\)$/);
  });
});

describe('createReadiness', () => {
  function setup() {
    let now = 100_000;
    let databaseError: Error | null = null;
    let disk = fineDisk;
    let probes = 0;
    const intervals: (() => void)[] = [];
    const timers: Timers = {
      setInterval(callback) {
        intervals.push(callback);
        return intervals.length;
      },
      clearInterval() {
        intervals.length = 0;
      },
    };
    const metrics = createMetricsRegistry();
    const readiness = createReadiness({
      probeDatabase: async () => {
        probes++;
        if (databaseError) throw databaseError;
      },
      disk: { poll: () => disk },
      mqtt: () => ({ listening: true, port: 1883 }),
      clock: { now: () => now },
      timers,
      metrics,
      logger: pino({ level: 'silent' }),
      intervalMs: 2_000,
      flushErrorWindowMs: 30_000,
    });
    return {
      readiness,
      metrics,
      intervals,
      probes: () => probes,
      failDatabase(error: Error | null) {
        databaseError = error;
      },
      setDisk(next: DiskState) {
        disk = next;
      },
      advance(ms: number) {
        now += ms;
      },
    };
  }

  it('probes at every check and keeps the latest report for the gauges', async () => {
    const t = setup();
    expect(t.readiness.current()).toBeNull();
    expect(t.metrics.render()).toContain('edgeloop_ready NaN');
    expect((await t.readiness.check()).ok).toBe(true);
    expect(t.metrics.render()).toContain('edgeloop_ready 1');
    t.setDisk(lowDisk);
    t.failDatabase(new Error('attempt to write a readonly database'));
    const report = await t.readiness.check();
    expect(report.failing).toEqual(['database', 'disk']);
    const text = t.metrics.render();
    expect(text).toContain('edgeloop_ready 0');
    expect(text).toContain('edgeloop_ready_check{check="database"} 0');
    expect(text).toContain('edgeloop_ready_check{check="disk"} 0');
    expect(text).toContain('edgeloop_ready_check{check="mqtt"} 1');
    expect(text).toContain('edgeloop_ready_check{check="ingest"} 1');
  });

  it('shares one probe between concurrent checks', async () => {
    const t = setup();
    const [a, b] = await Promise.all([t.readiness.check(), t.readiness.check()]);
    expect(a).toBe(b);
    expect(t.probes()).toBe(1);
  });

  it('fails ingest for the window after a noted flush error', async () => {
    const t = setup();
    t.readiness.noteFlushError(new Error('database or disk is full'));
    expect((await t.readiness.check()).failing).toEqual(['ingest']);
    t.advance(31_000);
    expect((await t.readiness.check()).ok).toBe(true);
  });

  it('refreshes on its interval once started, and stops', async () => {
    const t = setup();
    t.readiness.start();
    expect(t.intervals).toHaveLength(1);
    t.intervals[0]!();
    await new Promise((resolve) => setImmediate(resolve));
    expect(t.probes()).toBe(1);
    expect(t.readiness.current()?.ok).toBe(true);
    t.readiness.stop();
    expect(t.intervals).toHaveLength(0);
  });
});
