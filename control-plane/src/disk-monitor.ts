import { statfsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { MetricsRegistry } from './metrics.ts';
import type { Timers } from './time.ts';

/*
 * The disk watermark of the data directory. A poll reads statfs (every `intervalMs`, and at once
 * after a write failed with a full disk); below the watermark the state is `low`, and while it is
 * low the API's writes answer 507 (http/storage-guard.ts), the ingest writer holds its batches
 * (publishers get no PUBACK, their devices keep the data in their outboxes) and /readyz names
 * the disk. The state recovers by itself once a poll finds space again.
 *
 *   low      free bytes at or below the watermark, no free inode, or a write failed with ENOSPC /
 *            SQLITE_FULL less than one interval ago (a quota, a file system that reports space it
 *            cannot give, inodes);
 *   recover  free bytes above the watermark plus a margin (max(1 MiB, 10 % of the watermark)),
 *            so a disk hovering at the mark does not flap.
 */

/** What statfs says of the data directory's file system (fs.StatsFs's fields we use). */
export type FsStats = {
  readonly bsize: number;
  readonly blocks: number;
  readonly bavail: number;
  readonly files: number;
  readonly ffree: number;
};

export type DiskReading = {
  readonly freeBytes: number;
  readonly totalBytes: number;
  /** Free inodes; null when the file system does not count them (files 0). */
  readonly freeInodes: number | null;
};

export type DiskState = {
  readonly low: boolean;
  /** The latest statfs reading; null before the first, or when statfs failed. */
  readonly reading: DiskReading | null;
  /** Why the state is low, in words; null when it is not. */
  readonly reason: string | null;
  /** Why statfs failed, when it did (the state keeps its previous low). */
  readonly statfsError: string | null;
  /** When (clock ms) the last write failed with a full disk; null when none did. */
  readonly fullErrorAt: number | null;
  readonly minFreeBytes: number;
};

const MIB = 1024 * 1024;
/** ENOSPC and EDQUOT (files), SQLITE_FULL, and PostgreSQL's disk_full (SQLSTATE 53100). */
const FULL_CODES: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL', '53100']);

/** Whether an error (or one of its causes) says the disk is full: ENOSPC, EDQUOT, SQLITE_FULL, PostgreSQL 53100. */
export function isStorageFull(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && FULL_CODES.has(code)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

export function readingOf(stats: FsStats): DiskReading {
  return {
    freeBytes: stats.bavail * stats.bsize,
    totalBytes: stats.blocks * stats.bsize,
    freeInodes: stats.files > 0 ? stats.ffree : null,
  };
}

/** Free bytes above which a low disk counts as recovered. */
export function recoveryBytes(minFreeBytes: number): number {
  return minFreeBytes + Math.max(MIB, Math.floor(minFreeBytes / 10));
}

/** Bytes in words: `512 B`, `3.5 MiB`, `1.2 GiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 10 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

/** The next state from the previous one, a reading (or null when statfs failed) and the time. */
export function judgeDisk(input: {
  readonly wasLow: boolean;
  readonly reading: DiskReading | null;
  readonly minFreeBytes: number;
  readonly fullErrorAt: number | null;
  /** How long a full-disk write error keeps the state low. */
  readonly errorHoldMs: number;
  readonly now: number;
}): { readonly low: boolean; readonly reason: string | null } {
  const { reading, minFreeBytes, fullErrorAt, now } = input;
  if (fullErrorAt !== null && now - fullErrorAt < input.errorHoldMs) {
    const free = reading ? ` (${formatBytes(reading.freeBytes)} free)` : '';
    return { low: true, reason: `a write failed: the disk is full${free}` };
  }
  if (reading === null) return { low: input.wasLow, reason: input.wasLow ? 'free disk unknown (statfs failed)' : null };
  if (reading.freeInodes === 0) return { low: true, reason: 'no free inodes left' };
  const mark = formatBytes(minFreeBytes);
  if (reading.freeBytes <= minFreeBytes) {
    return { low: true, reason: `${formatBytes(reading.freeBytes)} free, at or below the watermark of ${mark}` };
  }
  if (input.wasLow && reading.freeBytes <= recoveryBytes(minFreeBytes)) {
    return {
      low: true,
      reason: `${formatBytes(reading.freeBytes)} free, not yet above ${formatBytes(recoveryBytes(minFreeBytes))} (watermark ${mark} plus a margin)`,
    };
  }
  return { low: false, reason: null };
}

export type DiskMonitorDeps = {
  /** The data directory. */
  readonly dir: string;
  readonly minFreeBytes: number;
  readonly intervalMs: number;
  readonly timers: Timers;
  readonly clock: { now(): number };
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
  /** statfs of a path (fs.statfsSync); a test passes its own numbers. */
  readonly statfs?: (path: string) => FsStats;
  /** Called after every change of `low` (both ways). */
  readonly onChange?: (state: DiskState) => void;
};

export type DiskMonitor = {
  start(): void;
  stop(): void;
  /** Reads statfs now and returns the new state. */
  poll(): DiskState;
  state(): DiskState;
  low(): boolean;
  /** Tells the monitor of a failed write; true when it was a full disk (the state is then low at once). */
  noteError(error: unknown): boolean;
};

export function createDiskMonitor(deps: DiskMonitorDeps): DiskMonitor {
  const statfs = deps.statfs ?? ((path: string) => statfsSync(path));
  const { minFreeBytes } = deps;
  let state: DiskState = {
    low: false,
    reading: null,
    reason: null,
    statfsError: null,
    fullErrorAt: null,
    minFreeBytes,
  };
  let handle: unknown = null;
  const fullErrors = deps.metrics.counter(
    'edgeloop_disk_full_errors_total',
    'Writes that failed because the disk was full (ENOSPC, EDQUOT, SQLITE_FULL)',
  );
  deps.metrics.gauge(
    'edgeloop_disk_free_bytes',
    'Free bytes of the data directory file system (statfs, available to the process)',
    () => state.reading?.freeBytes ?? Number.NaN,
  );
  deps.metrics.gauge(
    'edgeloop_disk_min_free_bytes',
    'The disk watermark (--min-free-disk-mb) in bytes',
    () => minFreeBytes,
  );
  deps.metrics.gauge('edgeloop_disk_low', '1 while free disk is below the watermark (writes wait)', () =>
    state.low ? 1 : 0,
  );

  const update = (reading: DiskReading | null, statfsError: string | null) => {
    const judged = judgeDisk({
      wasLow: state.low,
      reading,
      minFreeBytes,
      fullErrorAt: state.fullErrorAt,
      errorHoldMs: deps.intervalMs,
      now: deps.clock.now(),
    });
    const changed = judged.low !== state.low;
    state = { ...state, ...judged, reading: reading ?? state.reading, statfsError };
    if (changed) {
      if (state.low) {
        deps.logger.warn(
          { dataDir: deps.dir, freeBytes: state.reading?.freeBytes, minFreeBytes, reason: state.reason },
          'disk low: API writes answer 507 and ingest holds publishers until space returns',
        );
      } else {
        deps.logger.info(
          { dataDir: deps.dir, freeBytes: state.reading?.freeBytes },
          'disk space is back: writes resume',
        );
      }
      deps.onChange?.(state);
    }
    return state;
  };

  const poll = (): DiskState => {
    try {
      return update(readingOf(statfs(deps.dir)), null);
    } catch (error) {
      return update(null, (error as Error).message);
    }
  };

  return {
    start() {
      poll();
      handle ??= deps.timers.setInterval(poll, deps.intervalMs);
    },
    stop() {
      if (handle !== null) deps.timers.clearInterval(handle);
      handle = null;
    },
    poll,
    state: () => state,
    low: () => state.low,
    noteError(error) {
      if (!isStorageFull(error)) return false;
      fullErrors.inc();
      state = { ...state, fullErrorAt: deps.clock.now() };
      poll();
      return true;
    },
  };
}
