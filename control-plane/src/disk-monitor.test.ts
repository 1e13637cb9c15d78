import pino from 'pino';
import { describe, expect, it } from 'vitest';
import {
  createDiskMonitor,
  type DiskState,
  type FsStats,
  formatBytes,
  isStorageFull,
  judgeDisk,
  recoveryBytes,
} from './disk-monitor.ts';
import { createMetricsRegistry } from './metrics.ts';
import type { Timers } from './time.ts';

const MIB = 1024 * 1024;

function stats(freeBytes: number, options: { totalBytes?: number; freeInodes?: number } = {}): FsStats {
  return {
    bsize: 4096,
    blocks: Math.floor((options.totalBytes ?? 1024 * MIB) / 4096),
    bavail: Math.floor(freeBytes / 4096),
    files: 1000,
    ffree: options.freeInodes ?? 500,
  };
}

function manualTimers() {
  const callbacks = new Map<number, () => void>();
  let next = 1;
  const timers: Timers = {
    setInterval(callback) {
      callbacks.set(next, callback);
      return next++;
    },
    clearInterval(handle) {
      callbacks.delete(handle as number);
    },
  };
  return {
    timers,
    tick: () => {
      for (const callback of [...callbacks.values()]) callback();
    },
    count: () => callbacks.size,
  };
}

function setup(minFreeBytes = 64 * MIB) {
  let current: FsStats | Error = stats(500 * MIB);
  let now = 1_000;
  const changes: DiskState[] = [];
  const manual = manualTimers();
  const metrics = createMetricsRegistry();
  const monitor = createDiskMonitor({
    dir: '/data',
    minFreeBytes,
    intervalMs: 1_000,
    timers: manual.timers,
    clock: { now: () => now },
    metrics,
    logger: pino({ level: 'silent' }),
    statfs: (path) => {
      expect(path).toBe('/data');
      if (current instanceof Error) throw current;
      return current;
    },
    onChange: (state) => changes.push(state),
  });
  return {
    monitor,
    metrics,
    changes,
    manual,
    set(next: FsStats | Error) {
      current = next;
    },
    advance(ms: number) {
      now += ms;
    },
  };
}

describe('isStorageFull', () => {
  it('knows ENOSPC, EDQUOT and SQLITE_FULL, also as a cause', () => {
    expect(isStorageFull(Object.assign(new Error('no space'), { code: 'ENOSPC' }))).toBe(true);
    expect(isStorageFull(Object.assign(new Error('quota'), { code: 'EDQUOT' }))).toBe(true);
    expect(isStorageFull(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }))).toBe(true);
    expect(isStorageFull(Object.assign(new Error('could not extend file'), { code: '53100' }))).toBe(true);
    const wrapped = new Error('query failed', { cause: Object.assign(new Error('full'), { code: 'SQLITE_FULL' }) });
    expect(isStorageFull(wrapped)).toBe(true);
  });

  it('refuses other errors and non-errors', () => {
    expect(isStorageFull(Object.assign(new Error('gone'), { code: 'ENOENT' }))).toBe(false);
    expect(isStorageFull(Object.assign(new Error('busy'), { code: 'SQLITE_BUSY' }))).toBe(false);
    expect(isStorageFull(new Error('ENOSPC in the message only'))).toBe(false);
    expect(isStorageFull(null)).toBe(false);
    expect(isStorageFull('ENOSPC')).toBe(false);
  });
});

describe('judgeDisk', () => {
  const base = { wasLow: false, minFreeBytes: 64 * MIB, fullErrorAt: null, errorHoldMs: 1_000, now: 10_000 };
  const reading = (freeBytes: number, freeInodes: number | null = 10) => ({
    freeBytes,
    totalBytes: 1024 * MIB,
    freeInodes,
  });

  it('is low at or below the watermark and fine above it', () => {
    expect(judgeDisk({ ...base, reading: reading(64 * MIB) }).low).toBe(true);
    expect(judgeDisk({ ...base, reading: reading(0) }).reason).toMatch(/0 B free, at or below the watermark of 64 MiB/);
    expect(judgeDisk({ ...base, reading: reading(64 * MIB + 1) })).toEqual({ low: false, reason: null });
  });

  it('recovers only above the watermark plus a margin', () => {
    expect(recoveryBytes(64 * MIB)).toBe(64 * MIB + Math.floor((64 * MIB) / 10));
    expect(recoveryBytes(0)).toBe(MIB);
    expect(judgeDisk({ ...base, wasLow: true, reading: reading(65 * MIB) }).low).toBe(true);
    expect(judgeDisk({ ...base, wasLow: true, reading: reading(71 * MIB) }).low).toBe(false);
  });

  it('is low with no free inode, whatever the bytes', () => {
    expect(judgeDisk({ ...base, reading: reading(500 * MIB, 0) })).toEqual({
      low: true,
      reason: 'no free inodes left',
    });
    expect(judgeDisk({ ...base, reading: reading(500 * MIB, null) }).low).toBe(false);
  });

  it('stays low for one hold after a full-disk write error, then statfs decides', () => {
    const afterError = { ...base, reading: reading(500 * MIB), fullErrorAt: 9_500 };
    expect(judgeDisk(afterError)).toMatchObject({ low: true, reason: expect.stringMatching(/a write failed/) });
    expect(judgeDisk({ ...afterError, now: 10_500 }).low).toBe(false);
  });

  it('keeps the previous state when statfs gave nothing', () => {
    expect(judgeDisk({ ...base, reading: null }).low).toBe(false);
    expect(judgeDisk({ ...base, wasLow: true, reading: null }).low).toBe(true);
  });

  it('writes bytes in words', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(64 * MIB)).toBe('64 MiB');
    expect(formatBytes(3 * 1024 * MIB)).toBe('3.0 GiB');
  });
});

describe('createDiskMonitor', () => {
  it('reads statfs at start and at every interval, and says when it goes low and back', () => {
    const t = setup();
    t.monitor.start();
    expect(t.monitor.state()).toMatchObject({ low: false, reading: { freeBytes: 500 * MIB } });
    expect(t.manual.count()).toBe(1);
    t.set(stats(10 * MIB));
    t.manual.tick();
    expect(t.monitor.low()).toBe(true);
    expect(t.changes.map((state) => state.low)).toEqual([true]);
    t.set(stats(400 * MIB));
    t.manual.tick();
    expect(t.monitor.low()).toBe(false);
    expect(t.changes.map((state) => state.low)).toEqual([true, false]);
    t.monitor.stop();
    expect(t.manual.count()).toBe(0);
  });

  it('goes low at once on a full-disk write error and recovers at a poll after the hold', () => {
    const t = setup();
    t.monitor.start();
    expect(t.monitor.noteError(Object.assign(new Error('busy'), { code: 'SQLITE_BUSY' }))).toBe(false);
    expect(t.monitor.low()).toBe(false);
    expect(t.monitor.noteError(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }))).toBe(
      true,
    );
    expect(t.monitor.low()).toBe(true);
    expect(t.metrics.render()).toContain('edgeloop_disk_full_errors_total 1');
    t.advance(1_000);
    t.manual.tick();
    expect(t.monitor.low()).toBe(false);
  });

  it('keeps its state when statfs fails, and says why', () => {
    const t = setup();
    t.monitor.start();
    t.set(new Error('EIO: i/o error'));
    expect(t.monitor.poll()).toMatchObject({
      low: false,
      statfsError: 'EIO: i/o error',
      reading: { freeBytes: 500 * MIB },
    });
  });

  it('exports free bytes, the watermark and the low flag as gauges', () => {
    const t = setup(8 * MIB);
    t.set(stats(4 * MIB));
    t.monitor.start();
    const text = t.metrics.render();
    expect(text).toContain(`edgeloop_disk_free_bytes ${4 * MIB}`);
    expect(text).toContain(`edgeloop_disk_min_free_bytes ${8 * MIB}`);
    expect(text).toContain('edgeloop_disk_low 1');
  });
});
