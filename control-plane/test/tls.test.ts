import { webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { encode, messageId, topicFor } from '@edgeloop/protocol';
import * as x509 from '@peculiar/x509';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initCaFiles, readCaFiles } from '../src/tls/ca-files.ts';
import {
  createFleetCa,
  type FleetCa,
  fingerprintOf,
  fingerprintOfDer,
  issueCertificate,
  loadFleetCa,
} from '../src/tls/fleet-ca.ts';
import { eventually, SYSTEM, startTestControlPlane, type TestControlPlane } from './harness.ts';

/*
 * Transport security on a real control plane: the HTTPS API and the MQTT TLS listener with a server
 * certificate from the fleet CA, and X.509 device identity (mTLS) against real mqtt.js clients.
 */

const crypto = webcrypto as unknown as NonNullable<Parameters<typeof x509.X509CertificateGenerator.create>[1]>;

type Material = { readonly cert: string; readonly key: string };

let t: TestControlPlane;
let ca: FleetCa;
let dataDir: string;
let tlsDir: string;
let certFile: string;
let keyFile: string;
const logLines: string[] = [];
const clients = new Set<MqttClient>();

async function serverCertificate(name = 'localhost'): Promise<Material & { fingerprint: string }> {
  const issued = await issueCertificate(ca, {
    commonName: name,
    usage: 'server',
    altNames: [name, '127.0.0.1'],
    now: Date.now(),
  });
  return { cert: issued.certPem, key: issued.keyPem, fingerprint: issued.fingerprint };
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-tls-data-'));
  tlsDir = mkdtempSync(join(tmpdir(), 'edgeloop-tls-files-'));
  const created = await initCaFiles({ dataDir, now: Date.now() });
  if (!created.ok) throw new Error(created.error.message);
  const read = await readCaFiles(dataDir);
  if (!read.ok || !read.value) throw new Error('no fleet CA');
  ca = read.value;
  const server = await serverCertificate();
  certFile = join(tlsDir, 'server.crt');
  keyFile = join(tlsDir, 'server.key');
  writeFileSync(certFile, server.cert);
  writeFileSync(keyFile, server.key, { mode: 0o600 });
  const logger = pino({ level: 'info' }, { write: (line: string) => logLines.push(line) });
  t = await startTestControlPlane({ dataDir, mqttTlsPort: 0, tlsCert: certFile, tlsKey: keyFile }, { logger });
});

afterAll(async () => {
  await Promise.all([...clients].map((client) => client.endAsync(true).catch(() => undefined)));
  await t?.stop();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(tlsDir, { recursive: true, force: true });
});

/** Connects over MQTT TLS (trusting the fleet CA) and resolves with the client, or the CONNACK refusal code. */
async function connectTls(
  clientId: string,
  options: IClientOptions = {},
): Promise<{ client: MqttClient; code: null } | { client: null; code: number }> {
  try {
    const client = await mqtt.connectAsync(t.started.mqttTlsUrl!, {
      clientId,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      ca: ca.certPem,
      ...options,
    });
    clients.add(client);
    return { client, code: null };
  } catch (error) {
    return { client: null, code: (error as { code?: number }).code ?? -1 };
  }
}

async function connectPlain(clientId: string, password: string): Promise<number | null> {
  try {
    const client = await t.connect(clientId, password);
    await client.endAsync();
    return null;
  } catch (error) {
    return (error as { code?: number }).code ?? -1;
  }
}

async function enrollWithCertificate(id: string) {
  const enrolled = await t.client.devices.enroll({ id, labels: {}, auth: 'cert' });
  if (!enrolled.ok) throw new Error(`enroll ${id}: ${enrolled.error.message}`);
  const certificate = enrolled.value.certificate;
  if (!certificate) throw new Error('no certificate in the enrollment answer');
  return { ...enrolled.value, certificate };
}

/** A certificate that chains to no CA the control plane knows: self-signed, CN = the device id. */
async function selfSignedCertificate(commonName: string): Promise<Material> {
  const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01',
      name: [{ CN: [commonName] }],
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
      ],
    },
    crypto,
  );
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
  return { cert: certificate.toString('pem'), key };
}

/** The sha256 of the certificate a new TLS connection to the port is shown. */
function presentedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, servername: 'localhost' }, () => {
      const fingerprint = fingerprintOfDer(socket.getPeerCertificate().raw);
      socket.destroy();
      resolve(fingerprint);
    });
    socket.once('error', reject);
  });
}

function httpsGet(path: string, token?: string): Promise<{ status: number; body: string }> {
  const url = new URL(path, t.started.httpUrl);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { ca: ca.certPem, headers: token ? { authorization: `Bearer ${token}` } : {} },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.once('error', reject);
    req.end();
  });
}

function authFailures(reason: string): number {
  const text = t.cp.internals.metrics.render();
  const line = text.split('\n').find((row) => row.startsWith(`edgeloop_mqtt_auth_failures_total{reason="${reason}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('mTLS device identity', () => {
  it('a device with a certificate from the fleet CA connects without a password, and what it publishes is stored', async () => {
    const enrolled = await enrollWithCertificate('cam-tls-ok');
    expect(enrolled.mqtt.url).toBe(t.started.mqttTlsUrl);
    expect(fingerprintOf(enrolled.certificate.cert)).toBe(enrolled.certificate.fingerprint);
    expect(enrolled.certificate.ca).toBe(ca.certPem);
    const connected = await connectTls('cam-tls-ok', {
      cert: enrolled.certificate.cert,
      key: enrolled.certificate.key,
      ca: enrolled.certificate.ca,
    });
    expect(connected.code).toBeNull();
    const payload = encode('telemetry', {
      msgId: messageId('boottls1', 1),
      bootId: 'boottls1',
      seq: 1,
      ts: Date.now(),
      intervalS: 10,
      system: SYSTEM,
    });
    await connected.client!.publishAsync(topicFor('cam-tls-ok', 'telemetry'), payload, { qos: 1 });
    const detail = await eventually(async () => {
      const got = await t.client.devices.get('cam-tls-ok');
      return got.ok && got.value.telemetry ? got.value : null;
    });
    expect(detail?.telemetry?.message.seq).toBe(1);
  });

  it('a fleet CA certificate issued for another device id is refused (CONNACK 5)', async () => {
    await enrollWithCertificate('cam-tls-x');
    const other = await enrollWithCertificate('cam-tls-other');
    const before = authFailures('cert_cn_mismatch');
    const attempt = await connectTls('cam-tls-x', { cert: other.certificate.cert, key: other.certificate.key });
    expect(attempt.code).toBe(5);
    expect(authFailures('cert_cn_mismatch')).toBe(before + 1);
  });

  it('a self-signed certificate whose CN is the device id is refused (CONNACK 4)', async () => {
    await enrollWithCertificate('cam-tls-self');
    const forged = await selfSignedCertificate('cam-tls-self');
    const before = authFailures('cert_untrusted');
    const attempt = await connectTls('cam-tls-self', forged);
    expect(attempt.code).toBe(4);
    expect(authFailures('cert_untrusted')).toBe(before + 1);
  });

  it('a certificate for the device id from another CA is refused', async () => {
    await enrollWithCertificate('cam-tls-rogue');
    const rogue = await createFleetCa({ now: Date.now(), commonName: 'edgeloop fleet CA' });
    const rogueCa = await loadFleetCa(rogue.certPem, rogue.keyPem);
    if (!rogueCa.ok) throw new Error(rogueCa.error.message);
    const issued = await issueCertificate(rogueCa.value, {
      commonName: 'cam-tls-rogue',
      usage: 'client',
      now: Date.now(),
    });
    const attempt = await connectTls('cam-tls-rogue', { cert: issued.certPem, key: issued.keyPem });
    expect(attempt.code).toBe(4);
  });

  it('revocation closes the live session of a certificate device at once and refuses its certificate after', async () => {
    const enrolled = await enrollWithCertificate('cam-tls-rev');
    const material = { cert: enrolled.certificate.cert, key: enrolled.certificate.key };
    const connected = await connectTls('cam-tls-rev', material);
    expect(connected.code).toBeNull();
    const closed = new Promise<void>((resolve) => connected.client!.once('close', () => resolve()));
    const revoked = await t.client.devices.revoke('cam-tls-rev');
    expect(revoked.ok).toBe(true);
    await closed;
    const attempt = await connectTls('cam-tls-rev', material);
    expect(attempt.code).toBe(4);
  });

  it('a certificate superseded by a new enrollment of the same id is refused', async () => {
    const first = await enrollWithCertificate('cam-tls-again');
    expect((await t.client.devices.revoke('cam-tls-again')).ok).toBe(true);
    const second = await enrollWithCertificate('cam-tls-again');
    const before = authFailures('cert_superseded');
    const old = await connectTls('cam-tls-again', { cert: first.certificate.cert, key: first.certificate.key });
    expect(old.code).toBe(4);
    expect(authFailures('cert_superseded')).toBe(before + 1);
    const current = await connectTls('cam-tls-again', { cert: second.certificate.cert, key: second.certificate.key });
    expect(current.code).toBeNull();
  });

  it('a certificate device is refused a password login on the plain port and on the TLS port', async () => {
    const enrolled = await enrollWithCertificate('cam-tls-pw');
    const password = enrolled.credentials.password;
    const before = authFailures('cert_required');
    expect(await connectPlain('cam-tls-pw', password)).toBe(4);
    const overTls = await connectTls('cam-tls-pw', { username: 'cam-tls-pw', password });
    expect(overTls.code).toBe(4);
    expect(authFailures('cert_required')).toBe(before + 2);
  });

  it('password devices still log in on both the plain and the TLS port', async () => {
    const enrolled = await t.enroll('cam-tls-secret');
    const password = enrolled.credentials.password;
    expect(enrolled.certificate).toBeUndefined();
    expect(enrolled.mqtt.url).toBe(t.started.mqttUrl);
    expect(await connectPlain('cam-tls-secret', password)).toBeNull();
    const overTls = await connectTls('cam-tls-secret', { username: 'cam-tls-secret', password });
    expect(overTls.code).toBeNull();
    await overTls.client!.endAsync();
    const wrong = await connectTls('cam-tls-secret', { username: 'cam-tls-secret', password: 'not-the-secret' });
    expect(wrong.code).toBe(4);
  });

  it('refuses a TLS client without a username, a password or a certificate', async () => {
    const attempt = await connectTls('cam-tls-secret');
    expect(attempt.code).toBe(4);
  });
});

describe('HTTPS and certificate reload', () => {
  it('serves /healthz and the API over HTTPS with the server certificate', async () => {
    expect(t.started.httpUrl).toMatch(/^https:\/\//);
    const health = await httpsGet('/healthz');
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ status: 'ok' });
    expect((await httpsGet('/api/v1/devices')).status).toBe(401);
    const devices = await httpsGet('/api/v1/devices', t.adminToken);
    expect(devices.status).toBe(200);
    expect(JSON.parse(devices.body)).toHaveProperty('items');
  });

  it('reloadTls swaps the server certificate for new connections; a bad file keeps the running one and logs why', async () => {
    const httpsPort = Number(new URL(t.started.httpUrl).port);
    const mqttTlsPort = t.started.mqttTlsPort!;
    const before = await presentedFingerprint(mqttTlsPort);

    const next = await serverCertificate();
    expect(next.fingerprint).not.toBe(before);
    writeFileSync(certFile, next.cert);
    writeFileSync(keyFile, next.key);
    const reloaded = await t.cp.reloadTls();
    expect(reloaded.ok && reloaded.value?.fingerprint).toBe(next.fingerprint);
    expect(await presentedFingerprint(mqttTlsPort)).toBe(next.fingerprint);
    expect(await presentedFingerprint(httpsPort)).toBe(next.fingerprint);

    // A key that belongs to another certificate: refused, the running pair stays.
    const stray = await serverCertificate();
    writeFileSync(keyFile, stray.key);
    const failed = await t.cp.reloadTls();
    expect(failed.ok).toBe(false);
    expect(failed.ok ? '' : failed.error.message).toMatch(/does not belong to the certificate/);
    expect(await presentedFingerprint(mqttTlsPort)).toBe(next.fingerprint);
    expect(await presentedFingerprint(httpsPort)).toBe(next.fingerprint);
    const logged = logLines.map((line) => JSON.parse(line) as { msg?: string; reason?: string });
    expect(
      logged.some((entry) => entry.msg?.startsWith('TLS reload failed') && /does not belong/.test(entry.reason ?? '')),
    ).toBe(true);
    // And a device with a certificate still connects after all this.
    const enrolled = await enrollWithCertificate('cam-tls-after-reload');
    const connected = await connectTls('cam-tls-after-reload', {
      cert: enrolled.certificate.cert,
      key: enrolled.certificate.key,
    });
    expect(connected.code).toBeNull();
    writeFileSync(keyFile, next.key);
  });
});

describe('start with bad TLS files', () => {
  it('refuses to start when --tls-key belongs to another certificate, naming the files', async () => {
    const other = await serverCertificate();
    const strayKey = join(tlsDir, 'stray.key');
    writeFileSync(strayKey, other.key, { mode: 0o600 });
    const failed = startTestControlPlane({
      dataDir: join(tlsDir, 'failed-start'),
      mqttTlsPort: 0,
      tlsCert: certFile,
      tlsKey: strayKey,
    });
    await expect(failed).rejects.toThrow(/stray\.key does not belong to the certificate .*server\.crt/);
  });
});

describe('certificate enrollment without TLS', () => {
  it('answers 422 naming what is missing when the control plane has no MQTT TLS listener', async () => {
    const plain = await startTestControlPlane();
    try {
      const enrolled = await plain.client.devices.enroll({ id: 'cam-no-tls', labels: {}, auth: 'cert' });
      expect(enrolled.ok).toBe(false);
      if (enrolled.ok) return;
      expect(enrolled.error.status).toBe(422);
      expect(enrolled.error.message).toMatch(/--mqtt-tls-port/);
      // Nothing was stored: the id is free for a password enrollment.
      expect((await plain.client.devices.enroll({ id: 'cam-no-tls', labels: {} })).ok).toBe(true);
    } finally {
      await plain.stop();
    }
  });
});
