// `npm start`: the control plane on embedded defaults plus a demo fleet, in one process.
// A composition root: it reads process.env and argv, and nothing else does.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createControlPlane, loadConfig, PortInUseError, type StartedControlPlane } from '@edgeloop/control-plane';
import { createApiClient, type SetSamplePolicyInput, unwrap } from '@edgeloop/protocol';
import { createFleet, startSummary } from '@edgeloop/simulator';
import pino from 'pino';
import { PPOCR_DET_MANIFEST_PATH, ppocrDetModelPath } from '../agent/src/vision/bundled-models.ts';

// 25 devices online in all: 24 simulated and one real agent.
const DEMO_DEVICES = 24;
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

const repoRoot = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '..');
const CAMERA_ID = 'demo-camera';

/**
 * The hard-sample policy of the real agent, set through PUT /api/v1/sample-policy for its
 * `model=ppocr-det` label before it enrolls (so it arrives in its first desired state): frames with
 * text boxes the detector is less sure of, at most 10 a minute and 20 MB a day.
 */
const DEMO_SAMPLE_POLICY: SetSamplePolicyInput = {
  selector: { labels: { model: 'ppocr-det' } },
  policy: {
    // PP-OCRv4 keeps boxes over 0.6; on these photos they score 0.9 to 1: the window takes the less sure ones.
    strategies: [{ kind: 'near-threshold', threshold: 0.85, epsilon: 0.1, tags: ['demo'] }],
    limits: { perMinute: 10, perDay: 2000, bytesPerDay: 20_000_000 },
    jpegQuality: 85,
  },
};

/**
 * One real agent beside the simulated fleet: PP-OCRv4 text detection (onnxruntime, CPU) on the
 * OpenCV sample photos in test-media/images, looping. It enrolls like any device.
 */
async function startRealAgent(started: StartedControlPlane): Promise<ChildProcess> {
  const client = createApiClient({ baseUrl: started.httpUrl, token: adminToken });
  // A previous run's camera is revoked (not_found on a fresh data dir is fine).
  const revoked = await client.devices.revoke(CAMERA_ID);
  if (!revoked.ok && revoked.error.code !== 'not_found') await unwrap(revoked);
  await unwrap(client.samples.policy.set(DEMO_SAMPLE_POLICY));
  const enrolled = await unwrap(
    client.devices.enroll({
      id: CAMERA_ID,
      labels: { demo: 'true', hardware: 'x86-cpu', site: 'demo', model: 'ppocr-det' },
    }),
  );
  const dir = path.join(dataDir, CAMERA_ID);
  mkdirSync(dir, { recursive: true });
  const configFile = path.join(dir, 'agent.json');
  writeFileSync(
    configFile,
    JSON.stringify(
      {
        deviceId: CAMERA_ID,
        mqtt: { url: started.mqttUrl, password: enrolled.credentials.password, keepaliveS: 30 },
        controlPlaneUrl: started.httpUrl,
        dataDir: dir,
        telemetry: { intervalS: 5 },
        hardware: { profile: 'x86-cpu' },
        logLevel: 'warn',
        vision: {
          source: { kind: 'images', dir: path.join(repoRoot, 'test-media/images'), loop: true, intervalMs: 500 },
          model: { path: ppocrDetModelPath(), manifestPath: PPOCR_DET_MANIFEST_PATH },
          threads: { intraOp: 1 },
          // Two still photos in a loop would read as a frozen camera: camera health is for live video.
          cameraHealth: { enabled: false },
        },
      },
      null,
      2,
    ),
    { mode: 0o600 },
  );
  const child = spawn(process.execPath, [path.join(repoRoot, 'agent/bin/edgeloop-agent.js'), '--config', configFile], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return child;
}

function banner(started: StartedControlPlane, notes: readonly string[]): string {
  const lines = [
    '',
    'edgeloop demo is running',
    '',
    `  console       ${started.httpUrl}/#token=${adminToken}`,
    ...notes.map((note) => `  note: ${note}`),
    ...(notes.length > 0 ? [''] : []),
    `  HTTP API      ${started.httpUrl}`,
    `  MQTT broker   ${started.mqttUrl}`,
    `  admin token   ${adminToken}`,
    `  data dir      ${dataDir}`,
    `  devices       ${DEMO_DEVICES} simulated (demo-*) + 1 real agent (${CAMERA_ID}): PP-OCRv4 text detection on test-media/images`,
    '',
    '  try:',
    `    curl -s -H 'authorization: Bearer ${adminToken}' ${started.httpUrl}/api/v1/fleet/summary`,
    `    curl -s -H 'authorization: Bearer ${adminToken}' '${started.httpUrl}/api/v1/devices?limit=5'`,
    `    curl -s -H 'authorization: Bearer ${adminToken}' ${started.httpUrl}/api/v1/devices/${CAMERA_ID}`,
    `    curl -sN -H 'authorization: Bearer ${adminToken}' ${started.httpUrl}/api/v1/events`,
    '',
    `  hard samples  ${CAMERA_ID} captures near-threshold text boxes (policy: edgeloop samples policy get)`,
    `    curl -s -H 'authorization: Bearer ${adminToken}' '${started.httpUrl}/api/v1/samples?limit=5'`,
    `    export EDGELOOP_URL=${started.httpUrl} EDGELOOP_TOKEN=${adminToken}`,
    '    npx edgeloop samples list --strategy near-threshold',
    '    npx edgeloop datasets create demo-hard --strategy near-threshold',
    '    npx edgeloop datasets export demo-hard@1 --format coco --out demo-hard-1.tar',
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

let agent: ChildProcess | null = null;
let stopping = false;
let stopSummary: (() => void) | undefined;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    stopSummary?.();
    process.stderr.write('\nstopping the demo fleet, the agent and the control plane...\n');
    const agentExited = agent && agent.exitCode === null ? new Promise((done) => agent?.once('exit', done)) : null;
    agent?.kill('SIGTERM');
    await Promise.all([fleet.stop().catch(() => undefined), agentExited]);
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
  agent = await startRealAgent(started);
  process.stdout.write(banner(started, notes));
  if (process.stderr.isTTY) stopSummary = startSummary(fleet, process.stderr, 2000);
} catch (error) {
  process.stderr.write(`edgeloop demo failed: ${(error as Error).message}\n`);
  await shutdown(1);
}
