import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseDevfreqLoad, readGpuLoadPct, readThermalZones } from './jetson-sysfs.ts';

let root: string;
beforeEach(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-sysfs-'));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

function put(relative: string, content: string): void {
  const file = path.join(root, relative);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
}

function zone(index: number, type: string, milliC: string): void {
  put(`sys/class/thermal/thermal_zone${index}/type`, `${type}\n`);
  put(`sys/class/thermal/thermal_zone${index}/temp`, `${milliC}\n`);
}

describe('GPU load from devfreq', () => {
  it('reads an Orin GPU load on the 0..1000 scale of device/load', async () => {
    put('sys/class/devfreq/3d00000.host1x/load', '10@100000000Hz\n');
    put('sys/class/devfreq/17000000.ga10b/device/load', '437\n');
    put('sys/class/devfreq/17000000.ga10b/load', '99@918000000Hz\n');
    expect(await readGpuLoadPct(root)).toBe(43.7);
  });

  it('recognises a GPU by its device tree node name', async () => {
    put('sys/class/devfreq/57000000.dev/device/of_node/name', 'gpu\0');
    put('sys/class/devfreq/57000000.dev/device/load', '1000\n');
    expect(await readGpuLoadPct(root)).toBe(100);
  });

  it('falls back to the mainline devfreq load percentage', async () => {
    put('sys/class/devfreq/fb000000.gpu/load', '62@800000000Hz\n');
    expect(await readGpuLoadPct(root)).toBe(62);
  });

  it('gives null where no GPU is listed or its load is unreadable', async () => {
    expect(await readGpuLoadPct(root)).toBeNull();
    put('sys/class/devfreq/ff9a0000.npu/load', '50@1Hz\n');
    put('sys/class/devfreq/17000000.gv11b/device/load', 'garbage\n');
    expect(await readGpuLoadPct(root)).toBeNull();
  });

  it('parses and clamps load values', () => {
    expect(parseDevfreqLoad('1200', 'permille')).toBe(100);
    expect(parseDevfreqLoad('5@1Hz', 'percent')).toBe(5);
    expect(parseDevfreqLoad('n/a', 'percent')).toBeNull();
  });
});

describe('thermal zones', () => {
  it('reads a Jetson tree into zones and picks CPU and GPU temperatures', async () => {
    zone(0, 'CPU-therm', '45500');
    zone(1, 'GPU-therm', '43000');
    zone(2, 'CV0-therm', '41250');
    zone(3, 'SOC0-therm', '44000');
    zone(10, 'tj-therm', '46000');
    const readings = await readThermalZones(root);
    expect(readings.cpuC).toBe(45.5);
    expect(readings.gpuC).toBe(43);
    expect({ ...readings.zones }).toEqual({
      'CPU-therm': 45.5,
      'GPU-therm': 43,
      'CV0-therm': 41.3,
      'SOC0-therm': 44,
      'tj-therm': 46,
    });
  });

  it('picks the Raspberry Pi cpu-thermal zone and has no GPU reading', async () => {
    zone(0, 'cpu-thermal', '51900');
    const readings = await readThermalZones(root);
    expect(readings).toMatchObject({ cpuC: 51.9, gpuC: null });
  });

  it('leaves out disabled sensors and unreadable zones, and keeps repeated types apart', async () => {
    zone(0, 'PMIC-Die', '100000');
    zone(1, 'acpitz', '27800');
    zone(2, 'acpitz', '29800');
    zone(3, 'GPU-therm', '-256000');
    zone(4, 'x86_pkg_temp', 'not-a-number');
    zone(5, '__proto__', '30000');
    put('sys/class/thermal/thermal_zone6/type', 'no-temp\n');
    put('sys/class/thermal/cooling_device0/type', 'fan\n');
    const readings = await readThermalZones(root);
    expect({ ...readings.zones }).toEqual({ 'PMIC-Die': 100, acpitz: 27.8, 'acpitz-2': 29.8, ['__proto__']: 30 });
    expect(readings.gpuC).toBeNull();
    expect(readings.cpuC).toBeNull();
  });

  it('gives empty readings for a root without sysfs', async () => {
    expect(await readThermalZones(path.join(root, 'missing'))).toEqual({ zones: {}, cpuC: null, gpuC: null });
  });
});
