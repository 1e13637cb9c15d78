import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { caPaths, initCaFiles, readCaFiles } from './ca-files.ts';
import { createFleetCa, type FleetCa, fingerprintOf, issueCertificate, loadFleetCa } from './fleet-ca.ts';

const NOW = Date.UTC(2025, 0, 15);
const DAY = 86_400_000;

async function freshCa(): Promise<{ ca: FleetCa; certPem: string; keyPem: string }> {
  const material = await createFleetCa({ now: NOW });
  const loaded = await loadFleetCa(material.certPem, material.keyPem);
  if (!loaded.ok) throw new Error(loaded.error.message);
  return { ca: loaded.value, certPem: material.certPem, keyPem: material.keyPem };
}

describe('fleet CA', () => {
  it('creates a self-signed P-256 CA certificate that its own key belongs to', async () => {
    const material = await createFleetCa({ now: NOW, commonName: 'test fleet' });
    const cert = new X509Certificate(material.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toBe('CN=test fleet');
    expect(cert.issuer).toBe(cert.subject);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(material.keyPem).toContain('BEGIN PRIVATE KEY');
    expect(material.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(material.fingerprint).toBe(cert.fingerprint256.replace(/:/g, '').toLowerCase());
    expect(material.notAfter).toBeGreaterThan(NOW + 3000 * DAY);
  });

  it('issues a device certificate whose CN is the device id, signed by the CA, for client auth only', async () => {
    const { ca, certPem } = await freshCa();
    const issued = await issueCertificate(ca, { commonName: 'cam-07', usage: 'client', now: NOW });
    const cert = new X509Certificate(issued.certPem);
    const caCert = new X509Certificate(certPem);
    expect(cert.subject).toBe('CN=cam-07');
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(cert.subjectAltName).toBeUndefined();
    expect(issued.fingerprint).toBe(fingerprintOf(issued.certPem));
    expect(new Date(cert.validFrom).getTime()).toBeLessThan(NOW);
    expect(issued.notAfter).toBe(new Date(cert.validTo).getTime());
  });

  it('gives every certificate its own key and serial number', async () => {
    const { ca } = await freshCa();
    const a = await issueCertificate(ca, { commonName: 'cam-a', usage: 'client', now: NOW });
    const b = await issueCertificate(ca, { commonName: 'cam-a', usage: 'client', now: NOW });
    expect(a.keyPem).not.toBe(b.keyPem);
    expect(a.fingerprint).not.toBe(b.fingerprint);
    expect(new X509Certificate(a.certPem).serialNumber).not.toBe(new X509Certificate(b.certPem).serialNumber);
  });

  it('issues a server certificate for DNS names and IP addresses', async () => {
    const { ca } = await freshCa();
    const issued = await issueCertificate(ca, {
      commonName: 'localhost',
      usage: 'server',
      altNames: ['localhost', '127.0.0.1'],
      now: NOW,
      validityDays: 10,
    });
    const cert = new X509Certificate(issued.certPem);
    expect(cert.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(issued.notAfter).toBe(NOW + 10 * DAY);
  });

  it('refuses a CA whose key is another one, a certificate that is not a CA, and text that is no PEM', async () => {
    const first = await createFleetCa({ now: NOW });
    const second = await createFleetCa({ now: NOW });
    const mismatch = await loadFleetCa(first.certPem, second.keyPem);
    expect(mismatch.ok).toBe(false);
    if (!mismatch.ok) expect(mismatch.error.message).toMatch(/does not belong/);

    const { ca } = await freshCa();
    const leaf = await issueCertificate(ca, { commonName: 'cam-1', usage: 'client', now: NOW });
    const notCa = await loadFleetCa(leaf.certPem, leaf.keyPem);
    expect(notCa.ok).toBe(false);
    if (!notCa.ok) expect(notCa.error.message).toMatch(/not a CA/);

    expect((await loadFleetCa('hello', first.keyPem)).ok).toBe(false);
    expect((await loadFleetCa(first.certPem, 'hello')).ok).toBe(false);
  });
});

describe('fleet CA files', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgeloop-ca-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('writes ca.crt and a 0600 ca.key under <dataDir>/ca and reads them back', async () => {
    const dataDir = join(tempDir(), 'data');
    expect(await readCaFiles(dataDir)).toEqual({ ok: true, value: null });
    const created = await initCaFiles({ dataDir, now: NOW });
    expect(created.ok).toBe(true);
    if (!created.ok) return;
    const paths = caPaths(dataDir);
    expect(created.value.certPath).toBe(paths.certPath);
    expect(statSync(paths.keyPath).mode & 0o777).toBe(0o600);
    expect(statSync(paths.dir).mode & 0o777).toBe(0o700);
    const read = await readCaFiles(dataDir);
    expect(read.ok && read.value?.fingerprint).toBe(created.value.fingerprint);
  });

  it('refuses to replace an existing CA unless forced, and a forced one is new', async () => {
    const dataDir = tempDir();
    const first = await initCaFiles({ dataDir, now: NOW });
    const again = await initCaFiles({ dataDir, now: NOW });
    expect(again.ok).toBe(false);
    if (!again.ok) expect(again.error).toMatchObject({ code: 'exists', message: expect.stringMatching(/--force/) });
    const read = await readCaFiles(dataDir);
    expect(first.ok && read.ok && read.value?.fingerprint === first.value.fingerprint).toBe(true);
    const forced = await initCaFiles({ dataDir, now: NOW, force: true });
    expect(forced.ok && first.ok && forced.value.fingerprint !== first.value.fingerprint).toBe(true);
  });

  it('reports a CA with a missing key or an unreadable certificate', async () => {
    const dataDir = tempDir();
    await initCaFiles({ dataDir, now: NOW });
    const paths = caPaths(dataDir);
    unlinkSync(paths.keyPath);
    const incomplete = await readCaFiles(dataDir);
    expect(incomplete.ok).toBe(false);
    if (!incomplete.ok) expect(incomplete.error.message).toMatch(/incomplete/);
    // A key alone also refuses to be replaced without --force (it may be the one that matters).
    expect((await initCaFiles({ dataDir, now: NOW })).ok).toBe(false);
    await initCaFiles({ dataDir, now: NOW, force: true });
    writeFileSync(paths.certPath, 'not a certificate');
    expect((await readCaFiles(dataDir)).ok).toBe(false);
  });
});
