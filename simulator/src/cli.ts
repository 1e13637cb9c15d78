import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { type Fleet, type FleetOptions, formatStats } from './fleet.ts';
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
  --quiet                 no live summary line
  --help                  this text
`;

export type SimCliOptions = {
  readonly fleet: FleetOptions;
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
  let values: Record<string, string | boolean | undefined>;
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
  if (problems.length > 0) return { ok: false, help: false, problems };
  return {
    ok: true,
    value: {
      fleet: {
        controlPlaneUrl: controlPlaneUrl as string,
        token: token as string,
        devices,
        prefix: (values.prefix as string | undefined) ?? 'sim',
        ...(scenario?.hardwareMix ? { hardwareMix: scenario.hardwareMix } : {}),
        ...(scenario?.sites ? { sites: scenario.sites } : {}),
        ...(typeof values['mqtt-url'] === 'string' ? { mqttUrl: values['mqtt-url'] } : {}),
        keepaliveS: positiveNumber('keepalive', values.keepalive as string | undefined, 30, problems),
        telemetryIntervalS: positiveNumber(
          'telemetry-interval',
          values['telemetry-interval'] as string | undefined,
          10,
          problems,
        ),
        cameraFps: positiveNumber('camera-fps', values['camera-fps'] as string | undefined, 15, problems),
        connectRate: positiveNumber('connect-rate', values['connect-rate'] as string | undefined, 200, problems),
        outboxMaxBytes: 1024 * 1024,
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
