import {
  createHash,
  createPrivateKey,
  X509Certificate as NodeX509Certificate,
  randomBytes,
  webcrypto,
} from 'node:crypto';
import { isIP } from 'node:net';
import { fail, ok, type Result } from '@edgeloop/protocol';
import * as x509 from '@peculiar/x509';

/*
 * The fleet certificate authority: a self-signed ECDSA P-256 CA and the certificates it issues
 * (device client certificates whose CN is the device id, and server certificates for the MQTT /
 * HTTP listeners). Certificates are built by @peculiar/x509 on Node's WebCrypto (passed to every
 * call, so no global provider is set); PEM <-> DER and fingerprints go through node:crypto. No
 * ASN.1 is written here. Chain verification is Node's TLS (tls-listeners.ts).
 */

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
/** Node's WebCrypto, in the type @peculiar/x509 takes its provider as. */
const crypto = webcrypto as unknown as NonNullable<Parameters<typeof x509.X509CertificateGenerator.create>[1]>;
const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** Certificates start a little in the past: a device clock slightly behind still accepts them. */
const BACKDATE_MS = 5 * 60_000;

export const DEFAULT_CA_DAYS = 3650;
export const DEFAULT_DEVICE_CERT_DAYS = 1825;
export const DEFAULT_SERVER_CERT_DAYS = 825;

/** A certificate and its private key, PEM, with the certificate's sha256 fingerprint (lowercase hex of the DER). */
export type CertificateMaterial = {
  readonly certPem: string;
  readonly keyPem: string;
  readonly fingerprint: string;
  /** Expiry, ms since the epoch. */
  readonly notAfter: number;
};

/** A CA that can sign: its certificate (PEM) and its private key (imported for signing). */
export type FleetCa = {
  readonly certPem: string;
  readonly fingerprint: string;
  readonly subject: string;
  readonly signingKey: CryptoKey;
};

export type IssueRequest = {
  readonly commonName: string;
  /** client: a device identity (EKU clientAuth); server: a listener (EKU serverAuth, subjectAltName). */
  readonly usage: 'client' | 'server';
  /** DNS names and IP addresses of a server certificate; the CN is added when none is given. */
  readonly altNames?: readonly string[];
  readonly now: number;
  readonly validityDays?: number;
};

/** sha256 of the certificate's DER, lowercase hex: what devices.cert_fingerprint stores. */
export function fingerprintOf(certificate: string | Buffer): string {
  return createHash('sha256').update(new NodeX509Certificate(certificate).raw).digest('hex');
}

/** sha256 of raw DER bytes (a TLS peer certificate's `raw`), lowercase hex. */
export function fingerprintOfDer(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

function serialNumber(): string {
  const bytes = randomBytes(16);
  // Positive and without a leading zero byte (RFC 5280: a positive integer of at most 20 octets).
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey('pkcs8', key));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
}

function generateKeys(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

function validity(now: number, days: number): { notBefore: Date; notAfter: Date } {
  return { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + days * DAY_MS) };
}

/** Creates a new fleet CA: a self-signed certificate (CA, path length 0) and its key. */
export async function createFleetCa(options: {
  readonly commonName?: string;
  readonly now: number;
  readonly validityDays?: number;
}): Promise<CertificateMaterial> {
  const keys = await generateKeys();
  const name = [{ CN: [options.commonName ?? 'edgeloop fleet CA'] }];
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serialNumber(),
      name,
      ...validity(options.now, options.validityDays ?? DEFAULT_CA_DAYS),
      keys,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const certPem = certificate.toString('pem');
  return {
    certPem,
    keyPem: await privateKeyPem(keys.privateKey),
    fingerprint: fingerprintOf(certPem),
    notAfter: certificate.notAfter.getTime(),
  };
}

/**
 * Reads a CA from its PEM certificate and key: the certificate must be a CA certificate and the
 * key must be its own. The key is imported for signing only.
 */
export async function loadFleetCa(certPem: string, keyPem: string): Promise<Result<FleetCa, 'invalid_ca'>> {
  let certificate: NodeX509Certificate;
  try {
    certificate = new NodeX509Certificate(certPem);
  } catch (error) {
    return fail('invalid_ca', `the CA certificate cannot be read: ${(error as Error).message}`);
  }
  if (!certificate.ca) return fail('invalid_ca', 'the CA certificate is not a CA certificate (basicConstraints)');
  let der: Buffer;
  try {
    const key = createPrivateKey(keyPem);
    if (!certificate.checkPrivateKey(key))
      return fail('invalid_ca', 'the CA key does not belong to the CA certificate');
    der = key.export({ type: 'pkcs8', format: 'der' });
  } catch (error) {
    return fail('invalid_ca', `the CA key cannot be read: ${(error as Error).message}`);
  }
  let signingKey: CryptoKey;
  try {
    signingKey = await crypto.subtle.importKey('pkcs8', der, KEY_ALGORITHM, false, ['sign']);
  } catch (error) {
    return fail('invalid_ca', `the CA key is not an ECDSA P-256 key: ${(error as Error).message}`);
  }
  return ok({
    certPem: certificate.toString(),
    fingerprint: fingerprintOfDer(certificate.raw),
    subject: certificate.subject,
    signingKey,
  });
}

function altNameEntries(names: readonly string[]): x509.JsonGeneralNames {
  return names.map((name) => ({ type: isIP(name) ? ('ip' as const) : ('dns' as const), value: name }));
}

/** Issues a certificate signed by the CA, with a fresh P-256 key pair. */
export async function issueCertificate(ca: FleetCa, request: IssueRequest): Promise<CertificateMaterial> {
  const keys = await generateKeys();
  const issuerCertificate = new x509.X509Certificate(ca.certPem);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      request.usage === 'client'
        ? x509.KeyUsageFlags.digitalSignature
        : x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
      true,
    ),
    new x509.ExtendedKeyUsageExtension(
      [request.usage === 'client' ? x509.ExtendedKeyUsage.clientAuth : x509.ExtendedKeyUsage.serverAuth],
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
    await x509.AuthorityKeyIdentifierExtension.create(issuerCertificate.publicKey, false, crypto),
  ];
  if (request.usage === 'server') {
    const names = request.altNames && request.altNames.length > 0 ? request.altNames : [request.commonName];
    extensions.push(new x509.SubjectAlternativeNameExtension(altNameEntries(names), false));
  }
  const defaultDays = request.usage === 'client' ? DEFAULT_DEVICE_CERT_DAYS : DEFAULT_SERVER_CERT_DAYS;
  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject: [{ CN: [request.commonName] }],
      issuer: issuerCertificate.subjectName,
      ...validity(request.now, request.validityDays ?? defaultDays),
      publicKey: keys.publicKey,
      signingKey: ca.signingKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions,
    },
    crypto,
  );
  const certPem = certificate.toString('pem');
  return {
    certPem,
    keyPem: await privateKeyPem(keys.privateKey),
    fingerprint: fingerprintOf(certPem),
    notAfter: certificate.notAfter.getTime(),
  };
}
