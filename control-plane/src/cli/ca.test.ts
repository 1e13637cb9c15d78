import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../cli.ts';

/* `edgeloop ca init` and `edgeloop ca server-cert` on a temp data dir, as an operator runs them. */

let work: string;
beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'edgeloop-ca-cli-'));
});
afterEach(() => {
  rmSync(work, { recursive: true, force: true });
});

async function edgeloop(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(
    argv,
    {},
    {
      out: (text) => out.push(text),
      err: (text) => err.push(text),
      waitForShutdown: () => new Promise<string>(() => undefined),
    },
  );
  return { code, out: out.join(''), err: err.join('') };
}

const mode = (path: string) => statSync(path).mode & 0o777;

describe('edgeloop ca init', () => {
  it('creates the CA under <data-dir>/ca with the key 0600 and the folder 0700', async () => {
    const dataDir = join(work, 'data');
    const created = await edgeloop('ca', 'init', '--data-dir', dataDir, '--json');
    expect(created.code).toBe(0);
    const answer = JSON.parse(created.out) as { certPath: string; keyPath: string; fingerprint: string };
    expect(answer.certPath).toBe(join(dataDir, 'ca', 'ca.crt'));
    expect(mode(answer.keyPath)).toBe(0o600);
    expect(mode(join(dataDir, 'ca'))).toBe(0o700);
    const certificate = new X509Certificate(readFileSync(answer.certPath));
    expect(certificate.ca).toBe(true);
    expect(certificate.subject).toBe('CN=edgeloop fleet CA');
  });

  it('refuses to replace an existing CA without --force, and replaces it with --force', async () => {
    const dataDir = join(work, 'data');
    const first = JSON.parse((await edgeloop('ca', 'init', '--data-dir', dataDir, '--json')).out) as {
      fingerprint: string;
    };
    const keyBefore = readFileSync(join(dataDir, 'ca', 'ca.key'), 'utf8');
    const again = await edgeloop('ca', 'init', '--data-dir', dataDir);
    expect(again.code).toBe(1);
    expect(again.out).toBe('');
    expect(again.err).toMatch(/a fleet CA exists in .*invalidates every device certificate \(use --force/);
    expect(readFileSync(join(dataDir, 'ca', 'ca.key'), 'utf8')).toBe(keyBefore);

    const forced = await edgeloop('ca', 'init', '--data-dir', dataDir, '--force', '--json', '--name', 'lab CA');
    expect(forced.code).toBe(0);
    expect((JSON.parse(forced.out) as { fingerprint: string }).fingerprint).not.toBe(first.fingerprint);
    expect(new X509Certificate(readFileSync(join(dataDir, 'ca', 'ca.crt'))).subject).toBe('CN=lab CA');
    expect(mode(join(dataDir, 'ca', 'ca.key'))).toBe(0o600);
  });

  it('refuses a data dir where only half of the CA exists', async () => {
    const dataDir = join(work, 'data');
    await edgeloop('ca', 'init', '--data-dir', dataDir);
    rmSync(join(dataDir, 'ca', 'ca.key'));
    const serverCert = await edgeloop('ca', 'server-cert', 'localhost', '--data-dir', dataDir, '--out-dir', work);
    expect(serverCert.code).toBe(1);
    expect(serverCert.err).toMatch(/incomplete: ca\.crt and ca\.key must both exist/);
  });
});

describe('edgeloop ca server-cert', () => {
  it('writes a certificate for every name (DNS and IP subjectAltName) signed by the CA, its key 0600', async () => {
    const dataDir = join(work, 'data');
    await edgeloop('ca', 'init', '--data-dir', dataDir);
    const outDir = join(work, 'tls');
    const issued = await edgeloop(
      'ca',
      'server-cert',
      'cp.example.com',
      '10.0.0.5',
      '--data-dir',
      dataDir,
      '--out-dir',
      outDir,
    );
    expect(issued.code).toBe(0);
    const certificate = new X509Certificate(readFileSync(join(outDir, 'server.crt')));
    expect(certificate.subject).toBe('CN=cp.example.com');
    expect(certificate.subjectAltName).toBe('DNS:cp.example.com, IP Address:10.0.0.5');
    expect(certificate.checkIssued(new X509Certificate(readFileSync(join(dataDir, 'ca', 'ca.crt'))))).toBe(true);
    expect(mode(join(outDir, 'server.key'))).toBe(0o600);
  });

  it('renewing over an existing key file that was left readable makes it 0600 again', async () => {
    const dataDir = join(work, 'data');
    await edgeloop('ca', 'init', '--data-dir', dataDir);
    writeFileSync(join(work, 'server.key'), 'old\n', { mode: 0o644 });
    const issued = await edgeloop('ca', 'server-cert', 'localhost', '--data-dir', dataDir, '--out-dir', work);
    expect(issued.code).toBe(0);
    expect(mode(join(work, 'server.key'))).toBe(0o600);
    expect(readFileSync(join(work, 'server.key'), 'utf8')).toContain('BEGIN PRIVATE KEY');
  });

  it('needs a fleet CA, --out-dir and at least one name', async () => {
    const dataDir = join(work, 'data');
    const noCa = await edgeloop('ca', 'server-cert', 'localhost', '--data-dir', dataDir, '--out-dir', work);
    expect(noCa.code).toBe(1);
    expect(noCa.err).toMatch(/no fleet CA in .*run edgeloop ca init first/);
    await edgeloop('ca', 'init', '--data-dir', dataDir);
    expect((await edgeloop('ca', 'server-cert', 'localhost', '--data-dir', dataDir)).code).toBe(2);
    expect((await edgeloop('ca', 'server-cert', '--data-dir', dataDir, '--out-dir', work)).code).toBe(2);
    expect(
      (await edgeloop('ca', 'server-cert', 'localhost', '--days', '0', '--data-dir', dataDir, '--out-dir', work)).code,
    ).toBe(2);
  });
});
