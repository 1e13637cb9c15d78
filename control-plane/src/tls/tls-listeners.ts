import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createTlsServer, type SecureContextOptions, type Server, type TLSSocket } from 'node:tls';
import { fail, ok, type Result } from '@edgeloop/protocol';
import type { Logger } from 'pino';
import type { MetricsRegistry } from '../metrics.ts';
import { readCaFiles } from './ca-files.ts';
import { type FleetCa, fingerprintOfDer } from './fleet-ca.ts';

/*
 * TLS for the control plane's listeners: the server certificate and key (--tls-cert / --tls-key)
 * for HTTPS and the MQTT TLS listener (--mqtt-tls-port), and the fleet CA (<dataDir>/ca) the MQTT
 * listener trusts for device certificates. Everything is read at start and again by reload()
 * (SIGHUP): a bad file on reload keeps the running certificates and says why.
 *
 * The MQTT listener asks every client for a certificate (requestCert) but does not refuse the
 * handshake on a bad one (rejectUnauthorized false): a device with a password and no certificate
 * still connects, and a refused certificate is answered with a CONNACK the device can read.
 * Node's TLS verifies the chain against the fleet CA only (`ca` is the CA alone, not the system
 * roots); the broker then checks the identity recorded here (identify) against the device row.
 */

export type TlsFiles = {
  readonly certFile: string;
  readonly keyFile: string;
  /** The data dir whose `ca/` holds the fleet CA (absent: no device certificates). */
  readonly dataDir: string;
};

export type TlsMaterial = {
  readonly cert: string;
  readonly key: string;
  /** sha256 of the server certificate (the first of the chain). */
  readonly fingerprint: string;
  readonly fleetCa: FleetCa | null;
};

/** What a TLS client proved with its certificate, recorded at the handshake. */
export type PeerIdentity = {
  /** The chain verifies against the fleet CA (and the certificate is in its validity period). */
  readonly authorized: boolean;
  /** Why it is not authorized (Node's code, e.g. DEPTH_ZERO_SELF_SIGNED_CERT), else null. */
  readonly reason: string | null;
  /** The subject's CN when there is exactly one. */
  readonly commonName: string | null;
  /** sha256 of the certificate's DER, lowercase hex. */
  readonly fingerprint: string;
};

/** Reads and checks the server certificate and key, and the fleet CA of the data dir. */
export async function readTlsMaterial(files: TlsFiles): Promise<Result<TlsMaterial, 'invalid_tls'>> {
  let cert: string;
  let key: string;
  try {
    cert = readFileSync(files.certFile, 'utf8');
  } catch (error) {
    return fail('invalid_tls', `--tls-cert ${files.certFile}: ${(error as Error).message}`);
  }
  try {
    key = readFileSync(files.keyFile, 'utf8');
  } catch (error) {
    return fail('invalid_tls', `--tls-key ${files.keyFile}: ${(error as Error).message}`);
  }
  let fingerprint: string;
  try {
    const certificate = new X509Certificate(cert);
    if (!certificate.checkPrivateKey(createPrivateKey(key))) {
      return fail('invalid_tls', `--tls-key ${files.keyFile} does not belong to the certificate ${files.certFile}`);
    }
    fingerprint = fingerprintOfDer(certificate.raw);
  } catch (error) {
    return fail('invalid_tls', `--tls-cert / --tls-key cannot be read: ${(error as Error).message}`);
  }
  const fleetCa = await readCaFiles(files.dataDir);
  if (!fleetCa.ok) return fail('invalid_tls', fleetCa.error.message);
  return ok({ cert, key, fingerprint, fleetCa: fleetCa.value });
}

/** The peer certificate of a finished handshake, or null when the client sent none. */
export function peerIdentityOf(socket: TLSSocket): PeerIdentity | null {
  const peer = socket.getPeerCertificate(false) as { raw?: Buffer; subject?: { CN?: unknown } } | null;
  if (!peer?.raw) return null;
  const cn = peer.subject?.CN;
  const reason = socket.authorizationError;
  return {
    authorized: socket.authorized,
    reason: socket.authorized ? null : reason ? String((reason as { code?: unknown }).code ?? reason) : 'unknown',
    commonName: typeof cn === 'string' ? cn : null,
    fingerprint: fingerprintOfDer(peer.raw),
  };
}

export type TlsListenersDeps = {
  readonly files: TlsFiles;
  /** Read by readTlsMaterial at start (a failure there is a start error). */
  readonly material: TlsMaterial;
  /** The TLS handshake must finish within this (the MQTT front's deadline starts after it). */
  readonly handshakeTimeoutMs: number;
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
};

export type ReloadSummary = { readonly fingerprint: string; readonly fleetCa: string | null };

export type TlsListeners = {
  /** The MQTT TLS listener: each socket whose handshake finished goes to `accept` (the MQTT front). */
  createMqttServer(accept: (socket: TLSSocket) => void): Server;
  /** The certificate and key of the HTTPS server (https.createServer options). */
  httpsOptions(): SecureContextOptions;
  /** Registers the HTTPS server so reload() swaps its certificate too. */
  attachHttps(server: Server): void;
  /**
   * The certificate a connection from the MQTT TLS listener presented, when a fleet CA was loaded
   * at its handshake; null for plain sockets, clients without a certificate, or no fleet CA.
   */
  identify(connection: unknown): PeerIdentity | null;
  /** The fleet CA loaded now (device certificates are issued with it), or null. */
  fleetCa(): FleetCa | null;
  /** Re-reads the certificate, key and fleet CA and applies them to new connections. */
  reload(): Promise<Result<ReloadSummary, 'invalid_tls'>>;
};

export function createTlsListeners(deps: TlsListenersDeps): TlsListeners {
  const { logger } = deps;
  let material = deps.material;
  const mqttServers: Server[] = [];
  const httpsServers: Server[] = [];
  const identities = new WeakMap<object, PeerIdentity>();
  const handshakeErrors = deps.metrics.counter(
    'edgeloop_tls_handshake_errors_total',
    'TLS handshakes that failed on the MQTT TLS listener',
  );
  const reloads = deps.metrics.counter('edgeloop_tls_reloads_total', 'Certificate reloads (SIGHUP), by result');

  // minVersion is part of the secure context: reload() must set it again.
  const serverContext = (current: TlsMaterial): SecureContextOptions => ({
    cert: current.cert,
    key: current.key,
    minVersion: 'TLSv1.2',
  });
  // Only the fleet CA is trusted for client certificates (never the system roots).
  const mqttContext = (current: TlsMaterial): SecureContextOptions => ({
    ...serverContext(current),
    ...(current.fleetCa ? { ca: [current.fleetCa.certPem] } : {}),
  });

  return {
    createMqttServer(accept) {
      const server = createTlsServer({
        ...mqttContext(material),
        requestCert: true,
        rejectUnauthorized: false,
        handshakeTimeout: deps.handshakeTimeoutMs,
      });
      server.on('secureConnection', (socket: TLSSocket) => {
        if (material.fleetCa) {
          const identity = peerIdentityOf(socket);
          if (identity) identities.set(socket, identity);
        }
        accept(socket);
      });
      server.on('tlsClientError', (error: Error, socket: TLSSocket) => {
        handshakeErrors.inc();
        logger.debug({ err: error, address: socket.remoteAddress }, 'tls handshake failed');
        socket.destroy();
      });
      mqttServers.push(server);
      return server;
    },

    httpsOptions() {
      return serverContext(material);
    },

    attachHttps(server) {
      httpsServers.push(server);
    },

    identify(connection) {
      if (typeof connection !== 'object' || connection === null) return null;
      return identities.get(connection) ?? null;
    },

    fleetCa() {
      return material.fleetCa;
    },

    async reload() {
      const next = await readTlsMaterial(deps.files);
      if (!next.ok) {
        reloads.inc({ result: 'failed' });
        logger.error({ reason: next.error.message }, 'TLS reload failed: the running certificates stay');
        return next;
      }
      try {
        for (const server of mqttServers) server.setSecureContext(mqttContext(next.value));
        for (const server of httpsServers) server.setSecureContext(serverContext(next.value));
      } catch (error) {
        reloads.inc({ result: 'failed' });
        logger.error({ err: error }, 'TLS reload failed: the running certificates stay');
        return fail('invalid_tls', `the certificates cannot be applied: ${(error as Error).message}`);
      }
      material = next.value;
      reloads.inc({ result: 'ok' });
      const summary = { fingerprint: material.fingerprint, fleetCa: material.fleetCa?.fingerprint ?? null };
      logger.info(summary, 'TLS certificates reloaded');
      return ok(summary);
    },
  };
}
