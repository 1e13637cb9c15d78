import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Config } from '../config.ts';
import { initCaFiles, readCaFiles, writeAtomically } from '../tls/ca-files.ts';
import { issueCertificate } from '../tls/fleet-ca.ts';
import { UsageError } from './args.ts';
import type { Env } from './client.ts';
import { type CommandSpec, EXIT, type GroupSpec } from './command.ts';
import { json } from './output.ts';

/*
 * `edgeloop ca`: the fleet certificate authority under the data dir. It works on the files
 * directly (no API call): run it where `edgeloop serve` keeps its data, then start the control
 * plane (or send it SIGHUP) to trust the CA.
 */

const DATA_DIR_FLAG = {
  name: 'data-dir',
  value: 'DIR',
  help: 'the control plane data dir (EDGELOOP_DATA_DIR, default ./data)',
  file: true,
} as const;

function dataDirOf(flag: string | undefined, env: Env): string {
  return flag ?? (env.EDGELOOP_DATA_DIR || Config.parse({}).dataDir);
}

const init: CommandSpec = {
  words: ['ca', 'init'],
  summary: 'Create the fleet CA (device certificates for mTLS) under the data dir',
  description:
    'Writes <data-dir>/ca/ca.crt and ca.key (0600; the key never leaves the data dir). An existing CA is\n' +
    'kept unless --force: replacing it invalidates every device certificate it issued. Then start edgeloop\n' +
    'serve (or send it SIGHUP) with --mqtt-tls-port, --tls-cert and --tls-key, and enroll devices with\n' +
    '`edgeloop devices enroll ID --auth cert`.',
  flags: [
    DATA_DIR_FLAG,
    { name: 'force', help: 'replace an existing CA (every device certificate it issued stops working)' },
    { name: 'name', value: 'CN', help: 'the CA certificate common name (default "edgeloop fleet CA")' },
  ],
  client: false,
  examples: ['edgeloop ca init', 'edgeloop ca init --data-dir /var/lib/edgeloop --json'],
  async run({ args, env, flag, io, json: asJson }) {
    const dataDir = dataDirOf(flag('data-dir'), env);
    const name = flag('name');
    const created = await initCaFiles({
      dataDir,
      force: args.booleans.has('force'),
      now: Date.now(),
      ...(name ? { commonName: name } : {}),
    });
    if (!created.ok) {
      io.err(`edgeloop ca init: ${created.error.message}\n`);
      return EXIT.failed;
    }
    const { certPath, keyPath, fingerprint, notAfter } = created.value;
    if (asJson) {
      io.out(json({ certPath, keyPath, fingerprint, notAfter }));
    } else {
      io.out(
        `fleet CA created\n  certificate  ${certPath}\n  key          ${keyPath} (0600; keep it here)\n` +
          `  fingerprint  sha256 ${fingerprint}\n  expires      ${new Date(notAfter).toISOString()}\n`,
      );
    }
    return EXIT.ok;
  },
};

const serverCert: CommandSpec = {
  words: ['ca', 'server-cert'],
  args: ['NAME...'],
  summary: 'Issue a server certificate (for --tls-cert/--tls-key) signed by the fleet CA',
  description:
    'NAME is each DNS name or IP address devices and clients reach the control plane by (its\n' +
    'subjectAltName entries); the first is the CN. Writes server.crt and server.key (0600) to --out-dir,\n' +
    'replacing them through a rename: run it again before expiry and send edgeloop serve SIGHUP. Devices\n' +
    'trust ca.crt alone (EDGELOOP_MQTT_CA_FILE); the edgeloop CLI and curl trust it with\n' +
    'NODE_EXTRA_CA_CERTS=<data-dir>/ca/ca.crt and --cacert. Any other certificate (a public CA, your own\n' +
    'PKI) works with --tls-cert too.',
  flags: [
    DATA_DIR_FLAG,
    { name: 'out-dir', value: 'DIR', help: 'where server.crt and server.key are written (created 0700)', file: true },
    { name: 'days', value: 'N', help: 'validity in days (default 825)' },
  ],
  client: false,
  examples: [
    'edgeloop ca server-cert cp.example.com 10.0.0.5 --out-dir ./tls',
    'edgeloop serve --mqtt-tls-port 8883 --tls-cert ./tls/server.crt --tls-key ./tls/server.key',
  ],
  async run({ args, env, flag, io, json: asJson }) {
    const outDir = flag('out-dir');
    if (!outDir) throw new UsageError('edgeloop ca server-cert needs --out-dir DIR');
    const daysText = flag('days');
    const days = daysText === undefined ? undefined : Number(daysText);
    if (days !== undefined && (!Number.isInteger(days) || days < 1 || days > 3650)) {
      throw new UsageError(`--days takes a whole number of days from 1 to 3650, got "${daysText}"`);
    }
    const dataDir = dataDirOf(flag('data-dir'), env);
    const ca = await readCaFiles(dataDir);
    if (!ca.ok) {
      io.err(`edgeloop ca server-cert: ${ca.error.message}\n`);
      return EXIT.failed;
    }
    if (!ca.value) {
      io.err(`edgeloop ca server-cert: no fleet CA in ${dataDir}; run edgeloop ca init first\n`);
      return EXIT.failed;
    }
    const names = [...args.positional];
    const issued = await issueCertificate(ca.value, {
      commonName: names[0]!,
      usage: 'server',
      altNames: names,
      now: Date.now(),
      ...(days !== undefined ? { validityDays: days } : {}),
    });
    mkdirSync(outDir, { recursive: true, mode: 0o700 });
    const certFile = join(outDir, 'server.crt');
    const keyFile = join(outDir, 'server.key');
    // Through a rename: a control plane reloading (SIGHUP) meanwhile reads the old pair or the new.
    writeAtomically(keyFile, issued.keyPem, 0o600);
    writeAtomically(certFile, issued.certPem, 0o644);
    const result = { certFile, keyFile, names, fingerprint: issued.fingerprint, notAfter: issued.notAfter };
    io.out(asJson ? json(result) : `wrote ${certFile} and ${keyFile} for ${names.join(', ')}\n`);
    return EXIT.ok;
  },
};

export const caGroup: GroupSpec = {
  name: 'ca',
  summary: 'The fleet certificate authority: device identities for mTLS, server certificates',
  commands: [init, serverCert],
  examples: [
    'edgeloop ca init --data-dir ./data',
    'edgeloop ca server-cert localhost 127.0.0.1 --out-dir ./data/tls',
    'edgeloop devices enroll cam-01 --auth cert --out-dir ./cam-01',
  ],
};
