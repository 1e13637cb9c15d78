import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SystemMetrics } from '@edgeloop/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSystemMetrics, type SystemInfoSource } from './system-metrics.ts';

let root: string;
beforeEach(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-metrics-'));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

function put(relative: string, content: string): void {
  const file = path.join(root, relative);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
}

describe('system metrics', () => {
  it('reads this machine through systeminformation into a valid SystemMetrics', async () => {
    const reader = createSystemMetrics({ dataDir: root, sysfsRoot: '/', timeoutMs: 10_000 });
    const metrics = await reader.read();
    expect(SystemMetrics.safeParse(metrics).success).toBe(true);
    expect(metrics.memory.totalBytes).toBeGreaterThan(0);
    expect(metrics.disk.totalBytes).toBeGreaterThan(0);
    expect(metrics.disk.usedBytes).toBeLessThanOrEqual(metrics.disk.totalBytes);
    expect(metrics.cpu.cores).toBeGreaterThanOrEqual(1);
  });

  it('takes GPU load and temperatures from a Jetson sysfs tree', async () => {
    put('sys/class/devfreq/17000000.ga10b/device/load', '250\n');
    put('sys/class/thermal/thermal_zone0/type', 'CPU-therm\n');
    put('sys/class/thermal/thermal_zone0/temp', '48000\n');
    put('sys/class/thermal/thermal_zone1/type', 'GPU-therm\n');
    put('sys/class/thermal/thermal_zone1/temp', '47000\n');
    const reader = createSystemMetrics({ dataDir: root, sysfsRoot: root, timeoutMs: 10_000 });
    const metrics = await reader.read();
    expect(metrics.gpu).toEqual({ loadPct: 25 });
    expect(metrics.temperatures).toEqual({ cpuC: 48, gpuC: 47, zones: { 'CPU-therm': 48, 'GPU-therm': 47 } });
  });

  it('answers within its timeout when systeminformation hangs, with fallbacks then last good values', async () => {
    let hang = true;
    const never = new Promise<never>(() => {});
    const si: SystemInfoSource = {
      currentLoad: () => (hang ? never : Promise.resolve({ currentLoad: 33 })),
      mem: () => (hang ? never : Promise.resolve({ total: 8e9, available: 6e9 })),
      cpuTemperature: () => (hang ? never : Promise.resolve({ main: 55 })),
    };
    const reader = createSystemMetrics({ dataDir: root, sysfsRoot: root, si, timeoutMs: 50 });
    const started = Date.now();
    const first = await reader.read();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(SystemMetrics.safeParse(first).success).toBe(true);
    expect(first.temperatures.cpuC).toBeNull();
    expect(reader.stats().timeouts).toBeGreaterThanOrEqual(3);

    hang = false;
    const second = await reader.read();
    expect(second.cpu.loadPct).toBe(33);
    expect(second.memory).toEqual({ totalBytes: 8e9, usedBytes: 2e9 });
    expect(second.temperatures.cpuC).toBe(55);

    hang = true;
    const third = await reader.read();
    expect(third.cpu.loadPct).toBe(33);
    expect(third.memory).toEqual({ totalBytes: 8e9, usedBytes: 2e9 });
  });

  it('shares one collection between concurrent reads', async () => {
    let calls = 0;
    const si: SystemInfoSource = {
      currentLoad: async () => {
        calls += 1;
        return { currentLoad: 1 };
      },
      mem: async () => ({ total: 1, available: 1 }),
      cpuTemperature: async () => ({ main: null }),
    };
    const reader = createSystemMetrics({ dataDir: root, sysfsRoot: root, si });
    const [a, b] = await Promise.all([reader.read(), reader.read()]);
    expect(a).toBe(b);
    expect(calls).toBe(1);
  });
});
