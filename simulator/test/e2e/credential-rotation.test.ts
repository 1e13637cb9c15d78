import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApiClient, RotateCredentialsResponse, unwrap } from '@edgeloop/protocol';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ControlPlaneProcess, eventually, freePort, spawnControlPlane } from '../support.ts';

/*
 * Acceptance (issue 12 §5): credential rotation through the binaries only: `edgeloop serve`,
 * `edgeloop devices enroll|rotate-credentials|command` and `edgeloop-agent` with
 * mqtt.passwordFile. The agent stores the delivered secret and reconnects with it; the old secret
 * then fails on MQTT and HTTP Basic; a kill -9 right after and a restart log in with the stored
 * one. An offline device gets its secret with --no-deliver --out-file and logs in with it.
 * (Deadlines under an injected clock: control-plane/test/credential-rotation.test.ts.)
 */

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const BIN = {
  edgeloop: join(root, 'control-plane/bin/edgeloop.js'),
  agent: join(root, 'agent/bin/edgeloop-agent.js'),
};
const DEVICE = 'cam-rotate';

type Run = { code: number; stdout: string; stderr: string };

describe('credential rotation through edgeloop serve, edgeloop-agent and the edgeloop CLI', () => {
  const work = mkdtempSync(join(tmpdir(), 'edgeloop-rotation-e2e-'));
  const token = `rotation-${randomBytes(12).toString('hex')}`;
  const passwordFile = join(work, 'device', 'password');
  let cp: ControlPlaneProcess;
  let agent: ChildProcess | null = null;
  let agentLog = '';

  const edgeloop = (...args: string[]): Promise<Run> =>
    new Promise((done) => {
      execFile(
        process.execPath,
        [BIN.edgeloop, ...args],
        { cwd: work, env: { ...process.env, EDGELOOP_URL: cp.url, EDGELOOP_TOKEN: token, NO_COLOR: '1' } },
        (error, stdout, stderr) => {
          done({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
        },
      );
    });
  const must = async (...args: string[]): Promise<string> => {
    const result = await edgeloop(...args);
    if (result.code !== 0) throw new Error(`edgeloop ${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
    return result.stdout;
  };
  // Polled through the API (a CLI process per poll would cost more than the journey itself).
  const status = async () =>
    (await unwrap(createApiClient({ baseUrl: cp.url, token }).devices.get(DEVICE))).device.status;

  const startAgent = async () => {
    agentLog = '';
    const child = spawn(process.execPath, [BIN.agent, '--config', join(work, 'agent.json')], {
      cwd: work,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer) => {
      agentLog = `${agentLog}${chunk}`.slice(-4000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    agent = child;
    await eventually(async () => (await status()) === 'online', 30_000, 'agent online').catch((error: Error) => {
      throw new Error(`${error.message}; agent: ${agentLog}`);
    });
    return child;
  };
  const killAgent = async () => {
    const child = agent;
    agent = null;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await exited;
  };

  /** 401: refused; 404 (no such model): the device credential was accepted. */
  const http = async (password: string) =>
    (
      await fetch(`${cp.url}/api/v1/models/none/1.0.0/file`, {
        headers: { authorization: `Basic ${Buffer.from(`${DEVICE}:${password}`).toString('base64')}` },
      })
    ).status;
  /** An MQTT login as the device: 'accepted' (it takes the session over) or the refusal's code. */
  const mqttLogin = async (password: string): Promise<'accepted' | number> => {
    try {
      const client = await mqtt.connectAsync(cp.mqttUrl, {
        clientId: DEVICE,
        username: DEVICE,
        password,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      });
      await client.endAsync();
      return 'accepted';
    } catch (error) {
      return (error as { code?: number }).code ?? -1;
    }
  };
  const stored = () => readFileSync(passwordFile, 'utf8').trim();

  beforeAll(async () => {
    cp = await spawnControlPlane({
      httpPort: await freePort(),
      mqttPort: await freePort(),
      dataDir: join(work, 'cp'),
      token,
    });
    await must('devices', 'enroll', DEVICE, '--out-dir', join(work, 'device'));
    mkdirSync(join(work, 'state'), { recursive: true });
    writeFileSync(
      join(work, 'agent.json'),
      JSON.stringify({
        deviceId: DEVICE,
        mqtt: { url: cp.mqttUrl, passwordFile, keepaliveS: 5 },
        controlPlaneUrl: cp.url,
        dataDir: join(work, 'state'),
        telemetry: { intervalS: 1 },
        logLevel: 'warn',
      }),
    );
    await startAgent();
  }, 90_000);

  afterAll(async () => {
    await killAgent();
    cp?.child.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  });

  it('delivers the secret to the running agent, which stores it and logs in with it; kill -9 and a restart keep it', async () => {
    const old = stored();
    const rotated = RotateCredentialsResponse.parse(
      JSON.parse(await must('devices', 'rotate-credentials', DEVICE, '--json')),
    );
    expect(rotated.delivery).toEqual({ state: 'applied' });
    expect(stored()).toBe(rotated.password);
    expect(statSync(passwordFile).mode & 0o777).toBe(0o600);
    // The agent's new login promoted the new secret: the old one fails at once on MQTT and HTTP.
    expect(await http(old)).toBe(401);
    expect(await mqttLogin(old)).toBe(4);
    expect(await http(rotated.password)).toBe(404);

    // kill -9 right after, and a restart: the agent reads the stored secret and gets in.
    await killAgent();
    await eventually(async () => (await status()) !== 'online', 15_000, 'agent offline');
    await startAgent();
    const ping = await must('devices', 'command', DEVICE, 'ping');
    expect(ping).toContain('ping ok');
  }, 90_000);

  it('with --overlap 0 refuses the old secret at once, while the agent goes on with the new one', async () => {
    const old = stored();
    const rotated = RotateCredentialsResponse.parse(
      JSON.parse(await must('devices', 'rotate-credentials', DEVICE, '--overlap', '0', '--json')),
    );
    expect(rotated.delivery.state).toBe('applied');
    expect(await http(old)).toBe(401);
    expect(await must('devices', 'command', DEVICE, 'ping')).toContain('ping ok');
  }, 60_000);

  it('refuses --deliver for an offline device, and installs a --no-deliver --out-file secret by hand', async () => {
    await killAgent();
    await eventually(async () => (await status()) !== 'online', 15_000, 'agent offline');
    const old = stored();

    const insisted = await edgeloop('devices', 'rotate-credentials', DEVICE, '--deliver');
    expect(insisted.code).toBe(1);
    expect(insisted.stderr).toContain('409');
    expect(insisted.stderr).toContain('nothing was rotated');
    expect(await http(old)).toBe(404);

    const handed = join(work, 'handed-password');
    const printed = await edgeloop(
      'devices',
      'rotate-credentials',
      DEVICE,
      '--no-deliver',
      '--out-file',
      handed,
      '--overlap',
      '1h',
    );
    expect(printed.code).toBe(0);
    expect(printed.stdout).toContain(`new secret written to ${handed}`);
    expect(printed.stdout).toContain('delivery: not-sent');
    expect(statSync(handed).mode & 0o777).toBe(0o600);
    const next = readFileSync(handed, 'utf8').trim();
    expect(printed.stdout).not.toContain(next);
    // Both work during the overlap; the device has not used the new one yet.
    expect(await http(old)).toBe(404);
    expect(await http(next)).toBe(404);

    // The operator copies the secret into the agent's passwordFile; its first login promotes it.
    writeFileSync(passwordFile, `${next}\n`, { mode: 0o600 });
    await startAgent();
    expect(await http(old)).toBe(401);
    expect(await must('devices', 'command', DEVICE, 'ping')).toContain('ping ok');
  }, 90_000);
});
