import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../support.ts';

/*
 * Acceptance (issue 12 §5), the operator's journey with the real binaries: `edgeloop ca init`,
 * `edgeloop ca server-cert`, `edgeloop serve` with --mqtt-tls-port/--tls-cert/--tls-key,
 * `edgeloop devices enroll --auth cert --out-dir` over HTTPS (the CLI trusting the fleet CA through
 * NODE_EXTRA_CA_CERTS), then the real agent connecting with its certificate. SIGHUP swaps the server
 * certificate (a bad one is refused and the old one stays); revocation disconnects the agent and
 * refuses its certificate. The refusals of other certificates (another CN, self-signed, another CA)
 * are control-plane/test/tls.test.ts.
 */

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const edgeloop = join(root, 'control-plane/bin/edgeloop.js');
const edgeloopAgent = join(root, 'agent/bin/edgeloop-agent.js');

type Run = { readonly code: number | null; readonly out: string; readonly err: string };

function run(bin: string, args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => done({ code, out, err }));
  });
}

const mode = (path: string) => statSync(path).mode & 0o777;
const fingerprintOfFile = (path: string) =>
  createHash('sha256')
    .update(new X509Certificate(readFileSync(path)).raw)
    .digest('hex');

describe('TLS and X.509 device identity with the real binaries', () => {
  const work = mkdtempSync(join(tmpdir(), 'edgeloop-tls-journey-'));
  const dataDir = join(work, 'data');
  const tlsDir = join(work, 'tls');
  const camDir = join(work, 'cam-x');
  const token = `tls-${createHash('sha256').update(work).digest('hex').slice(0, 32)}`;
  const caFile = join(dataDir, 'ca', 'ca.crt');
  let serve: ChildProcess;
  let agent: ChildProcess | null = null;
  let serveLog = '';
  let agentLog = '';
  let httpUrl = '';
  let mqttTlsUrl = '';

  const cli = (...args: string[]) =>
    run(edgeloop, args, { EDGELOOP_URL: httpUrl, EDGELOOP_TOKEN: token, NODE_EXTRA_CA_CERTS: caFile });

  /** A GET over HTTPS trusting the fleet CA alone. */
  const get = (path: string): Promise<{ status: number; body: string }> =>
    new Promise((done, reject) => {
      const req = httpsRequest(
        new URL(path, httpUrl),
        { ca: readFileSync(caFile), headers: { authorization: `Bearer ${token}` } },
        (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => {
            body += chunk.toString();
          });
          res.on('end', () => done({ status: res.statusCode ?? 0, body }));
        },
      );
      req.once('error', reject);
      req.end();
    });

  /** The sha256 of the certificate a new connection to the MQTT TLS listener is shown. */
  const presented = (): Promise<string> =>
    new Promise((done, reject) => {
      const url = new URL(mqttTlsUrl);
      const socket = tlsConnect({ host: url.hostname, port: Number(url.port), ca: readFileSync(caFile) }, () => {
        const fingerprint = createHash('sha256').update(socket.getPeerCertificate().raw).digest('hex');
        socket.destroy();
        done(fingerprint);
      });
      socket.once('error', reject);
    });

  const deviceStatus = async () => {
    const answer = await get('/api/v1/devices/cam-x');
    return answer.status === 200 ? (JSON.parse(answer.body) as { device: { status: string } }).device.status : null;
  };
  const authFailures = async (reason: string) => {
    const metrics = (await get('/metrics')).body;
    const line = metrics
      .split('\n')
      .find((row) => row.startsWith(`edgeloop_mqtt_auth_failures_total{reason="${reason}"}`));
    return line ? Number(line.split(' ').pop()) : 0;
  };

  beforeAll(async () => {
    mkdirSync(work, { recursive: true });
  });

  afterAll(async () => {
    agent?.kill('SIGKILL');
    serve?.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  });

  it('ca init creates the fleet CA under the data dir with a 0600 key', async () => {
    const first = await run(edgeloop, ['ca', 'init', '--data-dir', dataDir, '--json']);
    expect(first.code).toBe(0);
    const created = JSON.parse(first.out) as { certPath: string; keyPath: string; fingerprint: string };
    expect(mode(created.keyPath)).toBe(0o600);
    expect(new X509Certificate(readFileSync(created.certPath)).ca).toBe(true);
    // The refusal without --force and --force itself: control-plane/src/cli/ca.test.ts (in process).
  });

  it('ca server-cert writes a server certificate for the given names, signed by the fleet CA', async () => {
    const issued = await run(edgeloop, [
      'ca',
      'server-cert',
      '127.0.0.1',
      'localhost',
      '--data-dir',
      dataDir,
      '--out-dir',
      tlsDir,
    ]);
    expect(issued.code).toBe(0);
    const certificate = new X509Certificate(readFileSync(join(tlsDir, 'server.crt')));
    expect(certificate.subjectAltName).toBe('IP Address:127.0.0.1, DNS:localhost');
    expect(certificate.checkIssued(new X509Certificate(readFileSync(caFile)))).toBe(true);
    expect(mode(join(tlsDir, 'server.key'))).toBe(0o600);
  });

  it('serve answers HTTPS and opens the MQTT TLS listener; the CLI trusts the CA through NODE_EXTRA_CA_CERTS', async () => {
    serve = spawn(
      process.execPath,
      [
        edgeloop,
        'serve',
        ...['--data-dir', dataDir, '--host', '127.0.0.1', '--http-port', '0', '--mqtt-port', '0'],
        ...['--mqtt-tls-port', '0', '--tls-cert', join(tlsDir, 'server.crt'), '--tls-key', join(tlsDir, 'server.key')],
      ],
      {
        env: { ...process.env, EDGELOOP_ADMIN_TOKEN: token, EDGELOOP_LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const keep = (chunk: Buffer) => {
      serveLog += chunk.toString();
    };
    serve.stdout?.on('data', keep);
    serve.stderr?.on('data', keep);
    await eventually(
      () => {
        if (serve.exitCode !== null) throw new Error(`serve exited ${serve.exitCode}: ${serveLog}`);
        const http = /HTTP {2}(https:\/\/\S+)/.exec(serveLog);
        const mqtts = /MQTT TLS {2}(mqtts:\/\/\S+)/.exec(serveLog);
        if (!http || !mqtts) return false;
        httpUrl = http[1]!;
        mqttTlsUrl = mqtts[1]!;
        return true;
      },
      30_000,
      'serve started',
    );
    expect((await get('/healthz')).status).toBe(200);

    const untrusted = await run(edgeloop, ['fleet'], { EDGELOOP_URL: httpUrl, EDGELOOP_TOKEN: token });
    expect(untrusted.code).toBe(1);
    expect(untrusted.err).toMatch(/NODE_EXTRA_CA_CERTS=<data-dir>\/ca\/ca\.crt/);
    // With it, every CLI call below (enroll, delete) goes over HTTPS.
  });

  it('devices enroll --auth cert writes the device files, and the real agent logs in with its certificate', async () => {
    const enrolled = await cli('devices', 'enroll', 'cam-x', '--auth', 'cert', '--out-dir', camDir, '--json');
    expect(enrolled.code, enrolled.err).toBe(0);
    const answer = JSON.parse(enrolled.out) as { mqtt: { url: string }; certificate: { fingerprint: string } };
    expect(answer.mqtt.url).toBe(mqttTlsUrl);
    for (const file of ['device.crt', 'device.key', 'ca.crt', 'password'])
      expect(existsSync(join(camDir, file))).toBe(true);
    expect(mode(join(camDir, 'device.key'))).toBe(0o600);
    const certificate = new X509Certificate(readFileSync(join(camDir, 'device.crt')));
    expect(certificate.subject).toBe('CN=cam-x');
    expect(fingerprintOfFile(join(camDir, 'device.crt'))).toBe(answer.certificate.fingerprint);

    const config = join(camDir, 'agent.json');
    writeFileSync(
      config,
      JSON.stringify({
        deviceId: 'cam-x',
        mqtt: {
          url: answer.mqtt.url,
          certFile: 'device.crt',
          keyFile: 'device.key',
          caFile: 'ca.crt',
          passwordFile: 'password',
          reconnect: { initialMs: 100, maxMs: 500 },
        },
        dataDir: 'state',
        telemetry: { intervalS: 1 },
        logLevel: 'warn',
      }),
    );
    agent = spawn(process.execPath, [edgeloopAgent, '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    agent.stderr?.on('data', (chunk: Buffer) => {
      agentLog = (agentLog + chunk.toString()).slice(-4000);
    });
    await eventually(async () => (await deviceStatus()) === 'online', 30_000, 'cam-x online').catch((error: Error) => {
      throw new Error(`${error.message}; agent: ${agentLog}; serve: ${serveLog.slice(-2000)}`);
    });
    expect(await authFailures('cert_required')).toBe(0);
  });

  it('SIGHUP swaps the server certificate for new connections; a bad key is refused and the old one stays', async () => {
    const before = await presented();
    expect(before).toBe(fingerprintOfFile(join(tlsDir, 'server.crt')));
    const renewed = await run(edgeloop, ['ca', 'server-cert', '127.0.0.1', '--data-dir', dataDir, '--out-dir', tlsDir]);
    expect(renewed.code).toBe(0);
    const next = fingerprintOfFile(join(tlsDir, 'server.crt'));
    expect(next).not.toBe(before);
    serve.kill('SIGHUP');
    await eventually(async () => (await presented()) === next, 10_000, 'new certificate presented');
    await eventually(() => serveLog.includes('TLS certificates reloaded'), 5_000, 'reload logged');
    expect((await get('/healthz')).status).toBe(200);

    const goodKey = readFileSync(join(tlsDir, 'server.key'));
    writeFileSync(join(tlsDir, 'server.key'), 'not a key\n');
    serve.kill('SIGHUP');
    await eventually(() => serveLog.includes('TLS reload failed'), 10_000, 'reload refused');
    expect(await presented()).toBe(next);
    expect(serve.exitCode).toBeNull();
    writeFileSync(join(tlsDir, 'server.key'), goodKey);
    // The agent kept its session through both reloads.
    expect(await deviceStatus()).toBe('online');
  });

  it('revocation disconnects the agent at once and its certificate is refused after', async () => {
    const refusedBefore = await authFailures('unknown_device');
    const revoked = await cli('devices', 'delete', 'cam-x');
    expect(revoked.code, revoked.err).toBe(0);
    await eventually(async () => (await authFailures('unknown_device')) > refusedBefore, 15_000, 'reconnect refused');
    expect((await get('/healthz')).body).toMatch(/"connectedClients":0/);
  });
});
