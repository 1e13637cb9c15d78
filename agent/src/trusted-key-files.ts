import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseTrustedKeys } from '@edgeloop/firmware-images/verify';
import { fail, ok, type Result } from '@edgeloop/protocol';

/*
 * Trusted public keys read from files, the way `edgeloop serve --trusted-keys` reads them: each
 * path is a `.pub` PEM file (what `edgeloop-image keygen` writes) or a directory whose `*.pub`
 * files are all read. Every problem is listed at once; every key is checked (Ed25519 public keys
 * only, no private key, no duplicate). The agent config and `edgeloop-sim --trusted-keys` use it.
 */

export type TrustedKeyFile = { readonly path: string; readonly publicKeyPem: string };

export function readTrustedKeyFiles(
  paths: readonly string[],
  base = process.cwd(),
): Result<readonly TrustedKeyFile[], 'invalid_trusted_keys'> {
  const problems: string[] = [];
  const files: TrustedKeyFile[] = [];
  for (const given of paths) {
    const resolved = path.resolve(base, given);
    let names: string[];
    try {
      names = statSync(resolved).isDirectory()
        ? readdirSync(resolved)
            .filter((name) => name.endsWith('.pub'))
            .sort()
            .map((name) => path.join(resolved, name))
        : [resolved];
    } catch (error) {
      problems.push(`cannot read ${resolved}: ${(error as Error).message}`);
      continue;
    }
    if (names.length === 0) problems.push(`${resolved}: no .pub files in this directory`);
    for (const name of names) {
      try {
        files.push({ path: name, publicKeyPem: readFileSync(name, 'utf8') });
      } catch (error) {
        problems.push(`cannot read ${name}: ${(error as Error).message}`);
      }
    }
  }
  if (files.length > 0) {
    const parsed = parseTrustedKeys(files.map(({ publicKeyPem }) => ({ publicKeyPem })));
    if (!parsed.ok) {
      // parseTrustedKeys numbers keys from 1 in the order given: name the files.
      problems.push(
        parsed.error.message.replace(/key (\d+)/g, (match, index: string) => {
          const file = files[Number(index) - 1]?.path;
          return file ? `${match} (${file})` : match;
        }),
      );
    }
  }
  if (problems.length > 0) return fail('invalid_trusted_keys', problems.join('; '));
  return ok(Object.freeze(files));
}
