// `npm start`: the control plane on embedded defaults plus a demo fleet, in one process.
// A composition root: it reads process.env and argv, and nothing else does.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createControlPlane, loadConfig, PortInUseError, type StartedControlPlane } from '@edgeloop/control-plane';
import { createFleet, startSummary } from '@edgeloop/simulator';
import pino from 'pino';

const DEMO_DEVICES = Number(process.env.EDGELOOP_DEMO_DEVICES ?? 25);
const dataDir = path.resolve(process.env.EDGELOOP_DATA_DIR ?? 'data');
const logLevel = (process.env.EDGELOOP_LOG_LEVEL ?? 'warn') as 'warn';
// A fresh admin token each run, printed below; it replaces the previous demo token.
const adminToken = process.env.EDGELOOP_ADMIN_TOKEN ?? `demo-${randomBytes(24).toString('base64url')}`;

async function startControlPlane() {
  let httpPort = Number(process.env.EDGELOOP_HTTP_PORT ?? 8080);
  let mqttPort = Number(process.env.EDGELOOP_MQTT_PORT ?? 1883);
  const notes: string[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const config = loadConfig({
      env: process.env,
      overrides: { httpPort, mqttPort, host: process.env.EDGELOOP_HOST ?? '127.0.0.1', dataDir, adminToken, logLevel },
    });
    const cp = createControlPlane(config, { logger: pino({ level: logLevel }) });
    try {
      const started = await cp.start();
      return { cp, started, notes };
    } catch (error) {
      if (!(error instanceof PortInUseError)) throw error;
      notes.push(`${error.message}: using a free port instead`);
      if (error.flag === '--mqtt-port') mqttPort = 0;
      else httpPort = 0;
    }
  }
  throw new Error('could not find free ports for the control plane');
}

function banner(started: StartedControlPlane, notes: readonly string[]): string {
  const lines = [
    '',
    'edgeloop demo is running',
    '',
    ...notes.map((note) => `  note: ${note}`),
    ...(notes.length > 0 ? [''] : []),
    `  HTTP API      ${started.httpUrl}`,
    `  MQTT broker   ${started.mqttUrl}`,
    `  admin token   ${adminToken}`,
    `  data dir      ${dataDir}`,
    '',
    '  try:',
    `    curl -s -H 'authorization: Bearer ${adminToken}' ${started.httpUrl}/api/v1/fleet/summary`,
    `    curl -s -H 'authorization: Bearer ${adminToken}' '${started.httpUrl}/api/v1/devices?limit=5'`,
    `    curl -sN -H 'authorization: Bearer ${adminToken}' ${started.httpUrl}/api/v1/events`,
    '',
    '  Ctrl-C stops everything.',
    '',
  ];
  return lines.join('\n');
}

const { cp, started, notes } = await startControlPlane();
const fleet = createFleet({
  controlPlaneUrl: started.httpUrl,
  token: adminToken,
  devices: DEMO_DEVICES,
  prefix: 'demo',
  mqttUrl: started.mqttUrl,
  keepaliveS: 30,
  telemetryIntervalS: 5,
  cameraFps: 15,
  outboxMaxBytes: 1024 * 1024,
  connectRate: 100,
  labels: { demo: 'true' },
});

let stopping = false;
let stopSummary: (() => void) | undefined;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    stopSummary?.();
    process.stderr.write('\nstopping the demo fleet and the control plane...\n');
    await fleet.stop().catch(() => undefined);
    await cp.stop().catch(() => undefined);
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

try {
  await fleet.enroll();
  await fleet.start();
  await fleet.waitFor((stats) => stats.connected === DEMO_DEVICES, 30_000);
  process.stdout.write(banner(started, notes));
  if (process.stderr.isTTY) stopSummary = startSummary(fleet, process.stderr, 2000);
} catch (error) {
  process.stderr.write(`edgeloop demo failed: ${(error as Error).message}\n`);
  await shutdown(1);
}
