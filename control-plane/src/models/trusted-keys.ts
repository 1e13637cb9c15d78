import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseTrustedKeys, type TrustedKey } from '@edgeloop/firmware-images/verify';
import { fail, ok, type Result } from '@edgeloop/protocol';

/*
 * The public keys model releases must be signed with, read at start from the `trustedKeys`
 * setting: comma-separated paths, each a `.pub` PEM file or a directory whose `*.pub` files are
 * all read. Key ids are computed from the keys (never taken from file names). A private key, an
 * unreadable file or an empty directory fails the start with every problem listed.
 */

export function loadTrustedKeys(setting: string | undefined): Result<readonly TrustedKey[], 'invalid_trusted_keys'> {
  const paths = (setting ?? '')
    .split(',')
    .map((path) => path.trim())
    .filter(Boolean);
  if (paths.length === 0) return ok([]);
  const problems: string[] = [];
  const entries: { publicKeyPem: string; source: string }[] = [];
  for (const path of paths) {
    let files: string[];
    try {
      files = statSync(path).isDirectory()
        ? readdirSync(path)
            .filter((name) => name.endsWith('.pub'))
            .sort()
            .map((name) => join(path, name))
        : [path];
    } catch (error) {
      problems.push(`${path}: ${(error as Error).message}`);
      continue;
    }
    if (files.length === 0) problems.push(`${path}: no .pub files in this directory`);
    for (const file of files) {
      try {
        entries.push({ publicKeyPem: readFileSync(file, 'utf8'), source: file });
      } catch (error) {
        problems.push(`${file}: ${(error as Error).message}`);
      }
    }
  }
  if (problems.length === 0) {
    const parsed = parseTrustedKeys(entries.map(({ publicKeyPem }) => ({ publicKeyPem })));
    if (parsed.ok) return parsed;
    // parseTrustedKeys numbers keys from 1 in the order given: name the files.
    const named = parsed.error.message.replace(/key (\d+)/g, (match, index: string) => {
      const source = entries[Number(index) - 1]?.source;
      return source ? `${match} (${source})` : match;
    });
    problems.push(named);
  }
  return fail('invalid_trusted_keys', `trusted keys: ${problems.join('; ')}`);
}
