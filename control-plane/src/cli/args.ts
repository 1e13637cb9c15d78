/*
 * Parsing of one command's argv against its declared flags. A flag spec is the single source of
 * the parser, the --help text and the shell completions.
 */

/** A mistake in how the command was called: exit code 2 and the message on stderr. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export type FlagSpec = {
  readonly name: string;
  /** The value's placeholder (`S`, `KEY=VALUE`, `FILE`); a flag without one is a boolean. */
  readonly value?: string;
  readonly help: string;
  readonly repeatable?: boolean;
  /** Completes file names in the shell completions. */
  readonly file?: boolean;
  /** Fixed choices, for help and completions. */
  readonly choices?: readonly string[];
};

export type ParsedArgs = {
  readonly positional: readonly string[];
  readonly flags: ReadonlyMap<string, readonly string[]>;
  readonly booleans: ReadonlySet<string>;
};

export const HELP_FLAG: FlagSpec = { name: 'help', help: 'show this help and exit' };
export const JSON_FLAG: FlagSpec = { name: 'json', help: 'machine-readable JSON on stdout (messages go to stderr)' };
export const CLIENT_FLAGS: readonly FlagSpec[] = [
  { name: 'url', value: 'URL', help: 'control plane address (EDGELOOP_URL, default http://localhost:8080)' },
  { name: 'token', value: 'TOKEN', help: 'API token (EDGELOOP_TOKEN)' },
];

/** Whether argv asks for help (`--help` or `-h` anywhere before a `--`). */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const arg of argv) {
    if (arg === '--') return false;
    if (arg === '--help' || arg === '-h') return true;
  }
  return false;
}

/** Parses argv (after the command words) against `specs`; unknown flags are usage errors. */
export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[], command: string): ParsedArgs {
  const byName = new Map(specs.map((spec) => [spec.name, spec]));
  const positional: string[] = [];
  const flags = new Map<string, string[]>();
  const booleans = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--') || arg === '--') {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const spec = byName.get(name);
    if (!spec) throw new UsageError(`unknown flag --${name} for ${command} (see ${command} --help)`);
    if (spec.value === undefined) {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`);
      booleans.add(name);
      continue;
    }
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined || (eq === -1 && value.startsWith('--'))) {
      throw new UsageError(`--${name} needs a value: --${name} ${spec.value}`);
    }
    if (spec.choices && !spec.choices.includes(value)) {
      throw new UsageError(`--${name} is one of ${spec.choices.join(', ')}, got "${value}"`);
    }
    const previous = flags.get(name) ?? [];
    if (previous.length > 0 && !spec.repeatable) throw new UsageError(`--${name} given twice`);
    flags.set(name, [...previous, value]);
  }
  return { positional, flags, booleans };
}

/**
 * `key=value` pairs (labels, selectors, command arguments): the one syntax every command uses.
 * `key:value` is refused with a hint, since older releases took it for `devices list --label`.
 */
export function parsePairs(pairs: readonly string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      const colon = pair.indexOf(':');
      const hint = colon > 0 ? `; use ${pair.slice(0, colon)}=${pair.slice(colon + 1)}` : '';
      throw new UsageError(`--${flag} takes key=value, got "${pair}"${hint}`);
    }
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}
