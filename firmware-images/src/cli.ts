import { access, chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ModelManifest, ReleaseLineage } from '@edgeloop/protocol';
import { parseDuration } from './duration.ts';
import { describeIssues, SigningError } from './errors.ts';
import { generateKeyPair, parsePrivateKeyPem } from './keys.ts';
import { formatRecipe, IMAGE_FAMILIES, imageRecipe } from './recipes.ts';
import { formatInstant } from './release-rules.ts';
import { buildReleaseFromFile, signRelease } from './sign.ts';
import { parseTrustedKeys, type TrustedKey, trustedKeyFromPem, verifyRelease } from './verify.ts';
import { verifyReleaseFile } from './verify-file.ts';

/*
 * The edgeloop-image command line. Exit codes: 0 ok, 1 the operation failed (one line on stderr:
 * `code: message`, the code being a VerifyErrorCode, a SigningError code or file_unreadable),
 * 2 bad usage (unknown or missing flags, bad flag values).
 */

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

const DEFAULT_TTL = '90d';
const DEFAULT_KEY_NAME = 'release';

export type CliDeps = {
  readonly argv: readonly string[];
  readonly stdout: (line: string) => void;
  readonly stderr: (line: string) => void;
  readonly clock: { now(): number };
};

const HELP = {
  keygen: `edgeloop-image keygen --out DIR [--name NAME]
  Writes a new Ed25519 signing key: DIR/NAME.key (PKCS#8 PEM, mode 0600: keep it offline, never on
  the control plane or a device) and DIR/NAME.pub (SPKI PEM: give it to verifiers). Prints the key
  id (first 16 hex chars of sha256 over the raw public key). NAME defaults to ${DEFAULT_KEY_NAME}; existing
  files are never overwritten.`,
  sign: `edgeloop-image sign --key FILE --model FILE --manifest FILE --counter N --out FILE
                    [--expires-in DURATION | --expires-at ISO] [--hardware P1,P2]
                    [--dataset-version NAME@N] [--parent-model SHA256] [--run-id ID] [--trainer TEXT]
  Signs a model release: sha256 and size of --model, name and version from --manifest (a protocol
  ModelManifest in JSON), release counter N (monotonic per model name; a deliberate rollback is a
  new release of the old bytes with a higher counter), expiry (DURATION like 30d, 12h, 90m, 2w;
  default ${DEFAULT_TTL}), hardware profiles (default: the manifest's compatibleHardware; empty means any).
  The lineage flags name, inside the signed part, where the model came from: the dataset version it
  was trained on, the sha256 of the model it was trained from, the retraining run (the webhook's
  runId) and the trainer (free text, at most 256 characters). Changing any of them afterwards
  breaks the signature; the control plane flags, but accepts, names it does not know.`,
  verify: `edgeloop-image verify --release FILE --trust A.pub[,B.pub] [--model FILE] [--hardware PROFILE]
                      [--min-counter N [--installed-sha256 HEX]]
  Runs every check a device runs: schema, trusted key, signature, expiry, hardware (with
  --hardware), anti-rollback (with --min-counter N, the highest release counter installed: a lower
  counter is refused; an equal one only with --installed-sha256 equal to the release's sha256),
  size and sha256 of --model. Exit 0 when it passes, 1 with \`code: message\` when it does not.`,
  build: `edgeloop-image build --family FAMILY [--agent-version VERSION] [--json]
  Prints the image recipe for a device family (${IMAGE_FAMILIES.join(', ')}): base image, agent
  version, execution providers, how onnxruntime is installed. A recipe, not an image builder.`,
} as const;

type CommandName = keyof typeof HELP;

const USAGE = [
  'edgeloop-image: keys, signing and verification of edgeloop model releases; image recipes',
  '',
  ...Object.values(HELP).flatMap((text) => [text, '']),
  'Exit codes: 0 ok, 1 failed (stderr: `code: message`), 2 bad usage.',
].join('\n');

class UsageError extends Error {}

export async function runCli(deps: CliDeps): Promise<number> {
  const [command, ...rest] = deps.argv;
  try {
    if (command === undefined) throw new UsageError('no command given');
    if (command === '--help' || command === '-h' || command === 'help') {
      deps.stdout(USAGE);
      return EXIT_OK;
    }
    if (!Object.hasOwn(HELP, command)) throw new UsageError(`unknown command ${command}`);
    const name = command as CommandName;
    if (rest.includes('--help') || rest.includes('-h')) {
      deps.stdout(HELP[name]);
      return EXIT_OK;
    }
    switch (name) {
      case 'keygen':
        return await runKeygen(rest, deps);
      case 'sign':
        return await runSign(rest, deps);
      case 'verify':
        return await runVerify(rest, deps);
      case 'build':
        return runBuild(rest, deps);
    }
  } catch (error) {
    if (error instanceof UsageError || isParseArgsError(error)) {
      deps.stderr(`usage: ${oneLine((error as Error).message)}`);
      deps.stderr(
        `run \`edgeloop-image ${command !== undefined && Object.hasOwn(HELP, command) ? `${command} ` : ''}--help\``,
      );
      return EXIT_USAGE;
    }
    if (error instanceof SigningError) {
      deps.stderr(`${error.code}: ${oneLine(error.message)}`);
      return EXIT_FAILED;
    }
    deps.stderr(`error: ${oneLine((error as Error).message ?? String(error))}`);
    return EXIT_FAILED;
  }
}

async function runKeygen(args: readonly string[], deps: CliDeps): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: { out: { type: 'string' }, name: { type: 'string' } },
    strict: true,
    allowPositionals: false,
  });
  const out = required(values.out, '--out DIR');
  const name = values.name ?? DEFAULT_KEY_NAME;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new UsageError('--name may hold only letters, digits, . _ - (no path separators)');
  }
  const keyPath = path.join(out, `${name}.key`);
  const pubPath = path.join(out, `${name}.pub`);
  for (const file of [keyPath, pubPath]) {
    if (await exists(file)) throw new SigningError('file_error', `${file} exists; not overwriting a key`);
  }
  const pair = generateKeyPair();
  try {
    await mkdir(out, { recursive: true, mode: 0o700 });
    await writeFile(keyPath, pair.privateKeyPem, { mode: 0o600, flag: 'wx' });
    await chmod(keyPath, 0o600);
    await writeFile(pubPath, pair.publicKeyPem, { mode: 0o644, flag: 'wx' });
  } catch (error) {
    throw new SigningError('file_error', `cannot write the key files: ${(error as Error).message}`, { cause: error });
  }
  deps.stdout(pair.keyId);
  deps.stderr(`wrote ${keyPath} (private, 0600) and ${pubPath} (public); key id ${pair.keyId}`);
  return EXIT_OK;
}

async function runSign(args: readonly string[], deps: CliDeps): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      key: { type: 'string' },
      model: { type: 'string' },
      manifest: { type: 'string' },
      counter: { type: 'string' },
      'expires-in': { type: 'string' },
      'expires-at': { type: 'string' },
      hardware: { type: 'string' },
      out: { type: 'string' },
      'dataset-version': { type: 'string' },
      'parent-model': { type: 'string' },
      'run-id': { type: 'string' },
      trainer: { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  const keyFile = required(values.key, '--key FILE');
  const modelFile = required(values.model, '--model FILE');
  const manifestFile = required(values.manifest, '--manifest FILE');
  const releaseCounter = parseCounter(required(values.counter, '--counter N'), '--counter');
  const outFile = required(values.out, '--out FILE');
  if (values['expires-in'] !== undefined && values['expires-at'] !== undefined) {
    throw new UsageError('give --expires-in or --expires-at, not both');
  }
  const issuedAt = deps.clock.now();
  let expiry: { expiresAt: number } | { ttlMs: number };
  if (values['expires-at'] !== undefined) {
    const expiresAt = Date.parse(values['expires-at']);
    if (Number.isNaN(expiresAt)) throw new UsageError(`--expires-at ${values['expires-at']} is not an ISO 8601 date`);
    expiry = { expiresAt };
  } else {
    const text = values['expires-in'] ?? DEFAULT_TTL;
    const ttlMs = parseDuration(text);
    if (ttlMs === null) throw new UsageError(`--expires-in ${text} is not a duration like 30d, 12h, 90m, 45s, 2w`);
    expiry = { ttlMs };
  }
  const hardware = values.hardware === undefined ? undefined : parseList(values.hardware, '--hardware');
  const lineage = parseLineage({
    datasetVersion: values['dataset-version'],
    parentModel: values['parent-model'],
    runId: values['run-id'],
    trainer: values.trainer,
  });

  const privateKeyPem = await readText(keyFile, '--key');
  const key = parsePrivateKeyPem(privateKeyPem);
  const manifestJson = parseJson(await readText(manifestFile, '--manifest'));
  if (!manifestJson.ok)
    throw new SigningError('invalid_manifest', `${manifestFile} is not JSON: ${manifestJson.message}`);
  const manifest = ModelManifest.safeParse(manifestJson.value);
  if (!manifest.success) {
    throw new SigningError('invalid_manifest', `${manifestFile}: ${describeIssues(manifest.error.issues)}`);
  }
  const draft = await buildReleaseFromFile({
    modelPath: modelFile,
    manifest: manifest.data,
    releaseCounter,
    issuedAt,
    ...expiry,
    ...(hardware === undefined ? {} : { hardware }),
    lineage,
  });
  const signed = signRelease({ release: draft, privateKeyPem, keyId: key.keyId });
  const temp = `${outFile}.${process.pid}.tmp`;
  try {
    await writeFile(temp, `${JSON.stringify(signed, null, 2)}\n`, { mode: 0o644 });
    await rename(temp, outFile);
  } catch (error) {
    throw new SigningError('file_error', `cannot write ${outFile}: ${(error as Error).message}`, { cause: error });
  }
  const { release } = signed;
  deps.stdout(
    `signed ${release.name}@${release.version} counter ${release.releaseCounter} key ${release.keyId} ` +
      `sha256 ${release.sha256} size ${release.sizeBytes} expires ${formatInstant(release.expiresAt)}` +
      `${release.lineage === undefined ? '' : ` lineage ${formatLineage(release.lineage)}`} -> ${outFile}`,
  );
  return EXIT_OK;
}

async function runVerify(args: readonly string[], deps: CliDeps): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      release: { type: 'string' },
      trust: { type: 'string' },
      model: { type: 'string' },
      hardware: { type: 'string' },
      'min-counter': { type: 'string' },
      'installed-sha256': { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  const releaseFile = required(values.release, '--release FILE');
  const trustFiles = parseList(required(values.trust, '--trust A.pub[,B.pub]'), '--trust');
  const highestReleaseCounter =
    values['min-counter'] === undefined ? undefined : parseCounter(values['min-counter'], '--min-counter');
  const installedSha256 = values['installed-sha256'];
  if (installedSha256 !== undefined) {
    if (highestReleaseCounter === undefined) throw new UsageError('--installed-sha256 goes with --min-counter');
    if (!/^[0-9a-fA-F]{64}$/.test(installedSha256)) throw new UsageError('--installed-sha256 must be 64 hex digits');
  }

  const keys: TrustedKey[] = [];
  for (const file of trustFiles) {
    const key = trustedKeyFromPem(await readText(file, '--trust'));
    if (!key.ok) throw new SigningError('invalid_key', `${file}: ${key.error.message}`);
    keys.push(key.value);
  }
  const trusted = parseTrustedKeys(keys);
  if (!trusted.ok) throw new SigningError('invalid_key', trusted.error.message);

  const parsed = parseJson(await readText(releaseFile, '--release'));
  if (!parsed.ok) {
    deps.stderr(`malformed: ${releaseFile} is not JSON: ${oneLine(parsed.message)}`);
    return EXIT_FAILED;
  }
  const options = {
    trustedKeys: trusted.value,
    now: deps.clock.now(),
    hardwareProfile: values.hardware ?? null,
    highestReleaseCounter,
    highestReleaseSha256: installedSha256,
  };
  const result =
    values.model === undefined
      ? verifyRelease(parsed.value, options)
      : await verifyReleaseFile(parsed.value, { ...options, filePath: values.model });
  if (!result.ok) {
    deps.stderr(`${result.error.code}: ${oneLine(result.error.message)}`);
    return EXIT_FAILED;
  }
  const { release } = result.value;
  const skipped = [
    values.model === undefined ? 'file' : null,
    values.hardware === undefined ? 'hardware' : null,
    highestReleaseCounter === undefined ? 'counter' : null,
  ].filter((item) => item !== null);
  deps.stdout(
    `ok ${release.name}@${release.version} counter ${release.releaseCounter} key ${release.keyId} ` +
      `expires ${formatInstant(release.expiresAt)}${skipped.length > 0 ? ` (not checked: ${skipped.join(', ')})` : ''}`,
  );
  return EXIT_OK;
}

function runBuild(args: readonly string[], deps: CliDeps): number {
  const { values } = parseArgs({
    args: [...args],
    options: { family: { type: 'string' }, 'agent-version': { type: 'string' }, json: { type: 'boolean' } },
    strict: true,
    allowPositionals: false,
  });
  const family = required(values.family, `--family (${IMAGE_FAMILIES.join(', ')})`);
  const agentVersion = values['agent-version'] ?? packageVersion();
  const recipe = imageRecipe({ family, agentVersion });
  if (recipe === null) throw new UsageError(`unknown family ${family}; known: ${IMAGE_FAMILIES.join(', ')}`);
  deps.stdout(values.json === true ? JSON.stringify(recipe, null, 2) : formatRecipe(recipe));
  return EXIT_OK;
}

const LINEAGE_FLAGS = {
  datasetVersion: '--dataset-version',
  parentModel: '--parent-model',
  runId: '--run-id',
  trainer: '--trainer',
} as const satisfies Record<keyof ReleaseLineage, string>;

/** The lineage flags as a ReleaseLineage (only those given); a bad value is a usage error naming its flag. */
function parseLineage(values: { readonly [K in keyof ReleaseLineage]: string | undefined }): ReleaseLineage {
  const given = Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined)) as Partial<
    Record<keyof ReleaseLineage, string>
  >;
  const parent = given.parentModel;
  // A sha256 is accepted in either case, and written in the lowercase the protocol requires.
  if (parent !== undefined && /^[0-9a-fA-F]{64}$/.test(parent)) given.parentModel = parent.toLowerCase();
  const parsed = ReleaseLineage.safeParse(given);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const key = issue.path[0] as keyof ReleaseLineage | undefined;
    return key === undefined ? issue.message : `${LINEAGE_FLAGS[key]} ${given[key]}: ${issue.message}`;
  });
  throw new UsageError(problems.join('; '));
}

function formatLineage(lineage: ReleaseLineage): string {
  return (Object.keys(LINEAGE_FLAGS) as (keyof ReleaseLineage)[])
    .filter((key) => lineage[key] !== undefined)
    .map((key) => `${key}=${JSON.stringify(lineage[key])}`)
    .join(' ');
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value.trim() === '') throw new UsageError(`missing ${flag}`);
  return value;
}

function parseCounter(text: string, flag: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value)) {
    throw new UsageError(`${flag} ${text} is not a non-negative integer`);
  }
  return value;
}

function parseList(text: string, flag: string): string[] {
  const items = text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
  if (items.length === 0) throw new UsageError(`${flag} needs at least one item`);
  return items;
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false; message: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, message: (error as Error).message };
  }
}

async function readText(file: string, flag: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new SigningError('file_error', `cannot read ${flag} ${file}: ${(error as Error).message}`, { cause: error });
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

function packageVersion(): string {
  const pkg = createRequire(import.meta.url)('../package.json') as { version: string };
  return pkg.version;
}

function isParseArgsError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ');
}
