import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { readTrustedKeyFiles } from '@edgeloop/agent';
import { type Fleet, type FleetOptions, formatStats } from './fleet.ts';
import { parseModelBehaviourFile } from './model-behaviour.ts';
import type { ModelBehaviour } from './profiles.ts';
import { parseScenario, type Scenario } from './scenario.ts';

export const USAGE = `edgeloop-sim: many virtual devices in one process, built from the agent's own code

Usage:
  edgeloop-sim --control-plane URL --token T --devices N [options]

Options:
  --control-plane URL     control plane HTTP base URL (env EDGELOOP_CONTROL_PLANE_URL)
  --token T               operator/admin bearer token (env EDGELOOP_TOKEN)
  --devices N             number of devices (default 10)
  --scenario FILE         scenario file (JSON): faults on a schedule, model behaviours
  --prefix P              device id prefix (default sim)
  --mqtt-url URL          broker URL to use instead of the one enrollment returns
  --telemetry-interval S  seconds between telemetry messages (default 10)
  --keepalive S           MQTT keepalive seconds (default 30)
  --camera-fps F          simulated camera frame rate (default 15)
  --connect-rate N        devices connecting per second (default 200)
  --duration D            stop after D (e.g. 90s, 10m); default: until Ctrl-C
  --label key=value       extra label on every device (repeatable), e.g. for a rollout selector
  --seed N                seeds every device's random metrics (with its id); default: the id alone
  --quiet                 no live summary line
  --help                  this text

Model updates (every device runs the agent's real model manager: signed download from the
control plane with its own credential, checks, A/B slots, health check, local revert):
  --trusted-keys FILE     public key(s) releases must be signed with: a .pub file from
                          edgeloop-image keygen or a folder of them (comma-separated for several)
  --initial-model ID      name@version from the control plane's registry that every device runs
                          at start (the control cohort of a rollout); default: no model
  --model-behaviour FILE  how models play on the devices (JSON: latencyFactor, detectionFactor,
                          detectionsPerFrame, confidenceShift, confidenceSd, errorRate, maxFps,
                          crashOnLoad, scenes, by name@version, sha256 or *); default: like the
                          current model
  --health-check S        seconds the played health check after a switch takes (default 2)

Hard samples (every device runs the agent's capture code on synthetic frames with known boxes,
under the policy its desired state carries: set one with edgeloop samples policy set):
  --samples-dir DIR       turns capture on; each device keeps its spool and budget counters in
                          DIR/<device id> (kept across simulated reboots)
  --sample-fps F          frames per second offered to the capture while a policy is on (default 2,
                          or the scenario's samples.fps; a scenario with "samples" needs --samples-dir)

Examples:
  edgeloop-sim --control-plane http://localhost:8080 --token $EDGELOOP_TOKEN --devices 50
  edgeloop-sim --control-plane http://localhost:8080 --token $EDGELOOP_TOKEN --devices 60 \\
    --trusted-keys release.pub --initial-model det@1.0.0 --label fleet=sim \\
    --scenario simulator/scenarios/rollout-bad.json
`;

/** Model updates on the simulated devices, before the initial model is looked up in the registry. */
export type SimModelOptions = {
  readonly trustedKeyPems: readonly string[];
  /** `name@version` every device runs at start, or null for none. */
  readonly initialModel: string | null;
  readonly healthCheckMs: number;
};

export type SimCliOptions = {
  readonly fleet: FleetOptions;
  /** Null: devices run no model manager (no --trusted-keys). */
  readonly models: SimModelOptions | null;
  /** The scenario's model behaviours, then the --model-behaviour file's (which win). */
  readonly behaviours: Readonly<Record<string, ModelBehaviour>>;
  readonly scenario: Scenario | null;
  readonly durationMs: number | null;
  readonly quiet: boolean;
};

export type ParsedCli = { ok: true; value: SimCliOptions } | { ok: false; help: boolean; problems: string[] };

function positiveNumber(name: string, text: string | undefined, fallback: number, problems: string[]): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    problems.push(`--${name} must be a positive number, got "${text}"`);
    return fallback;
  }
  return value;
}

/** Parses argv and env; lists every problem. */
export function parseSimArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParsedCli {
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    values = parseArgs({
      args: [...argv],
      options: {
        'control-plane': { type: 'string' },
        token: { type: 'string' },
        devices: { type: 'string' },
        scenario: { type: 'string' },
        prefix: { type: 'string' },
        'mqtt-url': { type: 'string' },
        'telemetry-interval': { type: 'string' },
        keepalive: { type: 'string' },
        'camera-fps': { type: 'string' },
        'connect-rate': { type: 'string' },
        duration: { type: 'string' },
        label: { type: 'string', multiple: true },
        seed: { type: 'string' },
        'trusted-keys': { type: 'string' },
        'initial-model': { type: 'string' },
        'model-behaviour': { type: 'string' },
        'health-check': { type: 'string' },
        'samples-dir': { type: 'string' },
        'sample-fps': { type: 'string' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      strict: true,
    }).values;
  } catch (error) {
    return { ok: false, help: false, problems: [(error as Error).message] };
  }
  if (values.help) return { ok: false, help: true, problems: [] };
  const problems: string[] = [];
  const controlPlaneUrl = (values['control-plane'] as string | undefined) ?? env.EDGELOOP_CONTROL_PLANE_URL;
  const token = (values.token as string | undefined) ?? env.EDGELOOP_TOKEN;
  if (!controlPlaneUrl) problems.push('--control-plane URL is required');
  else {
    try {
      new URL(controlPlaneUrl);
    } catch {
      problems.push(`--control-plane must be a URL, got "${controlPlaneUrl}"`);
    }
  }
  if (!token) problems.push('--token is required');
  let scenario: Scenario | null = null;
  if (typeof values.scenario === 'string') {
    let text = '';
    try {
      text = readFileSync(values.scenario, 'utf8');
    } catch (error) {
      problems.push(`--scenario ${values.scenario}: ${(error as Error).message}`);
    }
    if (text) {
      const parsed = parseScenario(text);
      if (parsed.ok) scenario = parsed.value;
      else problems.push(`--scenario ${values.scenario}: ${parsed.error.message}`);
    }
  }
  const devices = Math.round(
    positiveNumber('devices', values.devices as string | undefined, scenario?.devices ?? 10, problems),
  );
  let durationMs: number | null = null;
  if (typeof values.duration === 'string') {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(values.duration);
    if (!match) problems.push(`--duration must look like 90s or 10m, got "${values.duration}"`);
    else {
      const unit = match[2] ?? 's';
      durationMs = Number(match[1]) * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000);
    }
  }
  const labels: Record<string, string> = {};
  for (const label of (values.label as string[] | undefined) ?? []) {
    const match = /^([^=\s]+)=(.*)$/.exec(label);
    if (!match) problems.push(`--label must look like key=value, got "${label}"`);
    else labels[match[1] as string] = match[2] as string;
  }
  let seed: number | undefined;
  if (typeof values.seed === 'string') {
    seed = Number(values.seed);
    if (!Number.isInteger(seed)) problems.push(`--seed must be an integer, got "${values.seed}"`);
  }
  let models: SimModelOptions | null = null;
  const keysSetting = values['trusted-keys'] as string | undefined;
  if (keysSetting !== undefined) {
    const read = readTrustedKeyFiles(
      keysSetting
        .split(',')
        .map((path) => path.trim())
        .filter(Boolean),
    );
    if (!read.ok) problems.push(`--trusted-keys: ${read.error.message}`);
    const initial = values['initial-model'] as string | undefined;
    if (initial !== undefined && !/^[a-z0-9][a-z0-9._-]*@[0-9A-Za-z.+-]+$/.test(initial)) {
      problems.push(`--initial-model must be name@version, got "${initial}"`);
    }
    models = {
      trustedKeyPems: read.ok ? read.value.map((file) => file.publicKeyPem) : [],
      initialModel: initial ?? null,
      healthCheckMs: positiveNumber('health-check', values['health-check'] as string | undefined, 2, problems) * 1000,
    };
  } else {
    for (const flag of ['initial-model', 'model-behaviour', 'health-check']) {
      if (values[flag] !== undefined) {
        problems.push(`--${flag} needs --trusted-keys (without it devices run no model manager)`);
      }
    }
  }
  const behaviours: Record<string, ModelBehaviour> = { ...scenario?.models };
  const behaviourFile = values['model-behaviour'];
  if (typeof behaviourFile === 'string') {
    let text = '';
    try {
      text = readFileSync(behaviourFile, 'utf8');
    } catch (error) {
      problems.push(`--model-behaviour ${behaviourFile}: ${(error as Error).message}`);
    }
    if (text) {
      const parsed = parseModelBehaviourFile(text);
      if (parsed.ok) Object.assign(behaviours, parsed.value.models);
      else problems.push(`--model-behaviour ${behaviourFile}: ${parsed.error.message}`);
    }
  }
  const keepaliveS = positiveNumber('keepalive', values.keepalive as string | undefined, 30, problems);
  const telemetryIntervalS = positiveNumber(
    'telemetry-interval',
    values['telemetry-interval'] as string | undefined,
    10,
    problems,
  );
  const cameraFps = positiveNumber('camera-fps', values['camera-fps'] as string | undefined, 15, problems);
  const connectRate = positiveNumber('connect-rate', values['connect-rate'] as string | undefined, 200, problems);
  const samplesDir = values['samples-dir'] as string | undefined;
  const scenarioSamples = scenario?.samples;
  const sampleFps = positiveNumber(
    'sample-fps',
    values['sample-fps'] as string | undefined,
    scenarioSamples?.fps ?? 2,
    problems,
  );
  if (values['sample-fps'] !== undefined && samplesDir === undefined) {
    problems.push('--sample-fps needs --samples-dir (without it devices capture no samples)');
  }
  if (scenarioSamples && samplesDir === undefined) {
    problems.push(
      `--scenario ${String(values.scenario)} captures hard samples: give --samples-dir DIR (each device's spool and budget)`,
    );
  }
  if (problems.length > 0) return { ok: false, help: false, problems };
  return {
    ok: true,
    value: {
      models,
      behaviours,
      fleet: {
        controlPlaneUrl: controlPlaneUrl as string,
        token: token as string,
        devices,
        prefix: (values.prefix as string | undefined) ?? 'sim',
        ...(scenario?.hardwareMix ? { hardwareMix: scenario.hardwareMix } : {}),
        ...(scenario?.sites ? { sites: scenario.sites } : {}),
        ...(typeof values['mqtt-url'] === 'string' ? { mqttUrl: values['mqtt-url'] } : {}),
        keepaliveS,
        telemetryIntervalS,
        cameraFps,
        connectRate,
        outboxMaxBytes: 1024 * 1024,
        ...(Object.keys(labels).length > 0 ? { labels } : {}),
        ...(seed !== undefined ? { seed } : {}),
        ...(samplesDir !== undefined
          ? {
              samples: {
                dir: samplesDir,
                fps: sampleFps,
                ...(scenarioSamples?.width !== undefined ? { width: scenarioSamples.width } : {}),
                ...(scenarioSamples?.height !== undefined ? { height: scenarioSamples.height } : {}),
              },
            }
          : {}),
      },
      scenario,
      durationMs,
      quiet: values.quiet === true,
    },
  };
}

/** Prints the live one-line summary (rewritten in place on a terminal). */
export function startSummary(fleet: Fleet, stream: NodeJS.WriteStream, everyMs = 1000): () => void {
  const write = () => {
    const line = formatStats(fleet.stats());
    if (stream.isTTY) stream.write(`\r\x1b[2K${line}`);
    else stream.write(`${line}\n`);
  };
  const timer = setInterval(write, everyMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    write();
    if (stream.isTTY) stream.write('\n');
  };
}
