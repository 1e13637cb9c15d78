import { openAsBlob, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type {
  DeviceList,
  DeviceView,
  EnrollDeviceResponse,
  ModelList,
  ModelSummary,
  RolloutDryRun,
  RolloutList,
  RolloutView,
} from '@edgeloop/protocol';
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
  edgeloop models list [--name N] [--json]
  edgeloop models get NAME VERSION
  edgeloop models upload --release release.json --model model.onnx
                                         register a release signed with edgeloop-image sign
  edgeloop rollouts list [--status S] [--json]
  edgeloop rollouts get ID | events ID | devices ID
  edgeloop rollouts create --spec spec.json [--dry-run]
  edgeloop rollouts create --model NAME@VERSION [--selector key=value]... [--dry-run]
  edgeloop rollouts pause|resume|abort|promote ID [--reason TEXT]
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
    // Found only at start (a trusted key file that is unreadable or holds a private key).
    if (error instanceof ConfigError) {
      io.err(`${error.message}\n`);
      return EXIT.usage;
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

type Client = {
  /** A JSON request (body as JSON), or a multipart one when the body is FormData. */
  request<T>(method: string, path: string, body?: unknown): Promise<T>;
};

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
          ...(body !== undefined && !(body instanceof FormData) ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: body instanceof FormData ? body : JSON.stringify(body) } : {}),
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

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  return [header, ...rows]
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function formatModels(items: readonly ModelSummary[]): string {
  return table(
    ['ID', 'SHA256', 'SIZE', 'COUNTER', 'ADAPTER', 'EXPIRES'],
    items.map((m) => [
      m.id,
      m.sha256.slice(0, 12),
      String(m.sizeBytes),
      String(m.releaseCounter),
      m.adapter,
      new Date(m.expiresAt).toISOString(),
    ]),
  );
}

function formatRollouts(items: readonly RolloutView[]): string {
  return table(
    ['ID', 'MODEL', 'STATUS', 'STAGE', 'DEVICES', 'LAST VERDICT'],
    items.map((r) => [
      r.id,
      r.modelId,
      r.status,
      r.stage ?? '-',
      Object.entries(r.counts)
        .map(([state, n]) => `${state}=${n}`)
        .join(','),
      r.lastVerdict ? `${r.lastVerdict.verdict}: ${r.lastVerdict.reason}` : '-',
    ]),
  );
}

async function models(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, io: CliIo) {
  const parsed = parseArgs(argv, ['json']);
  const [sub, name, version] = parsed.positional;
  const client = createClient(parsed, env, io);
  switch (sub) {
    case 'list': {
      const query = new URLSearchParams();
      const only = parsed.flags.get('name')?.[0];
      if (only) query.set('name', only);
      const items: ModelSummary[] = [];
      let cursor: string | null = null;
      do {
        if (cursor) query.set('cursor', cursor);
        const page: ModelList = await client.request<ModelList>('GET', `/api/v1/models?${query}`);
        items.push(...page.items);
        cursor = page.nextCursor;
      } while (cursor);
      io.out(parsed.booleans.has('json') ? `${JSON.stringify(items, null, 2)}\n` : `${formatModels(items)}\n`);
      return EXIT.ok;
    }
    case 'get': {
      if (!name || !version) throw new UsageError('edgeloop models get needs NAME and VERSION');
      const model = await client.request(
        'GET',
        `/api/v1/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}`,
      );
      io.out(`${JSON.stringify(model, null, 2)}\n`);
      return EXIT.ok;
    }
    case 'upload': {
      const release = parsed.flags.get('release')?.[0];
      const model = parsed.flags.get('model')?.[0];
      if (!release || !model) throw new UsageError('edgeloop models upload needs --release FILE and --model FILE');
      const form = new FormData();
      form.append('release', readFileSync(release, 'utf8'));
      // Streamed from disk, not read into memory.
      form.append('model', await openAsBlob(model), basename(model));
      const registered = await client.request<ModelSummary>('POST', '/api/v1/models', form);
      io.out(`${JSON.stringify(registered, null, 2)}\n`);
      return EXIT.ok;
    }
    default:
      throw new UsageError(sub ? `unknown models command "${sub}"` : 'edgeloop models needs a command');
  }
}

async function rollouts(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, io: CliIo) {
  const parsed = parseArgs(argv, ['json', 'dry-run']);
  const [sub, id] = parsed.positional;
  const client = createClient(parsed, env, io);
  const needId = () => {
    if (!id) throw new UsageError(`edgeloop rollouts ${sub} needs a rollout id`);
    return encodeURIComponent(id);
  };
  switch (sub) {
    case 'list': {
      const query = new URLSearchParams();
      const status = parsed.flags.get('status')?.[0];
      if (status) query.set('status', status);
      const page = await client.request<RolloutList>('GET', `/api/v1/rollouts?${query}`);
      io.out(
        parsed.booleans.has('json') ? `${JSON.stringify(page.items, null, 2)}\n` : `${formatRollouts(page.items)}\n`,
      );
      return EXIT.ok;
    }
    case 'get':
    case 'events':
    case 'devices': {
      const path = `/api/v1/rollouts/${needId()}${sub === 'get' ? '' : `/${sub}?limit=1000`}`;
      io.out(`${JSON.stringify(await client.request('GET', path), null, 2)}\n`);
      return EXIT.ok;
    }
    case 'create': {
      const specFile = parsed.flags.get('spec')?.[0];
      let spec: Record<string, unknown>;
      if (specFile) {
        spec = JSON.parse(readFileSync(specFile, 'utf8')) as Record<string, unknown>;
      } else {
        const modelId = parsed.flags.get('model')?.[0];
        if (!modelId) throw new UsageError('edgeloop rollouts create needs --spec FILE or --model NAME@VERSION');
        const labels: Record<string, string> = {};
        for (const pair of parsed.flags.get('selector') ?? []) {
          const eq = pair.indexOf('=');
          if (eq <= 0) throw new UsageError(`--selector takes key=value, got "${pair}"`);
          labels[pair.slice(0, eq)] = pair.slice(eq + 1);
        }
        spec = { modelId, selector: { labels } };
      }
      const dryRun = parsed.booleans.has('dry-run');
      const result = await client.request<RolloutView | RolloutDryRun>('POST', '/api/v1/rollouts', {
        ...spec,
        ...(dryRun ? { dryRun: true } : {}),
      });
      io.out(`${JSON.stringify(result, null, 2)}\n`);
      return EXIT.ok;
    }
    case 'pause':
    case 'resume':
    case 'abort':
    case 'promote': {
      const reason = parsed.flags.get('reason')?.[0];
      const rollout = await client.request<RolloutView>(
        'POST',
        `/api/v1/rollouts/${needId()}/${sub}`,
        reason ? { reason } : undefined,
      );
      io.out(`${formatRollouts([rollout])}\n`);
      return EXIT.ok;
    }
    default:
      throw new UsageError(sub ? `unknown rollouts command "${sub}"` : 'edgeloop rollouts needs a command');
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
      case 'models':
        return await models(rest, env, io);
      case 'rollouts':
        return await rollouts(rest, env, io);
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
