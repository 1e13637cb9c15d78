// Composition root of the `edgeloop` command: the only reader of process.env and argv.
import { runCli } from './cli.ts';

const waitForShutdown = () =>
  new Promise<string>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      resolve(signal);
      // A second signal while shutting down stops at once.
      process.once('SIGINT', () => process.exit(130));
      process.once('SIGTERM', () => process.exit(143));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });

// SIGHUP asks `edgeloop serve` to re-read its TLS certificates (instead of Node's default: exit).
const onReload = (handler: () => void) => {
  process.on('SIGHUP', handler);
  return () => {
    process.off('SIGHUP', handler);
  };
};

process.exitCode = await runCli(process.argv.slice(2), process.env, {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  waitForShutdown,
  onReload,
  isTty: process.stdout.isTTY === true,
  errIsTty: process.stderr.isTTY === true,
});
