import { runCli } from './cli.ts';

// Composition root of `edgeloop-image`: the only place that touches process.
process.exitCode = await runCli({
  argv: process.argv.slice(2),
  stdout: (line) => process.stdout.write(`${line}\n`),
  stderr: (line) => process.stderr.write(`${line}\n`),
  clock: { now: () => Date.now() },
});
