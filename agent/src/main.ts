import { pino } from 'pino';
import { createAgent } from './agent.ts';
import { formatConfigProblems, loadConfig } from './config.ts';
import { runEvalCli } from './eval/eval-cli.ts';
import { AGENT_VERSION } from './version.ts';
import { runDetectCli } from './vision/detect-cli.ts';
import { createVision } from './vision/vision.ts';

/*
 * Composition root of `edgeloop-agent` (the only reader of process.env).
 *
 *   edgeloop-agent --config agent.json     run the agent
 *   edgeloop-agent detect ...              the vision pipeline's offline detector (vision/detect-cli.ts)
 *   edgeloop-agent eval ...                a model (and its champion) on a labelled dataset export (eval/eval-cli.ts)
 *
 * Exit codes: 0 clean stop (SIGINT/SIGTERM), 1 runtime failure, 2 usage or config error (every
 * config problem is printed on its own line).
 */

const USAGE = `edgeloop-agent ${AGENT_VERSION}: the edgeloop device agent

Usage:
  edgeloop-agent --config <agent.json>    run the agent
  edgeloop-agent detect [options]         run the vision detector on files (see: detect --help)
  edgeloop-agent eval [options]           evaluate a model on a labelled dataset export (see: eval --help)
  edgeloop-agent --help | --version

Environment overrides (win over the file):
  EDGELOOP_DEVICE_ID, EDGELOOP_MQTT_URL, EDGELOOP_MQTT_USERNAME, EDGELOOP_MQTT_PASSWORD,
  EDGELOOP_MQTT_PASSWORD_FILE, EDGELOOP_MQTT_CERT_FILE, EDGELOOP_MQTT_KEY_FILE,
  EDGELOOP_MQTT_CA_FILE, EDGELOOP_CONTROL_PLANE_URL, EDGELOOP_DATA_DIR,
  EDGELOOP_TELEMETRY_INTERVAL_S, EDGELOOP_LOG_LEVEL

Exit codes: 0 stopped cleanly, 1 runtime failure, 2 usage or config error.
`;

type ParsedArgs = { help: boolean; version: boolean; configPath?: string; error?: string };

function parseArgs(argv: readonly string[]): ParsedArgs {
  const parsed: ParsedArgs = { help: false, version: false };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') parsed.help = true;
    else if (arg === '--version' || arg === '-v') parsed.version = true;
    else if (arg === '--config' || arg === '-c') {
      const value = argv[i + 1];
      if (value === undefined || value.startsWith('-')) return { ...parsed, error: `${arg} needs a file path` };
      parsed.configPath = value;
      i += 1;
    } else if (arg.startsWith('--config=')) parsed.configPath = arg.slice('--config='.length);
    else return { ...parsed, error: `unknown argument: ${arg}` };
  }
  return parsed;
}

async function main(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Promise<number> {
  if (argv[0] === 'detect') return runDetectCli(argv.slice(1), { env });
  if (argv[0] === 'eval') return runEvalCli(argv.slice(1), { env });
  const args = parseArgs(argv);
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.version) {
    process.stdout.write(`${AGENT_VERSION}\n`);
    return 0;
  }
  if (args.error) {
    process.stderr.write(`edgeloop-agent: ${args.error}\n\n${USAGE}`);
    return 2;
  }
  const configPath = args.configPath;
  const load = () => (configPath === undefined ? loadConfig({ env }) : loadConfig({ filePath: configPath, env }));
  const loaded = load();
  if (!loaded.ok) {
    process.stderr.write(`edgeloop-agent: ${loaded.error.message}:\n${formatConfigProblems(loaded.error.problems)}\n`);
    return 2;
  }
  const config = loaded.value;
  const logger = pino({ level: config.logLevel, base: { service: 'edgeloop-agent' } });

  let agent: ReturnType<typeof createAgent>;
  try {
    agent = createAgent({
      config,
      logger,
      reloadConfig: load,
      createVision,
      ...(env.PATH !== undefined ? { searchPath: env.PATH } : {}),
      setLogLevel: (level) => {
        logger.level = level;
      },
    });
    await agent.start();
  } catch (error) {
    logger.fatal({ err: error }, 'agent failed to start');
    return 1;
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting at once');
        resolve(1);
        return;
      }
      stopping = true;
      logger.info({ signal }, 'stopping');
      agent.stop({ graceful: true }).then(
        () => resolve(0),
        (error: unknown) => {
          logger.error({ err: error }, 'stop failed');
          resolve(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

process.exitCode = await main(process.argv.slice(2), process.env);
// Whatever still holds the event loop (a stuck socket) must not keep a stopped agent alive.
setTimeout(() => process.exit(), 100).unref();
