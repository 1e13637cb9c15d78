import type { DeviceList, DeviceView, EnrollDeviceResponse } from '@edgeloop/protocol';
import pino from 'pino';
import { ConfigError, describeSettings, loadConfig } from './config.ts';
import { createControlPlane, PortInUseError, VERSION } from './control-plane.ts';

/*
 * The `edgeloop` command. main.ts hands it argv, the environment and the process's streams;
 * everything here is testable without a process of its own.
 *
 * Exit codes: 0 done; 1 failed (an API error, a crash); 2 usage or configuration error;
 * 3 a port is in use.
 */

export const EXIT = { ok: 0, failed: 1, usage: 2, portInUse: 3 } as const;

export type CliIo = {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Resolves with the signal name when the process is asked to stop (SIGINT / SIGTERM). */
  readonly waitForShutdown: () => Promise<string>;
  readonly fetch?: typeof fetch;
};

const HELP = `edgeloop ${VERSION}: control plane for fleets of edge cameras

Usage:
  edgeloop serve [flags]                 run the HTTP API and the embedded MQTT broker
  edgeloop devices list [--status S] [--health H] [--label key:value]... [--limit N] [--json]
  edgeloop devices get ID
  edgeloop devices enroll ID [--label key=value]...
  edgeloop devices delete ID             revoke the credential and disconnect the device
  edgeloop --help | --version

Client commands take --url URL (EDGELOOP_URL, default http://localhost:8080) and
--token TOKEN (EDGELOOP_TOKEN).

serve flags (each also an environment variable):
${describeSettings()}

Exit codes: 0 ok, 1 failed, 2 usage or configuration error, 3 port in use.
`;

class UsageError extends Error {}

type ParsedArgs = { positional: string[]; flags: Map<string, string[]>; booleans: Set<string> };

function parseArgs(argv: readonly string[], booleanFlags: readonly string[]): ParsedArgs {
  const positional: string[] = [];
  const flags = new Map<string, string[]>();
  const booleans = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    if (booleanFlags.includes(name)) {
      booleans.add(name);
      continue;
    }
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    flags.set(name, [...(flags.get(name) ?? []), value]);
  }
  return { positional, flags, booleans };
}

async function serve(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, io: CliIo) {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig({ argv, env });
  } catch (error) {
    if (error instanceof ConfigError) {
      io.err(`${error.message}\n`);
      return EXIT.usage;
    }
    throw error;
  }
  const logger = pino({ level: config.logLevel });
  const controlPlane = createControlPlane(config, { logger });
  let started: Awaited<ReturnType<typeof controlPlane.start>>;
  try {
    started = await controlPlane.start();
  } catch (error) {
    if (error instanceof PortInUseError) {
      io.err(`${error.message}\n`);
      return EXIT.portInUse;
    }
    throw error;
  }
  io.out(`edgeloop control plane ${VERSION}\n  HTTP  ${started.httpUrl}\n  MQTT  ${started.mqttUrl}\n`);
  if (started.adminToken) {
    io.out(
      `\n  Admin token (generated now, shown ONCE; only its hash is stored, so save it):\n    ${started.adminToken}\n` +
        '  Set EDGELOOP_ADMIN_TOKEN to choose your own.\n\n',
    );
  }
  const signal = await io.waitForShutdown();
  logger.info({ signal }, 'shutting down');
  await controlPlane.stop();
  return EXIT.ok;
}

type Client = { request<T>(method: string, path: string, body?: unknown): Promise<T> };

function createClient(parsed: ParsedArgs, env: Readonly<Record<string, string | undefined>>, io: CliIo): Client {
  const url = (parsed.flags.get('url')?.[0] ?? env.EDGELOOP_URL ?? 'http://localhost:8080').replace(/\/+$/, '');
  const token = parsed.flags.get('token')?.[0] ?? env.EDGELOOP_TOKEN;
  if (!token) throw new UsageError('a token is needed: --token TOKEN or EDGELOOP_TOKEN');
  const doFetch = io.fetch ?? fetch;
  return {
    async request<T>(method: string, path: string, body?: unknown): Promise<T> {
      const response = await doFetch(`${url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await response.text();
      if (!response.ok) {
        let message = text;
        try {
          const parsedError = JSON.parse(text) as { error?: { code?: string; message?: string } };
          if (parsedError.error) message = `${parsedError.error.code}: ${parsedError.error.message}`;
        } catch {
          // not JSON: show the text as is
        }
        throw new Error(`${method} ${path} failed with ${response.status}: ${message}`);
      }
      return (text.length > 0 ? JSON.parse(text) : undefined) as T;
    },
  };
}

function formatDevices(items: readonly DeviceView[]): string {
  const rows = items.map((d) => [
    d.id,
    d.status,
    d.health + (d.healthReasons.length > 0 ? ` (${d.healthReasons.join(',')})` : ''),
    d.lastSeen ? new Date(d.lastSeen).toISOString() : '-',
    Object.entries(d.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
  ]);
  const header = ['ID', 'STATUS', 'HEALTH', 'LAST SEEN', 'LABELS'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  return [header, ...rows]
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

async function devices(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, io: CliIo) {
  const parsed = parseArgs(argv, ['json']);
  const [sub, id] = parsed.positional;
  const client = createClient(parsed, env, io);
  const needId = () => {
    if (!id) throw new UsageError(`edgeloop devices ${sub} needs a device id`);
    return encodeURIComponent(id);
  };
  switch (sub) {
    case 'list': {
      const query = new URLSearchParams();
      for (const name of ['status', 'health', 'limit']) {
        const value = parsed.flags.get(name)?.[0];
        if (value !== undefined) query.set(name, value);
      }
      for (const label of parsed.flags.get('label') ?? []) query.append('label', label);
      const items: DeviceView[] = [];
      let cursor: string | null = null;
      do {
        if (cursor) query.set('cursor', cursor);
        const page: DeviceList = await client.request<DeviceList>('GET', `/api/v1/devices?${query}`);
        items.push(...page.items);
        cursor = parsed.flags.has('limit') ? null : page.nextCursor;
      } while (cursor);
      io.out(parsed.booleans.has('json') ? `${JSON.stringify(items, null, 2)}\n` : `${formatDevices(items)}\n`);
      return EXIT.ok;
    }
    case 'get': {
      const device = await client.request('GET', `/api/v1/devices/${needId()}`);
      io.out(`${JSON.stringify(device, null, 2)}\n`);
      return EXIT.ok;
    }
    case 'enroll': {
      needId();
      const labels: Record<string, string> = {};
      for (const pair of parsed.flags.get('label') ?? []) {
        const eq = pair.indexOf('=');
        if (eq <= 0) throw new UsageError(`--label takes key=value, got "${pair}"`);
        labels[pair.slice(0, eq)] = pair.slice(eq + 1);
      }
      const enrolled = await client.request<EnrollDeviceResponse>('POST', '/api/v1/devices', { id, labels });
      io.out(`${JSON.stringify(enrolled, null, 2)}\n`);
      io.err('The password is shown once; store it on the device now.\n');
      return EXIT.ok;
    }
    case 'delete': {
      await client.request('DELETE', `/api/v1/devices/${needId()}`);
      io.out(`revoked ${id}\n`);
      return EXIT.ok;
    }
    default:
      throw new UsageError(sub ? `unknown devices command "${sub}"` : 'edgeloop devices needs a command');
  }
}

/** Runs one `edgeloop` invocation and returns its exit code. */
export async function runCli(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: CliIo,
): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        io.out(HELP);
        return command === undefined ? EXIT.usage : EXIT.ok;
      case '--version':
        io.out(`${VERSION}\n`);
        return EXIT.ok;
      case 'serve':
        if (rest.includes('--help')) {
          io.out(HELP);
          return EXIT.ok;
        }
        return await serve(rest, env, io);
      case 'devices':
        return await devices(rest, env, io);
      default:
        throw new UsageError(`unknown command "${command}" (see edgeloop --help)`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`${error.message}\n`);
      return EXIT.usage;
    }
    io.err(`${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT.failed;
  }
}
