import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

/*
 * Readings from Linux sysfs that systeminformation does not give, notably on NVIDIA Jetson.
 * Every reader takes the root directory (`/` on a device, a fake tree in tests) and never throws:
 * missing or unreadable files mean "no reading".
 *
 * GPU load (devfreq). A `<root>/sys/class/devfreq/<entry>` is a GPU when its name (or the part
 * after its bus address, as in `17000000.ga10b`) or `<entry>/device/of_node/name` is one of
 * gv11b (Xavier), ga10b (Orin), gp10b (TX2), gm20b (Nano), gpu, or contains "gpu". Load:
 *   1. `<entry>/device/load`: the nvgpu driver's load on a 0..1000 scale (Jetson) -> / 10;
 *   2. else `<entry>/load`: mainline devfreq's "<busy percent>@<frequency>Hz" (0..100).
 * The first GPU entry that yields a reading wins; the result is clamped to 0..100.
 *
 * Thermal zones. `<root>/sys/class/thermal/thermal_zone<N>/type` and `temp` (millidegrees C).
 * Zones are keyed by type; a repeated type gets `-<N>` appended. Readings outside -100..250 C
 * (disabled sensors report -256 C or 1000 C and more on some boards) are left out. cpuC and gpuC
 * are picked by the first matching type pattern, in order:
 *   cpu: CPU-therm, cpu-thermal / cpu_thermal, x86_pkg_temp, any type containing "cpu", soc-thermal
 *   gpu: GPU-therm, gpu-thermal / gpu_thermal, any type containing "gpu"
 */

const GPU_NAMES: ReadonlySet<string> = new Set(['gv11b', 'ga10b', 'gp10b', 'gm20b', 'gpu']);

async function readText(file: string): Promise<string | null> {
  try {
    return (await readFile(file, 'utf8')).replace(/\0/g, '').trim();
  } catch {
    return null;
  }
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch {
    return [];
  }
}

function looksLikeGpu(name: string): boolean {
  const lower = name.toLowerCase();
  const afterAddress = lower.includes('.') ? lower.slice(lower.lastIndexOf('.') + 1) : lower;
  return GPU_NAMES.has(lower) || GPU_NAMES.has(afterAddress) || lower.includes('gpu');
}

/** Parses a devfreq load file: nvgpu's "0..1000" integer or mainline's "45@1300000000Hz". */
export function parseDevfreqLoad(text: string, scale: 'permille' | 'percent'): number | null {
  const match = /^(\d+(?:\.\d+)?)/.exec(text);
  if (!match) return null;
  const value = Number(match[1]);
  if (!Number.isFinite(value)) return null;
  const percent = scale === 'permille' ? value / 10 : value;
  return Math.min(100, Math.max(0, percent));
}

/** GPU load in percent from devfreq, or null where no GPU entry gives one. */
export async function readGpuLoadPct(root: string): Promise<number | null> {
  const base = path.join(root, 'sys', 'class', 'devfreq');
  for (const entry of await listDir(base)) {
    const dir = path.join(base, entry);
    const ofName = await readText(path.join(dir, 'device', 'of_node', 'name'));
    if (!looksLikeGpu(entry) && !(ofName !== null && looksLikeGpu(ofName))) continue;
    const nvgpu = await readText(path.join(dir, 'device', 'load'));
    const fromNvgpu = nvgpu === null ? null : parseDevfreqLoad(nvgpu, 'permille');
    if (fromNvgpu !== null) return fromNvgpu;
    const mainline = await readText(path.join(dir, 'load'));
    const fromMainline = mainline === null ? null : parseDevfreqLoad(mainline, 'percent');
    if (fromMainline !== null) return fromMainline;
  }
  return null;
}

export type ThermalReadings = {
  readonly zones: Record<string, number>;
  readonly cpuC: number | null;
  readonly gpuC: number | null;
};

const CPU_PATTERNS = [/^cpu[-_]?therm$/i, /^cpu[-_]thermal$/i, /^x86_pkg_temp$/i, /cpu/i, /^soc[-_]?therm/i];
const GPU_PATTERNS = [/^gpu[-_]?therm$/i, /^gpu[-_]thermal$/i, /gpu/i];

function pick(zones: ReadonlyArray<readonly [string, number]>, patterns: readonly RegExp[]): number | null {
  for (const pattern of patterns) {
    const found = zones.find(([type]) => pattern.test(type));
    if (found) return found[1];
  }
  return null;
}

/** Every readable thermal zone, plus cpuC and gpuC picked from them. */
export async function readThermalZones(root: string): Promise<ThermalReadings> {
  const base = path.join(root, 'sys', 'class', 'thermal');
  const names = (await listDir(base))
    .map((name) => ({ name, index: /^thermal_zone(\d+)$/.exec(name)?.[1] }))
    .filter((zone): zone is { name: string; index: string } => zone.index !== undefined)
    .sort((a, b) => Number(a.index) - Number(b.index));
  const readings: Array<readonly [string, number]> = [];
  // No prototype: a zone type such as `__proto__` or `constructor` is just a key.
  const zones: Record<string, number> = Object.create(null);
  for (const { name, index } of names) {
    const type = await readText(path.join(base, name, 'type'));
    const temp = await readText(path.join(base, name, 'temp'));
    if (!type || temp === null || !/^-?\d+$/.test(temp)) continue;
    const celsius = Number(temp) / 1000;
    if (!Number.isFinite(celsius) || celsius < -100 || celsius > 250) continue;
    const safeType = type.slice(0, 56);
    const key = Object.hasOwn(zones, safeType) ? `${safeType}-${index}` : safeType;
    zones[key] = Math.round(celsius * 10) / 10;
    readings.push([type, zones[key]!]);
  }
  return { zones, cpuC: pick(readings, CPU_PATTERNS), gpuC: pick(readings, GPU_PATTERNS) };
}
