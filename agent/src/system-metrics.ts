import { statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { SystemMetrics } from '@edgeloop/protocol';
import si from 'systeminformation';
import { systemTimers, type Timers } from './clock.ts';
import { readGpuLoadPct, readThermalZones, type ThermalReadings } from './jetson-sysfs.ts';

/*
 * System metrics for telemetry: systeminformation for CPU load, memory and (where sysfs has no
 * thermal zones) CPU temperature; statfs(2) for the disk holding the data dir (exact filesystem,
 * no `df` child process as systeminformation's fsSize would spawn); sysfs for GPU load and thermal
 * zones (jetson-sysfs.ts); os for uptime and core count.
 *
 * systeminformation can be slow (it shells out on some platforms), so every source is bounded by
 * `timeoutMs`: on timeout or error the last good reading of that source is used, and before any
 * reading a cheap fallback (os.loadavg, os.totalmem/freemem, null temperatures). `read()` never
 * rejects and never takes much longer than timeoutMs; concurrent calls share one collection.
 */

export type SystemInfoSource = {
  currentLoad(): Promise<{ currentLoad: number }>;
  mem(): Promise<{ total: number; available: number }>;
  cpuTemperature(): Promise<{ main: number | null }>;
};

export type SystemMetricsDeps = {
  readonly dataDir: string;
  readonly sysfsRoot: string;
  /** Defaults to the real systeminformation module. */
  readonly si?: SystemInfoSource;
  readonly timeoutMs?: number;
  readonly timers?: Timers;
};

export type SystemMetricsStats = { readonly reads: number; readonly timeouts: number; readonly errors: number };

export interface SystemMetricsReader {
  read(): Promise<SystemMetrics>;
  stats(): SystemMetricsStats;
}

const TIMED_OUT = Symbol('timed-out');

async function existingAncestor(dir: string): Promise<string> {
  let current = path.resolve(dir);
  for (;;) {
    try {
      await statfs(current);
      return current;
    } catch {
      const parent = path.dirname(current);
      if (parent === current) return current;
      current = parent;
    }
  }
}

function clamp(value: number, min: number, max: number): number {
  if (!Number.isFinite(value)) return min;
  return Math.min(max, Math.max(min, value));
}

function validTemperature(value: number | null | undefined): number | null {
  return typeof value === 'number' && Number.isFinite(value) && value >= -100 && value <= 250 ? value : null;
}

export function createSystemMetrics(deps: SystemMetricsDeps): SystemMetricsReader {
  const source: SystemInfoSource = deps.si ?? si;
  const timeoutMs = deps.timeoutMs ?? 3000;
  const timers = deps.timers ?? systemTimers;
  const cores = Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  const counters = { reads: 0, timeouts: 0, errors: 0 };
  const last: {
    loadPct?: number;
    memory?: { usedBytes: number; totalBytes: number };
    disk?: { usedBytes: number; totalBytes: number };
    cpuTemp?: number | null;
    thermal?: ThermalReadings;
    gpuLoad?: number | null;
  } = {};
  let inFlight: Promise<SystemMetrics> | null = null;

  function bounded<T>(work: () => Promise<T>): Promise<T | typeof TIMED_OUT | undefined> {
    return new Promise((resolve) => {
      let settled = false;
      const timer = timers.setTimeout(() => {
        if (settled) return;
        settled = true;
        counters.timeouts += 1;
        resolve(TIMED_OUT);
      }, timeoutMs);
      let started: Promise<T>;
      try {
        started = work();
      } catch (error) {
        started = Promise.reject(error);
      }
      started.then(
        (value) => {
          if (settled) return;
          settled = true;
          timers.clearTimeout(timer);
          resolve(value);
        },
        () => {
          if (settled) return;
          settled = true;
          timers.clearTimeout(timer);
          counters.errors += 1;
          resolve(undefined);
        },
      );
    });
  }

  function usable<T>(value: T | typeof TIMED_OUT | undefined): value is T {
    return value !== TIMED_OUT && value !== undefined;
  }

  async function collect(): Promise<SystemMetrics> {
    counters.reads += 1;
    const [load, mem, disk, thermal, gpuLoad] = await Promise.all([
      bounded(() => source.currentLoad()),
      bounded(() => source.mem()),
      bounded(async () => {
        const stats = await statfs(await existingAncestor(deps.dataDir));
        const totalBytes = stats.blocks * stats.bsize;
        return { totalBytes, usedBytes: Math.max(0, totalBytes - stats.bfree * stats.bsize) };
      }),
      bounded(() => readThermalZones(deps.sysfsRoot)),
      bounded(() => readGpuLoadPct(deps.sysfsRoot)),
    ]);
    if (usable(load)) last.loadPct = clamp(load.currentLoad, 0, 100);
    if (usable(mem)) last.memory = { totalBytes: mem.total, usedBytes: Math.max(0, mem.total - mem.available) };
    if (usable(disk)) last.disk = disk;
    if (usable(thermal)) last.thermal = thermal;
    if (gpuLoad !== TIMED_OUT && gpuLoad !== undefined) last.gpuLoad = gpuLoad;

    // sysfs thermal zones are the better source; systeminformation only where they give no CPU value.
    if ((last.thermal?.cpuC ?? null) === null) {
      const temp = await bounded(() => source.cpuTemperature());
      if (usable(temp)) last.cpuTemp = validTemperature(temp.main);
    }

    const loadPct = last.loadPct ?? clamp(((os.loadavg()[0] ?? 0) / cores) * 100, 0, 100);
    const memory = last.memory ?? { totalBytes: os.totalmem(), usedBytes: os.totalmem() - os.freemem() };
    const metrics: SystemMetrics = {
      cpu: { loadPct, cores },
      memory,
      disk: { ...(last.disk ?? { usedBytes: 0, totalBytes: 0 }), path: deps.dataDir.slice(0, 256) },
      temperatures: {
        cpuC: last.thermal?.cpuC ?? last.cpuTemp ?? null,
        gpuC: last.thermal?.gpuC ?? null,
        zones: { ...(last.thermal?.zones ?? {}) },
      },
      gpu: { loadPct: last.gpuLoad ?? null },
      uptimeS: os.uptime(),
    };
    return metrics;
  }

  return {
    read() {
      if (!inFlight) {
        inFlight = collect().finally(() => {
          inFlight = null;
        });
      }
      return inFlight;
    },
    stats: () => ({ ...counters }),
  };
}
