import {
  COMMAND_ARGS,
  type CommandInput,
  type DeviceListQuery,
  type DeviceView,
  type JsonValue,
  take,
  unwrap,
} from '@edgeloop/protocol';
import { parsePairs, UsageError } from './args.ts';
import { type CommandSpec, EXIT, type GroupSpec } from './command.ts';
import { isoTime, json, pairs, table } from './output.ts';

export function formatDevices(items: readonly DeviceView[]): string {
  return table(
    ['ID', 'STATUS', 'HEALTH', 'LAST SEEN', 'LABELS'],
    items.map((d) => [
      d.id,
      d.status,
      d.health + (d.healthReasons.length > 0 ? ` (${d.healthReasons.join(',')})` : ''),
      isoTime(d.lastSeen),
      pairs(d.labels),
    ]),
  );
}

/** A command argument's value: JSON when it parses (`5`, `true`, `{"a":1}`), else the text. */
function argValue(text: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    return text;
  }
}

const list: CommandSpec = {
  words: ['devices', 'list'],
  summary: 'List enrolled devices, filtered by status, health and labels',
  flags: [
    {
      name: 'status',
      value: 'S',
      help: 'only devices with this connection status',
      choices: ['online', 'offline', 'unknown'],
    },
    {
      name: 'health',
      value: 'H',
      help: 'only devices in this health state',
      choices: ['healthy', 'degraded', 'offline', 'unknown'],
    },
    { name: 'label', value: 'KEY=VALUE', help: 'only devices with this label; all must match', repeatable: true },
    { name: 'limit', value: 'N', help: 'at most N devices (default: every page)' },
  ],
  examples: [
    'edgeloop devices list',
    'edgeloop devices list --status online --label site=lab',
    'edgeloop devices list --health degraded --json | jq -r ".[].id"',
  ],
  async run({ args, client, flag, io, json: asJson }) {
    // One label syntax on the command line (key=value); the HTTP query spells it key:value.
    const labels = Object.entries(parsePairs(args.flags.get('label') ?? [], 'label')).map(([k, v]) => `${k}:${v}`);
    const query = {
      status: flag('status') as DeviceListQuery['status'],
      health: flag('health') as DeviceListQuery['health'],
      ...(labels.length > 0 ? { label: labels } : {}),
    };
    const limit = flag('limit');
    // --limit is one page of that size (the server checks it); without it, every page.
    const items: readonly DeviceView[] =
      limit !== undefined
        ? (await unwrap(client().devices.list({ ...query, limit: Number(limit) }))).items
        : await take(client().devices.each(query));
    io.out(asJson ? json(items) : `${formatDevices(items)}\n`);
    return EXIT.ok;
  },
};

const get: CommandSpec = {
  words: ['devices', 'get'],
  args: ['ID'],
  summary: 'Show a device: its view, latest telemetry, reported and desired state (JSON)',
  examples: ['edgeloop devices get cam-01', 'edgeloop devices get cam-01 --json | jq .reported'],
  async run({ args, client, io }) {
    io.out(json(await unwrap(client().devices.get(args.positional[0]!))));
    return EXIT.ok;
  },
};

const enroll: CommandSpec = {
  words: ['devices', 'enroll'],
  args: ['ID'],
  summary: 'Enroll a device and print its MQTT credentials (the password is shown once)',
  flags: [{ name: 'label', value: 'KEY=VALUE', help: 'a label to set', repeatable: true }],
  examples: [
    'edgeloop devices enroll cam-01 --label site=lab --label hw=rpi5',
    'edgeloop devices enroll cam-01 --json > cam-01.json',
  ],
  async run({ args, client, io }) {
    const labels = parsePairs(args.flags.get('label') ?? [], 'label');
    const enrolled = await unwrap(client().devices.enroll({ id: args.positional[0]!, labels }));
    io.out(json(enrolled));
    io.err('The password is shown once; store it on the device now.\n');
    return EXIT.ok;
  },
};

const remove: CommandSpec = {
  words: ['devices', 'delete'],
  args: ['ID'],
  summary: 'Revoke the device credential and disconnect it',
  examples: ['edgeloop devices delete cam-01'],
  async run({ args, client, io, json: asJson }) {
    const id = args.positional[0]!;
    await unwrap(client().devices.revoke(id));
    io.out(asJson ? json({ revoked: id }) : `revoked ${id}\n`);
    return EXIT.ok;
  },
};

const command: CommandSpec = {
  words: ['devices', 'command'],
  args: ['ID', 'NAME'],
  summary: 'Send a command to a connected device and show its reply',
  description:
    `Known commands: ${Object.keys(COMMAND_ARGS).join(', ')}. Argument values are JSON when they parse\n` +
    '(numbers, true/false, objects), text otherwise. Exit code 1 when the device answers with an error,\n' +
    'is not connected, or does not answer in time.',
  flags: [
    { name: 'arg', value: 'KEY=VALUE', help: 'a command argument', repeatable: true },
    { name: 'timeout', value: 'S', help: 'seconds to wait for the reply (default 10)' },
  ],
  completeArgs: [[], Object.keys(COMMAND_ARGS)],
  examples: [
    'edgeloop devices command cam-01 ping',
    'edgeloop devices command cam-01 set-telemetry-interval --arg seconds=5',
    'edgeloop devices command cam-01 reload-config --timeout 30 --json',
    'edgeloop devices command cam-01 capture --arg frames=3',
  ],
  async run({ args, client, flag, io, json: asJson }) {
    const [id, name] = args.positional as [string, string];
    const argsObject = Object.fromEntries(
      Object.entries(parsePairs(args.flags.get('arg') ?? [], 'arg')).map(([key, value]) => [key, argValue(value)]),
    );
    const timeout = flag('timeout');
    let timeoutMs: number | undefined;
    if (timeout !== undefined) {
      const seconds = Number(timeout);
      if (!Number.isFinite(seconds) || seconds < 0.1 || seconds > 600) {
        throw new UsageError(`--timeout takes seconds between 0.1 and 600, got "${timeout}"`);
      }
      timeoutMs = Math.round(seconds * 1000);
    }
    // The name goes as typed: the control plane refuses an unknown one with its list (422).
    const { reply } = await unwrap(
      client().devices.command(id, {
        name: name as CommandInput['name'],
        args: argsObject,
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      }),
    );
    if (asJson) io.out(json(reply));
    else if (reply.ok)
      io.out(reply.data === undefined ? `${id}: ${name} ok\n` : `${id}: ${name} ok\n${json(reply.data)}`);
    else io.out(`${id}: ${name} failed: ${reply.error.code}: ${reply.error.message}\n`);
    return reply.ok ? EXIT.ok : EXIT.failed;
  },
};

export const devicesGroup: GroupSpec = {
  name: 'devices',
  summary: 'Enroll, list, inspect, command and revoke devices',
  commands: [list, get, enroll, remove, command],
  examples: [
    'edgeloop devices enroll cam-01 --label site=lab',
    'edgeloop devices list --label site=lab',
    'edgeloop devices command cam-01 ping',
  ],
};
