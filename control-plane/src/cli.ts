import { ApiRequestError } from '@edgeloop/protocol';
import { UsageError } from './cli/args.ts';
import { caGroup } from './cli/ca.ts';
import { describeFailure } from './cli/client.ts';
import { type CliIo, type CommandSpec, EXIT, type GroupSpec, runCommand, runGroup, usageLine } from './cli/command.ts';
import { type CommandTree, createCompletionCommand } from './cli/completion.ts';
import { datasetsGroup } from './cli/datasets.ts';
import { devicesGroup } from './cli/devices.ts';
import { driftGroup } from './cli/drift.ts';
import { fleetCommand } from './cli/fleet.ts';
import { modelsGroup } from './cli/models.ts';
import { retrainingGroup } from './cli/retraining.ts';
import { rolloutsGroup } from './cli/rollouts.ts';
import { samplesGroup } from './cli/samples.ts';
import { serveCommand } from './cli/serve.ts';
import { describeSettings } from './config.ts';
import { VERSION } from './control-plane.ts';

/*
 * The `edgeloop` command. main.ts hands it argv, the environment and the process's streams;
 * everything here is testable without a process of its own. Each command group lives in cli/,
 * declared as data (words, flags, examples) that the parser, --help and completions share.
 *
 * Exit codes: 0 done; 1 failed (an API error, an unreachable control plane, a crash);
 * 2 usage or configuration error; 3 a port is in use; 4 (serve) the SQLite database is corrupt.
 */

export { type CliIo, EXIT } from './cli/command.ts';

const GROUPS: readonly GroupSpec[] = [
  devicesGroup,
  modelsGroup,
  rolloutsGroup,
  samplesGroup,
  datasetsGroup,
  driftGroup,
  retrainingGroup,
  caGroup,
];
const completionCommand: CommandSpec = createCompletionCommand(() => TREE);
const COMMANDS: readonly CommandSpec[] = [serveCommand, fleetCommand, completionCommand];
const TREE: CommandTree = { groups: GROUPS, commands: COMMANDS };

export function commandTree(): CommandTree {
  return TREE;
}

function help(): string {
  const lines = [
    ...COMMANDS.filter((command) => command !== completionCommand),
    ...GROUPS.flatMap((group) => group.commands),
    completionCommand,
  ].map((command) => [usageLine(command), command.summary] as const);
  const width = Math.max(...lines.map(([usage]) => usage.length));
  return `edgeloop ${VERSION}: control plane for fleets of edge cameras

Usage:
${lines.map(([usage, summary]) => `  ${usage.padEnd(width)}  ${summary}`).join('\n')}
  edgeloop --help | --version

Every command has --help with examples (edgeloop rollouts create --help). Client commands take
--url URL (EDGELOOP_URL, default http://localhost:8080), --token TOKEN (EDGELOOP_TOKEN) and --json
(machine-readable output on stdout). Labels and selectors are always key=value.

serve flags (each also an environment variable):
${describeSettings()}

Exit codes: 0 ok, 1 failed (API error, control plane unreachable), 2 usage or configuration error,
3 port in use, 4 the database is corrupt (serve).
`;
}

/** Runs one `edgeloop` invocation and returns its exit code. */
export async function runCli(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: CliIo,
): Promise<number> {
  const [name, ...rest] = argv;
  try {
    switch (name) {
      case undefined:
        io.err(help());
        return EXIT.usage;
      case '--help':
      case '-h':
      case 'help': {
        // `edgeloop help rollouts create` is `edgeloop rollouts create --help`.
        if (name === 'help' && rest.length > 0) return await runCli([...rest, '--help'], env, io);
        io.out(help());
        return EXIT.ok;
      }
      case '--version':
        io.out(`${VERSION}\n`);
        return EXIT.ok;
    }
    const group = GROUPS.find((candidate) => candidate.name === name);
    if (group) return await runGroup(group, rest, env, io);
    const command = COMMANDS.find((candidate) => candidate.words[0] === name);
    if (command) return await runCommand(command, rest, env, io);
    throw new UsageError(`unknown command "${name}" (see edgeloop --help)`);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`edgeloop: ${error.message}\n`);
      return EXIT.usage;
    }
    if (error instanceof ApiRequestError) {
      io.err(`edgeloop: ${describeFailure(error.failure)}\n`);
      return EXIT.failed;
    }
    io.err(`edgeloop: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT.failed;
  }
}
