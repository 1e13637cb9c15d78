import { sign as signEd25519 } from 'node:crypto';
import {
  canonicalBytes,
  MODEL_RELEASE_SCHEMA,
  ModelManifest,
  type ModelManifestInput,
  ModelRelease,
  type ReleaseLineage,
  type SignedModelRelease,
} from '@edgeloop/protocol';
import { describeIssues, SigningError } from './errors.ts';
import { digestFile } from './file-digest.ts';
import { parsePrivateKeyPem } from './keys.ts';
import { findReleaseProblems } from './release-rules.ts';

/** The input shape of protocol's ModelRelease (defaults may be left out). */
type ModelReleaseInput = (typeof ModelRelease)['_zod']['input'];

/** A release before signing: `schema` and `keyId` may be left out (signRelease fills them in). */
export type ReleaseDraft = Omit<ModelReleaseInput, 'schema' | 'keyId'> & {
  readonly schema?: typeof MODEL_RELEASE_SCHEMA;
  readonly keyId?: string;
};

export type SignReleaseOptions = {
  readonly release: ReleaseDraft;
  /** PKCS#8 PEM Ed25519 private key. */
  readonly privateKeyPem: string;
  /** Optional: must be the key's own id (keyIdOf) when given; it is derived from the key anyway. */
  readonly keyId?: string;
};

/**
 * Signs a release: parses it with the protocol schema (filling defaults, so the result is in the
 * normalized form verifiers require), checks the release rules (findReleaseProblems), sets
 * `schema` and `keyId`, and signs canonicalBytes(release) with Ed25519; the signature is base64.
 *
 * Throws SigningError: `invalid_key` (not an Ed25519 PKCS#8 PEM), `key_id_mismatch` (options.keyId
 * or release.keyId is not this key's id), `invalid_release` (schema or rules).
 */
export function signRelease(options: SignReleaseOptions): SignedModelRelease {
  const key = parsePrivateKeyPem(options.privateKeyPem);
  for (const claimed of [options.keyId, options.release.keyId]) {
    if (claimed !== undefined && claimed !== key.keyId) {
      throw new SigningError('key_id_mismatch', `key id ${claimed} is not the id of this private key (${key.keyId})`);
    }
  }
  if (options.release.schema !== undefined && options.release.schema !== MODEL_RELEASE_SCHEMA) {
    throw new SigningError('invalid_release', `schema must be ${MODEL_RELEASE_SCHEMA}`);
  }
  const parsed = ModelRelease.safeParse({ ...options.release, schema: MODEL_RELEASE_SCHEMA, keyId: key.keyId });
  if (!parsed.success) throw new SigningError('invalid_release', describeIssues(parsed.error.issues));
  const release = parsed.data;
  const problems = findReleaseProblems(release);
  if (problems.length > 0) throw new SigningError('invalid_release', problems.join('; '));
  const signature = signEd25519(null, canonicalBytes(release), key.privateKey).toString('base64');
  return { release, signature };
}

export type BuildReleaseOptions = {
  /** The model file; its sha256 and size are computed here (streamed). */
  readonly modelPath: string;
  readonly manifest: ModelManifestInput;
  /** Monotonic per model name. */
  readonly releaseCounter: number;
  /** Epoch ms (the caller's clock). */
  readonly issuedAt: number;
  /** Give exactly one: an absolute expiry (epoch ms) or a time to live from issuedAt (ms). */
  readonly expiresAt?: number;
  readonly ttlMs?: number;
  /** Hardware profiles the release may be installed on; defaults to manifest.compatibleHardware. */
  readonly hardware?: readonly string[];
  /** Default to the manifest's; when given they must equal it. */
  readonly name?: string;
  readonly version?: string;
  /**
   * Where the model came from (dataset version, parent model sha256, retraining run, trainer),
   * signed with the rest. Members left undefined are left out; with none given the release has no
   * `lineage` at all, byte for byte what it was before lineage existed.
   */
  readonly lineage?: { readonly [K in keyof ReleaseLineage]?: ReleaseLineage[K] | undefined };
  readonly signal?: AbortSignal;
};

/**
 * Builds the release (unsigned, without keyId) for a model file and its manifest. Throws
 * SigningError: `invalid_manifest`, `invalid_release` (bad counter, expiry, hardware, name or
 * version, empty file), `file_error` (unreadable file). An abort rejects with the AbortError.
 */
export async function buildReleaseFromFile(options: BuildReleaseOptions): Promise<ReleaseDraft> {
  const manifest = ModelManifest.safeParse(options.manifest);
  if (!manifest.success) throw new SigningError('invalid_manifest', describeIssues(manifest.error.issues));
  const { name, version } = manifest.data;
  if (options.name !== undefined && options.name !== name) {
    throw new SigningError('invalid_release', `release name ${options.name} differs from the manifest's ${name}`);
  }
  if (options.version !== undefined && options.version !== version) {
    throw new SigningError(
      'invalid_release',
      `release version ${options.version} differs from the manifest's ${version}`,
    );
  }
  if ((options.expiresAt === undefined) === (options.ttlMs === undefined)) {
    throw new SigningError('invalid_release', 'give exactly one of expiresAt and ttlMs');
  }
  const expiresAt = options.expiresAt ?? options.issuedAt + (options.ttlMs ?? 0);

  let digest: { sha256: string; sizeBytes: number };
  try {
    digest = await digestFile(options.modelPath, { signal: options.signal });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    throw new SigningError('file_error', `cannot read model ${options.modelPath}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (digest.sizeBytes === 0) throw new SigningError('invalid_release', `model ${options.modelPath} is empty`);

  const draft: { -readonly [K in keyof ReleaseDraft]: ReleaseDraft[K] } = {
    name,
    version,
    sha256: digest.sha256,
    sizeBytes: digest.sizeBytes,
    releaseCounter: options.releaseCounter,
    issuedAt: options.issuedAt,
    expiresAt,
    hardware: [...(options.hardware ?? manifest.data.compatibleHardware)],
    manifest: manifest.data,
  };
  const lineage = definedMembers(options.lineage ?? {});
  if (Object.keys(lineage).length > 0) draft.lineage = lineage;
  const parsed = ModelRelease.omit({ keyId: true, schema: true }).safeParse(draft);
  if (!parsed.success) throw new SigningError('invalid_release', describeIssues(parsed.error.issues));
  const problems = findReleaseProblems({ ...parsed.data, schema: MODEL_RELEASE_SCHEMA, keyId: 'unsigned' });
  if (problems.length > 0) throw new SigningError('invalid_release', problems.join('; '));
  return parsed.data;
}

/** The members of `value` that are not undefined (a signed document never holds `undefined`). */
function definedMembers<T extends object>(value: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, member]) => member !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}
