import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  COMMAND_ARGS,
  type CommandInput,
  type DeviceListQuery,
  type DeviceView,
  type EnrollDeviceResponse,
  type JsonValue,
  take,
  unwrap,
} from '@edgeloop/protocol';
import { writeAtomically } from '../tls/ca-files.ts';
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
  description:
    'With --auth cert the control plane issues an X.509 certificate (CN = ID) signed by the fleet CA\n' +
    '(edgeloop ca init): the device connects to the MQTT TLS listener with it and no password; its password\n' +
    'then serves HTTP only. The key is shown once. --out-dir writes device.crt, device.key (0600), ca.crt\n' +
    'and password (0600) there instead of printing the key and the password.',
  flags: [
    { name: 'label', value: 'KEY=VALUE', help: 'a label to set', repeatable: true },
    {
      name: 'auth',
      value: 'METHOD',
      help: 'how the device logs in on MQTT (default secret)',
      choices: ['secret', 'cert'],
    },
    { name: 'out-dir', value: 'DIR', help: 'write the credentials as files here (created 0700)', file: true },
  ],
  examples: [
    'edgeloop devices enroll cam-01 --label site=lab --label hw=rpi5',
    'edgeloop devices enroll cam-01 --json > cam-01.json',
    'edgeloop devices enroll cam-02 --auth cert --out-dir ./cam-02',
  ],
  async run({ args, client, flag, io }) {
    const labels = parsePairs(args.flags.get('label') ?? [], 'label');
    const auth = flag('auth');
    if (auth !== undefined && auth !== 'secret' && auth !== 'cert') {
      throw new UsageError(`--auth is secret or cert, got "${auth}"`);
    }
    const enrolled = await unwrap(
      client().devices.enroll({ id: args.positional[0]!, labels, ...(auth ? { auth } : {}) }),
    );
    const outDir = flag('out-dir');
    if (outDir === undefined) {
      io.out(json(enrolled));
      io.err(
        enrolled.certificate
          ? 'The password and the certificate key are shown once; store them on the device now.\n'
          : 'The password is shown once; store it on the device now.\n',
      );
      return EXIT.ok;
    }
    const files = writeCredentialFiles(outDir, enrolled);
    const { password: _password, ...credentials } = enrolled.credentials;
    io.out(
      json({
        ...enrolled,
        credentials: { ...credentials, passwordFile: files.passwordFile },
        ...(enrolled.certificate
          ? {
              certificate: {
                certFile: files.certFile,
                keyFile: files.keyFile,
                caFile: files.caFile,
                fingerprint: enrolled.certificate.fingerprint,
                notAfter: enrolled.certificate.notAfter,
              },
            }
          : {}),
      }),
    );
    io.err(`Credentials written to ${outDir}; copy them to the device.\n`);
    return EXIT.ok;
  },
};

/** Writes an enrollment's secrets as files (keys and password 0600): what the agent's config points at. */
function writeCredentialFiles(outDir: string, enrolled: EnrollDeviceResponse) {
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  const passwordFile = join(outDir, 'password');
  // Through a rename, with the mode each time: a file from an earlier enrollment is replaced, not reused.
  writeAtomically(passwordFile, `${enrolled.credentials.password}\n`, 0o600);
  if (!enrolled.certificate) return { passwordFile };
  const certFile = join(outDir, 'device.crt');
  const keyFile = join(outDir, 'device.key');
  const caFile = join(outDir, 'ca.crt');
  writeAtomically(keyFile, enrolled.certificate.key, 0o600);
  writeAtomically(certFile, enrolled.certificate.cert, 0o644);
  writeAtomically(caFile, enrolled.certificate.ca, 0o644);
  return { passwordFile, certFile, keyFile, caFile };
}

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

/** `90`, `90s`, `15m`, `24h`, `7d`: seconds (an integer). */
export function parseDurationS(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)([smhd]?)$/.exec(text.trim());
  if (!match) throw new UsageError(`--${flag} takes a duration such as 90s, 15m, 24h or 7d, got "${text}"`);
  const unit = { '': 1, s: 1, m: 60, h: 3_600, d: 86_400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Math.round(Number(match[1]) * unit);
}

const rotateCredentials: CommandSpec = {
  words: ['devices', 'rotate-credentials'],
  args: ['ID'],
  summary: 'Give a device a new secret; the old one works until the device uses the new one or the overlap ends',
  description:
    'The new secret is shown once (or written to --out-file, 0600). The old secret keeps working until the\n' +
    'device first connects with the new one, or until the overlap ends (default 24h; 0 ends it at once).\n' +
    'A connected device is sent the secret on its command topic: the agent stores it in its\n' +
    'mqtt.passwordFile and reconnects with it. --deliver insists (an offline device is an error and nothing\n' +
    'is rotated); --no-deliver only rotates. Exit code 1 when a delivery was tried and not applied.',
  flags: [
    {
      name: 'overlap',
      value: 'DURATION',
      help: 'how long the old secret keeps working (90s, 15m, 24h, 7d; default 24h)',
    },
    { name: 'deliver', help: 'send the secret to the device; refused when it is not connected' },
    { name: 'no-deliver', help: 'do not send it (install it on the device yourself)' },
    { name: 'out-file', value: 'FILE', help: 'write the new secret to FILE (0600) instead of printing it', file: true },
    { name: 'idempotency-key', value: 'KEY', help: 'a retry with the same key returns the same secret' },
  ],
  examples: [
    'edgeloop devices rotate-credentials cam-01',
    'edgeloop devices rotate-credentials cam-01 --overlap 1h --deliver',
    'edgeloop devices rotate-credentials cam-02 --no-deliver --out-file ./cam-02/password',
  ],
  async run({ args, client, flag, io, json: asJson }) {
    const id = args.positional[0]!;
    const deliver = args.booleans.has('deliver');
    const noDeliver = args.booleans.has('no-deliver');
    if (deliver && noDeliver) throw new UsageError('give --deliver or --no-deliver, not both');
    const overlap = flag('overlap');
    const key = flag('idempotency-key');
    const rotated = await unwrap(
      client().devices.rotateCredentials(id, {
        ...(overlap !== undefined ? { overlapS: parseDurationS(overlap, 'overlap') } : {}),
        ...(deliver ? { deliver: true } : noDeliver ? { deliver: false } : {}),
        ...(key !== undefined ? { idempotencyKey: key } : {}),
      }),
    );
    const outFile = flag('out-file');
    // A new file renamed over the old: mode 0600 even when FILE existed, and never half written.
    if (outFile !== undefined) writeAtomically(outFile, `${rotated.password}\n`, 0o600);
    const shown = outFile !== undefined ? { ...rotated, password: undefined, passwordFile: outFile } : rotated;
    const { delivery } = rotated;
    const applied = delivery.state === 'applied' || delivery.state === 'not-sent';
    if (asJson) io.out(json(shown));
    else {
      io.out(
        `${id}: new secret${outFile !== undefined ? ` written to ${outFile}` : `: ${rotated.password}`}\n` +
          `old secret works until ${isoTime(rotated.deadline)} or the device's first login with the new one\n` +
          `delivery: ${delivery.state}${delivery.message ? ` (${delivery.message})` : ''}\n`,
      );
    }
    if (outFile === undefined) io.err('The new secret is shown once.\n');
    return applied ? EXIT.ok : EXIT.failed;
  },
};

export const devicesGroup: GroupSpec = {
  name: 'devices',
  summary: 'Enroll, list, inspect, command, rotate the credentials of and revoke devices',
  commands: [list, get, enroll, remove, command, rotateCredentials],
  examples: [
    'edgeloop devices enroll cam-01 --label site=lab',
    'edgeloop devices list --label site=lab',
    'edgeloop devices command cam-01 ping',
  ],
};
