import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fail, ok, type Result } from '@edgeloop/protocol';
import { createFleetCa, type FleetCa, loadFleetCa } from './fleet-ca.ts';

/*
 * The fleet CA on disk: `<dataDir>/ca/ca.crt` (the certificate, handed to devices as ca.crt) and
 * `<dataDir>/ca/ca.key` (0600; never leaves the data directory). `edgeloop ca init` writes them;
 * `edgeloop serve` reads them at start and on SIGHUP.
 */

export type CaPaths = { readonly dir: string; readonly certPath: string; readonly keyPath: string };

export function caPaths(dataDir: string): CaPaths {
  const dir = join(dataDir, 'ca');
  return { dir, certPath: join(dir, 'ca.crt'), keyPath: join(dir, 'ca.key') };
}

export type CaInitResult = CaPaths & { readonly fingerprint: string; readonly notAfter: number };

/** Writes a file through a temporary name and a rename: a reader never sees half a key. */
export function writeAtomically(path: string, text: string, mode: number): void {
  const temporary = `${path}.${process.pid}.tmp`;
  // A leftover of a crashed run would keep its own mode: start from a new file.
  rmSync(temporary, { force: true });
  writeFileSync(temporary, text, { mode, flag: 'wx' });
  renameSync(temporary, path);
}

/** Creates the fleet CA under the data dir; refuses to replace an existing one unless `force`. */
export async function initCaFiles(options: {
  readonly dataDir: string;
  readonly force?: boolean;
  readonly now: number;
  readonly commonName?: string;
  readonly validityDays?: number;
}): Promise<Result<CaInitResult, 'exists'>> {
  const paths = caPaths(options.dataDir);
  if (!options.force && (existsSync(paths.certPath) || existsSync(paths.keyPath))) {
    return fail(
      'exists',
      `a fleet CA exists in ${paths.dir}; replacing it invalidates every device certificate (use --force to replace it)`,
    );
  }
  const material = await createFleetCa({
    now: options.now,
    ...(options.commonName ? { commonName: options.commonName } : {}),
    ...(options.validityDays ? { validityDays: options.validityDays } : {}),
  });
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  // The key first: a certificate without its key is never left behind.
  writeAtomically(paths.keyPath, material.keyPem, 0o600);
  writeAtomically(paths.certPath, material.certPem, 0o600);
  return ok({ ...paths, fingerprint: material.fingerprint, notAfter: material.notAfter });
}

/**
 * Reads the fleet CA of the data dir: null when there is none, an error when only one of the two
 * files exists or they do not belong together.
 */
export async function readCaFiles(dataDir: string): Promise<Result<FleetCa | null, 'invalid_ca'>> {
  const paths = caPaths(dataDir);
  const hasCert = existsSync(paths.certPath);
  const hasKey = existsSync(paths.keyPath);
  if (!hasCert && !hasKey) return ok(null);
  if (!hasCert || !hasKey) {
    return fail('invalid_ca', `the fleet CA in ${paths.dir} is incomplete: ca.crt and ca.key must both exist`);
  }
  let certPem: string;
  let keyPem: string;
  try {
    certPem = readFileSync(paths.certPath, 'utf8');
    keyPem = readFileSync(paths.keyPath, 'utf8');
  } catch (error) {
    return fail('invalid_ca', `cannot read the fleet CA in ${paths.dir}: ${(error as Error).message}`);
  }
  const loaded = await loadFleetCa(certPem, keyPem);
  if (!loaded.ok) return fail('invalid_ca', `${paths.dir}: ${loaded.error.message}`);
  return loaded;
}
