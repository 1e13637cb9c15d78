import pino from 'pino';
import { Config, ConfigError, loadConfig, SETTINGS, showDefault } from '../config.ts';
import { createControlPlane, PortInUseError, VERSION } from '../control-plane.ts';
import { DatabaseCorruptError } from '../db/sqlite/integrity.ts';
import { ExternalBrokerError } from '../external-broker/external-broker.ts';
import type { FlagSpec } from './args.ts';
import { type CommandSpec, EXIT } from './command.ts';

/** serve's flags, one per setting that has one (secrets are environment-only). */
export function serveFlags(): FlagSpec[] {
  const defaults = Config.parse({}) as Record<string, unknown>;
  return SETTINGS.flatMap((setting) => {
    if (!setting.flag) return [];
    let value: unknown = defaults;
    for (const part of setting.path) value = (value as Record<string, unknown> | undefined)?.[part];
    return [
      {
        name: setting.flag.slice(2),
        value: 'VALUE',
        help: `${setting.env}${value === undefined ? '' : ` (default ${showDefault(value)})`}`,
        ...(/-(dir|keys|cert|key)$/.test(setting.flag) ? { file: true } : {}),
      },
    ];
  });
}

const envOnly = SETTINGS.filter((setting) => !setting.flag).map((setting) => setting.env);

export const serveCommand: CommandSpec = {
  words: ['serve'],
  summary: 'Run the HTTP API, the console and the embedded MQTT broker (or join an external one: --broker-url)',
  description:
    `Every flag is also an environment variable (shown beside it); flags win.\n` +
    `Environment only (secrets): ${envOnly.join(', ')}. Without EDGELOOP_ADMIN_TOKEN an admin token is\n` +
    'generated and printed once. Exit codes: 0 stopped by SIGINT/SIGTERM, 2 configuration error, 3 port in use,\n' +
    '4 the SQLite database is corrupt (restore it from a backup, or start with --integrity-check off to inspect it).\n' +
    'SIGHUP re-reads --tls-cert, --tls-key and the fleet CA (<data-dir>/ca, see edgeloop ca init) for new connections.\n' +
    'With --broker-url the embedded broker and its listeners are off: replicas share the ingest of an external MQTT 5\n' +
    'broker (shared subscription, a persistent session per --replica-id) and log in as --broker-username with\n' +
    "EDGELOOP_BROKER_PASSWORD; --broker-auth dynsec (default) provisions each device on Mosquitto's dynamic security\n" +
    '(that user must be a dynsec admin), http-hooks leaves logins to the broker calling our hooks. Exit code 1 when\n' +
    'the broker cannot be reached or refuses the control plane.',
  flags: serveFlags(),
  client: false,
  json: false,
  raw: true,
  examples: [
    'edgeloop serve',
    'edgeloop serve --http-port 8080 --mqtt-port 1883 --data-dir ./data',
    'edgeloop serve --mqtt-tls-port 8883 --tls-cert tls/server.crt --tls-key tls/server.key   # kill -HUP reloads them',
    'EDGELOOP_ADMIN_TOKEN=$(openssl rand -hex 24) edgeloop serve --trusted-keys keys/release.pub',
    'EDGELOOP_BROKER_PASSWORD=... edgeloop serve --broker-url mqtt://mosquitto:1883 --database-url postgres://db/edgeloop --replica-id cp-1',
  ],
  async run({ args, env, io }) {
    let config: ReturnType<typeof loadConfig>;
    try {
      config = loadConfig({ argv: args.positional, env });
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
      // One line, no stack: which file, what SQLite found, what to do.
      if (error instanceof DatabaseCorruptError) {
        io.err(`edgeloop: ${error.message.replace(/\s*\n\s*/g, ' ')}\n`);
        return EXIT.databaseCorrupt;
      }
      if (error instanceof ExternalBrokerError) {
        io.err(`edgeloop: ${error.message}\n`);
        return EXIT.failed;
      }
      // Found only at start (a trusted key file that is unreadable or holds a private key).
      if (error instanceof ConfigError) {
        io.err(`${error.message}\n`);
        return EXIT.usage;
      }
      throw error;
    }
    const consoleLine = config.http.consoleDir ? `  console  ${started.httpUrl}/\n` : '';
    const tlsLine = started.mqttTlsUrl ? `  MQTT TLS  ${started.mqttTlsUrl}\n` : '';
    io.out(
      `edgeloop control plane ${VERSION}\n${consoleLine}  HTTP  ${started.httpUrl}\n  MQTT  ${started.mqttUrl}${config.brokerUrl ? ' (external broker)' : ''}\n${tlsLine}`,
    );
    if (started.adminToken) {
      io.out(
        `\n  Admin token (generated now, shown ONCE; only its hash is stored, so save it):\n    ${started.adminToken}\n` +
          '  Set EDGELOOP_ADMIN_TOKEN to choose your own.\n\n',
      );
    }
    // SIGHUP: --tls-cert, --tls-key and the fleet CA are read again (the result is logged).
    const stopReloads = io.onReload?.(() => {
      void controlPlane.reloadTls().then((reloaded) => {
        if (reloaded.ok && reloaded.value === null)
          logger.info('reload requested: no TLS configured, nothing to reload');
      });
    });
    const signal = await io.waitForShutdown();
    stopReloads?.();
    logger.info({ signal }, 'shutting down');
    await controlPlane.stop();
    return EXIT.ok;
  },
};
