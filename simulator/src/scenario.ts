import { createSeededRandom, seedOf } from '@edgeloop/agent';
import { fail, ok, type Result } from '@edgeloop/protocol';
import { z } from 'zod';
import { ModelBehaviours, SceneName } from './model-behaviour.ts';
import { HARDWARE_NAMES } from './profiles.ts';

/* Scenario files: faults injected on a schedule, and model behaviours for rollout scenarios.
 *
 *   {
 *     "name": "flaky-site",
 *     "devices": 200,
 *     "hardwareMix": { "orin-nano": 3, "rpi5": 1 },
 *     "sites": ["lyon", "oslo"],
 *     "steps": [
 *       { "at": "30s", "action": "kill", "target": { "percent": 50 } },
 *       { "at": "60s", "action": "revive", "target": { "percent": 50 } },
 *       { "at": "90s", "action": "flap", "target": { "count": 10 }, "for": "60s", "periodS": 5 },
 *       { "at": "2m",  "action": "overheat", "target": { "hardware": "rpi5" }, "for": "3m", "extraC": 35 }
 *     ],
 *     "models": { "det@2.0.0": { "latencyFactor": 3, "detectionFactor": 0.4 } },
 *     "samples": { "fps": 1, "width": 160, "height": 120 }
 *   }
 *
 * `models` has the form of a `--model-behaviour` file's (model-behaviour.ts: keys name@version,
 * sha256 or `*`); a behaviour file given beside the scenario wins for the models both name.
 *
 * Actions:
 *   disconnect  clean MQTT disconnect (shutdown status, no will); `reconnect` brings it back
 *   kill        the process dies: socket destroyed without DISCONNECT, so the broker publishes the will
 *   blackhole   the network silently drops every byte (no FIN/RST): only keepalive notices
 *   revive      a killed or blackholed device boots again (new bootId) and reconnects
 *   flap        the network goes down and up every `periodS` for `for`
 *   clock-skew  the device clock runs `skewS` seconds off (its messages carry wrong ts)
 *   overheat    temperatures rise by `extraC` for `for`
 *   camera-stall inference stops (frames in, none processed) for `for`
 *   scene-change the camera's scene becomes `scene` (snow, night...): every model plays its `scenes`
 *               entry for it (model-behaviour.ts), and the telemetry window where it happens
 *               raises `camera.sceneChange`; with `for`, the scene returns after that long
 *   scene-restore the scene returns to normal (and `camera.sceneChange` is raised again)
 *
 *     { "at": "1m", "action": "scene-change", "target": { "site": "b" }, "scene": "snow" }
 */

export const Duration = z.union([
  z.number().min(0),
  z.string().regex(/^\d+(\.\d+)?(ms|s|m|h)$/, 'a duration is a number of seconds or text like 500ms, 30s, 2m, 1h'),
]);

export function durationMs(value: z.infer<typeof Duration>): number {
  if (typeof value === 'number') return value * 1000;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(value);
  if (!match) return Number.NaN;
  const amount = Number(match[1]);
  const unit = match[2];
  return amount * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000);
}

export const Target = z
  .object({
    count: z.int().min(0).optional(),
    percent: z.number().min(0).max(100).optional(),
    ids: z.array(z.string()).optional(),
    hardware: z.enum(HARDWARE_NAMES as [string, ...string[]]).optional(),
    site: z.string().optional(),
  })
  .default({ percent: 100 });
export type Target = z.infer<typeof Target>;

export const ScenarioStep = z
  .object({
    at: Duration,
    action: z.enum([
      'disconnect',
      'reconnect',
      'kill',
      'blackhole',
      'revive',
      'flap',
      'clock-skew',
      'overheat',
      'camera-stall',
      'scene-change',
      'scene-restore',
    ]),
    target: Target,
    for: Duration.optional(),
    periodS: z.number().positive().default(5),
    skewS: z.number().default(0),
    extraC: z.number().default(30),
    /** The scene a `scene-change` step sets. */
    scene: SceneName.optional(),
  })
  .superRefine((step, ctx) => {
    if (step.action === 'scene-change' && step.scene === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['scene'],
        message: 'a scene-change step names its scene ("scene": "snow")',
      });
    }
    if (step.action !== 'scene-change' && step.scene !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['scene'],
        message: `"scene" belongs to scene-change steps, not ${step.action}`,
      });
    }
  });
export type ScenarioStep = z.infer<typeof ScenarioStep>;

export const Scenario = z.object({
  name: z.string().min(1).max(64),
  description: z.string().max(2000).optional(),
  devices: z.int().min(1).max(100_000).optional(),
  /** Relative weights of hardware profiles in the fleet. */
  hardwareMix: z
    .record(z.string(), z.number().min(0))
    .superRefine((mix, ctx) => {
      // A mix names some profiles, not all (a record over the enum would demand every one).
      for (const name of Object.keys(mix)) {
        if (!HARDWARE_NAMES.includes(name)) {
          ctx.addIssue({
            code: 'custom',
            path: [name],
            message: `unknown hardware profile "${name}"; known: ${HARDWARE_NAMES.join(', ')}`,
          });
        }
      }
    })
    .optional(),
  sites: z.array(z.string().min(1).max(64)).min(1).max(1000).optional(),
  steps: z.array(ScenarioStep).max(10_000).default([]),
  /** How each model (name@version, sha256 or `*`) behaves on the devices that run it (model-behaviour.ts). */
  models: ModelBehaviours.default({}),
  /**
   * The scenario captures hard samples: edgeloop-sim then needs --samples-dir, and offers frames
   * of this size at this rate (flags win) while a sample policy is enabled.
   */
  samples: z
    .strictObject({
      fps: z.number().positive().max(60).optional(),
      width: z.int().min(16).max(4096).optional(),
      height: z.int().min(16).max(4096).optional(),
    })
    .optional(),
});
export type Scenario = z.infer<typeof Scenario>;

/** Parses a scenario file's text; every problem is listed. */
export function parseScenario(text: string): Result<Scenario> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return fail('invalid_scenario', `scenario is not JSON: ${(error as Error).message}`);
  }
  const parsed = Scenario.safeParse(json);
  if (!parsed.success) {
    return fail(
      'invalid_scenario',
      parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; '),
    );
  }
  return ok(parsed.data);
}

export type SimulatedDeviceInfo = { readonly id: string; readonly hardware: string; readonly site: string };

/** The devices a step targets, chosen deterministically from the scenario name and step index. */
export function resolveTarget(
  target: Target,
  devices: readonly SimulatedDeviceInfo[],
  salt: string,
): SimulatedDeviceInfo[] {
  let pool = devices.filter(
    (device) =>
      (!target.hardware || device.hardware === target.hardware) &&
      (!target.site || device.site === target.site) &&
      (!target.ids || target.ids.includes(device.id)),
  );
  if (target.count === undefined && target.percent === undefined) return pool;
  const random = createSeededRandom(seedOf(salt));
  pool = pool
    .map((device) => ({ device, key: random() }))
    .sort((a, b) => a.key - b.key)
    .map((entry) => entry.device);
  const wanted = target.count !== undefined ? target.count : Math.round(((target.percent ?? 100) / 100) * pool.length);
  return pool.slice(0, Math.min(wanted, pool.length));
}

/** Hardware profile and site of device number `index` in a fleet of `total`. */
export function assignHardware(
  index: number,
  mix: Readonly<Record<string, number>> | undefined,
  sites: readonly string[] | undefined,
): { hardware: string; site: string } {
  const weights = Object.entries(mix ?? { 'orin-nano': 4, 'orin-nx': 2, 'xavier-nx': 1, rpi5: 2, 'x86-gpu': 1 }).filter(
    ([, weight]) => weight > 0,
  );
  const total = weights.reduce((sum, [, weight]) => sum + weight, 0);
  // Deterministic, evenly spread: a low-discrepancy walk over the weights.
  const position = ((index * 0.6180339887498949) % 1) * total;
  let acc = 0;
  let hardware = weights[0]?.[0] ?? 'orin-nano';
  for (const [name, weight] of weights) {
    acc += weight;
    if (position < acc) {
      hardware = name;
      break;
    }
  }
  const siteList = sites ?? ['site-a', 'site-b', 'site-c'];
  return { hardware, site: siteList[index % siteList.length] ?? 'site-a' };
}
