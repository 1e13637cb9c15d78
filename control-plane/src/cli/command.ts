import type { ApiClient } from '@edgeloop/protocol';
import {
  CLIENT_FLAGS,
  type FlagSpec,
  HELP_FLAG,
  JSON_FLAG,
  type ParsedArgs,
  parseArgs,
  UsageError,
  wantsHelp,
} from './args.ts';
import { createClient, type Env } from './client.ts';

/*
 * Commands as data: each declares its words, arguments, flags and examples once, and the parser,
 * `--help`, the top-level usage and the shell completions are all read from that declaration.
 */

export const EXIT = { ok: 0, failed: 1, usage: 2, portInUse: 3, databaseCorrupt: 4 } as const;

export type CliIo = {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Resolves with the signal name when the process is asked to stop (SIGINT / SIGTERM). */
  readonly waitForShutdown: () => Promise<string>;
  /** Calls `handler` on each reload request (SIGHUP); returns the unsubscribe. Absent: no reloads. */
  readonly onReload?: (handler: () => void) => () => void;
  readonly fetch?: typeof fetch;
  /** Whether stdout is a terminal (live redraws in `rollouts watch`). */
  readonly isTty?: boolean;
  /** Whether stderr is a terminal (progress lines of pulls and exports go there only then). */
  readonly errIsTty?: boolean;
};

export type CommandContext = {
  readonly args: ParsedArgs;
  readonly env: Env;
  readonly io: CliIo;
  /** --json was given: machine output only on stdout. */
  readonly json: boolean;
  /** The typed API client (made on first use: it needs a token). */
  client(): ApiClient;
  flag(name: string): string | undefined;
};

export type CommandSpec = {
  /** The command's words after `edgeloop` (`['rollouts', 'create']`). */
  readonly words: readonly string[];
  /** Positional arguments as shown in usage (`ID NAME`). */
  readonly args?: readonly string[];
  readonly summary: string;
  /** More text under the summary in --help. */
  readonly description?: string;
  readonly flags?: readonly FlagSpec[];
  /** Takes --url/--token (default true). */
  readonly client?: boolean;
  /** Takes --json (default true). */
  readonly json?: boolean;
  /** Parses its own argv (`serve`): the words after the command arrive as `args.positional`. */
  readonly raw?: boolean;
  readonly examples: readonly string[];
  /** Argument values offered by the completions, per position (`['ping', ...]`). */
  readonly completeArgs?: readonly (readonly string[])[];
  readonly run: (context: CommandContext) => Promise<number>;
};

export type GroupSpec = {
  readonly name: string;
  readonly summary: string;
  readonly commands: readonly CommandSpec[];
  readonly examples: readonly string[];
  /** The command run when the group's name is followed by flags or nothing (`edgeloop drift --band major`). */
  readonly defaultCommand?: string;
};

/** Every flag a command accepts, the common ones included. */
export function flagsOf(command: CommandSpec): readonly FlagSpec[] {
  return [
    ...(command.flags ?? []),
    ...(command.json === false ? [] : [JSON_FLAG]),
    ...(command.client === false ? [] : CLIENT_FLAGS),
    HELP_FLAG,
  ];
}

export function usageLine(command: CommandSpec): string {
  const required = (command.args ?? []).join(' ');
  return `edgeloop ${command.words.join(' ')}${required ? ` ${required}` : ''} [flags]`;
}

function flagLines(flags: readonly FlagSpec[]): string {
  const left = flags.map((flag) => {
    const name = flag.name === 'help' ? '-h, --help' : `--${flag.name}`;
    return flag.value ? `${name} ${flag.value}` : name;
  });
  const width = Math.max(...left.map((text) => text.length));
  return flags
    .map((flag, i) => {
      const extra = [
        flag.choices ? `one of ${flag.choices.join(', ')}` : '',
        flag.repeatable ? 'repeatable' : '',
      ].filter(Boolean);
      return `  ${left[i]!.padEnd(width)}  ${flag.help}${extra.length > 0 ? ` (${extra.join('; ')})` : ''}`;
    })
    .join('\n');
}

export function commandHelp(command: CommandSpec): string {
  return [
    `Usage: ${usageLine(command)}`,
    '',
    command.summary,
    ...(command.description ? ['', command.description] : []),
    '',
    'Flags:',
    flagLines(flagsOf(command)),
    '',
    'Examples:',
    ...command.examples.map((example) => `  ${example}`),
    '',
  ].join('\n');
}

export function groupHelp(group: GroupSpec): string {
  const width = Math.max(...group.commands.map((command) => command.words.slice(1).join(' ').length));
  return [
    `Usage: edgeloop ${group.name} COMMAND [flags]`,
    '',
    group.summary,
    '',
    'Commands:',
    ...group.commands.map((command) => `  ${command.words.slice(1).join(' ').padEnd(width)}  ${command.summary}`),
    '',
    'Examples:',
    ...group.examples.map((example) => `  ${example}`),
    '',
    `Run "edgeloop ${group.name} COMMAND --help" for a command's flags.`,
    '',
  ].join('\n');
}

/** Parses argv for `command`, answers --help, and runs it. */
export async function runCommand(command: CommandSpec, argv: readonly string[], env: Env, io: CliIo): Promise<number> {
  if (wantsHelp(argv)) {
    io.out(commandHelp(command));
    return EXIT.ok;
  }
  const name = `edgeloop ${command.words.join(' ')}`;
  const args = command.raw
    ? { positional: argv, flags: new Map<string, string[]>(), booleans: new Set<string>() }
    : parseArgs(argv, flagsOf(command), name);
  const expected = command.args ?? [];
  const optional = expected.filter((arg) => arg.startsWith('['));
  const required = expected.length - optional.length;
  if (args.positional.length < required) {
    throw new UsageError(
      `${name} needs ${expected.slice(args.positional.length, required).join(' ')} (see ${name} --help)`,
    );
  }
  if (!command.raw && args.positional.length > expected.length && !expected.some((arg) => arg.endsWith('...'))) {
    throw new UsageError(`${name}: unexpected argument "${args.positional[expected.length]}" (see ${name} --help)`);
  }
  let client: ApiClient | undefined;
  return command.run({
    args,
    env,
    io,
    json: args.booleans.has('json'),
    client: () => {
      client ??= createClient(args, env, io.fetch ?? fetch);
      return client;
    },
    flag: (flag) => args.flags.get(flag)?.[0],
  });
}

/** `edgeloop GROUP SUB ...`: the subcommand's run, or the group's help. */
export async function runGroup(group: GroupSpec, argv: readonly string[], env: Env, io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  const fallback = group.commands.find((candidate) => candidate.words[1] === group.defaultCommand);
  if (fallback && (sub === undefined || (sub.startsWith('-') && sub !== '--help' && sub !== '-h'))) {
    return runCommand(fallback, argv, env, io);
  }
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    // Without a command it is a usage error: the help goes to stderr.
    (sub === undefined ? io.err : io.out)(groupHelp(group));
    return sub === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = group.commands.find((candidate) => candidate.words[1] === sub);
  if (!command) throw new UsageError(`unknown ${group.name} command "${sub}" (see edgeloop ${group.name} --help)`);
  return runCommand(command, rest, env, io);
}
