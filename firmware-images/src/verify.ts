import { verify as verifyEd25519 } from 'node:crypto';
import { canonicalBytes, canonicalJson, fail, ok, type Result, SignedModelRelease } from '@edgeloop/protocol';
import { describeIssues } from './errors.ts';
import { findReleaseProblems, formatInstant } from './release-rules.ts';
import { parsePublicKeyPem, type TrustedKey } from './trusted-keys.ts';

/*
 * Verification of signed model releases. Imported by the control plane (at upload) and by the
 * agent (before installing), so this module holds no signing code and no file-system access:
 * callers hash files themselves (or use verifyReleaseFile from the package root).
 *
 * Every function is pure (the clock comes in as `now`) and returns a Result; a bad release never
 * throws. Use the returned value, not the input: it is the schema-parsed release that was verified.
 */

export {
  KEY_ID_HEX_LENGTH,
  keyIdOf,
  parsePublicKeyPem,
  parseTrustedKeys,
  type TrustedKey,
  type TrustedKeyInput,
  trustedKeyFromPem,
} from './trusted-keys.ts';

/** Every reason a release is refused, in the order verifyRelease checks them. */
export const VERIFY_ERROR_CODES = [
  'malformed',
  'unknown_key',
  'bad_signature',
  'expired',
  'hardware_incompatible',
  'release_counter_rollback',
  'size_mismatch',
  'hash_mismatch',
] as const;
export type VerifyErrorCode = (typeof VERIFY_ERROR_CODES)[number];
export type SignatureErrorCode = 'malformed' | 'unknown_key' | 'bad_signature';

const ED25519_SIGNATURE_BYTES = 64;

/**
 * Checks that `signed` is a SignedModelRelease whose signature was made by one of `trustedKeys`.
 *
 * - `malformed`: fails the protocol SignedModelRelease schema, breaks a release rule
 *   (findReleaseProblems), or is not in normalized form: the release must be exactly what the
 *   schema parses it to (no unknown members, defaults written out), which is what signRelease
 *   writes. So the signed bytes, the bytes on the wire and the parsed value never differ.
 * - `unknown_key`: release.keyId is not in `trustedKeys` (or that entry's PEM is unusable).
 * - `bad_signature`: the signature is not 64 bytes of canonical base64, or does not verify over
 *   canonicalBytes(release).
 */
export function verifySignature(
  signed: unknown,
  trustedKeys: readonly TrustedKey[],
): Result<SignedModelRelease, SignatureErrorCode> {
  const parsed = SignedModelRelease.safeParse(signed);
  if (!parsed.success) return fail('malformed', `not a signed model release: ${describeIssues(parsed.error.issues)}`);
  const { release, signature } = parsed.data;

  const difference = findDifference((signed as { release: unknown }).release, release, 'release');
  if (difference !== null) {
    return fail('malformed', `release is not in normalized form (as signRelease writes it): ${difference}`);
  }
  const problems = findReleaseProblems(release);
  if (problems.length > 0) return fail('malformed', problems.join('; '));

  const trusted = trustedKeys.find((key) => key.keyId === release.keyId);
  if (trusted === undefined) {
    return fail('unknown_key', `key ${release.keyId} is not a trusted key (trusted: ${listKeyIds(trustedKeys)})`);
  }
  const publicKey = parsePublicKeyPem(trusted.publicKeyPem);
  if (!publicKey.ok) {
    return fail('unknown_key', `trusted key ${release.keyId} cannot be used: ${publicKey.error.message}`);
  }

  const signatureBytes = Buffer.from(signature, 'base64');
  if (signatureBytes.length !== ED25519_SIGNATURE_BYTES || signatureBytes.toString('base64') !== signature) {
    return fail('bad_signature', `signature is not ${ED25519_SIGNATURE_BYTES} bytes of canonical base64`);
  }
  if (!verifyEd25519(null, canonicalBytes(release), publicKey.value, signatureBytes)) {
    return fail('bad_signature', `signature does not match the release under key ${release.keyId}`);
  }
  return ok(parsed.data);
}

export type VerifyReleaseOptions = {
  readonly trustedKeys: readonly TrustedKey[];
  /** Epoch ms; a release is expired from its expiresAt on. */
  readonly now: number;
  /** The device's hardware profile; null skips the check (the control plane at upload). */
  readonly hardwareProfile: string | null;
  /** Highest release counter installed for this model name; undefined when none was ever installed. */
  readonly highestReleaseCounter?: number;
  /** sha256 of the installed release that holds highestReleaseCounter (allows a re-install). */
  readonly highestReleaseSha256?: string;
  /** Facts about the downloaded file; each check is skipped when its fact is not given. */
  readonly fileSize?: number;
  readonly fileSha256?: string;
};

/**
 * Everything a device checks before installing a release, in this order (the first failure wins):
 *
 * 1. schema and release rules  `malformed`
 * 2. key known                  `unknown_key`
 * 3. signature                  `bad_signature`
 * 4. expiry                     `expired`: now >= expiresAt
 * 5. hardware                   `hardware_incompatible`: hardwareProfile must be in release.hardware
 *                               and in manifest.compatibleHardware; an empty list allows any
 * 6. anti-rollback              `release_counter_rollback`: releaseCounter < highestReleaseCounter
 *                               is refused. An equal counter is accepted only as a re-install of the
 *                               same bytes: highestReleaseSha256 given and equal to release.sha256;
 *                               otherwise refused. A higher counter is accepted. A deliberate
 *                               rollback is a new release (higher counter) of the old bytes.
 * 7. size                       `size_mismatch`: fileSize !== release.sizeBytes
 * 8. hash                       `hash_mismatch`: fileSha256 !== release.sha256
 */
export function verifyRelease(
  signed: unknown,
  options: VerifyReleaseOptions,
): Result<SignedModelRelease, VerifyErrorCode> {
  const verified = verifySignature(signed, options.trustedKeys);
  if (!verified.ok) return verified;
  const { release } = verified.value;

  if (options.now >= release.expiresAt) {
    return fail(
      'expired',
      `release ${release.name}@${release.version} expired at ${formatInstant(release.expiresAt)} (now ${formatInstant(options.now)})`,
    );
  }

  const profile = options.hardwareProfile;
  if (profile !== null) {
    for (const [list, what] of [
      [release.hardware, 'release hardware'],
      [release.manifest.compatibleHardware, "manifest's compatibleHardware"],
    ] as const) {
      if (list.length > 0 && !list.includes(profile)) {
        return fail('hardware_incompatible', `hardware profile ${profile} is not in the ${what} (${list.join(', ')})`);
      }
    }
  }

  const highest = options.highestReleaseCounter;
  if (highest !== undefined) {
    if (release.releaseCounter < highest) {
      return fail(
        'release_counter_rollback',
        `release counter ${release.releaseCounter} is below ${highest}, the highest installed for ${release.name}`,
      );
    }
    if (release.releaseCounter === highest && options.highestReleaseSha256?.toLowerCase() !== release.sha256) {
      return fail(
        'release_counter_rollback',
        `release counter ${release.releaseCounter} equals the highest installed for ${release.name}; ` +
          'an equal counter is accepted only to re-install the same bytes (sha256)',
      );
    }
  }

  if (options.fileSize !== undefined && options.fileSize !== release.sizeBytes) {
    return fail('size_mismatch', `file is ${options.fileSize} bytes, the release says ${release.sizeBytes}`);
  }
  if (options.fileSha256 !== undefined && options.fileSha256.toLowerCase() !== release.sha256) {
    return fail('hash_mismatch', `file sha256 ${options.fileSha256} differs from the release's ${release.sha256}`);
  }
  return verified;
}

function listKeyIds(keys: readonly TrustedKey[]): string {
  return keys.length === 0 ? 'none' : keys.map((key) => key.keyId).join(', ');
}

/**
 * The first place where `raw` and its parsed form differ, as `path: what`, or null when their
 * canonical JSON is identical.
 */
function findDifference(raw: unknown, parsed: unknown, path: string): string | null {
  let rawText: string;
  try {
    rawText = canonicalJson(raw);
  } catch (error) {
    return `${path}: ${(error as Error).message}`;
  }
  if (rawText === canonicalJson(parsed)) return null;
  if (isRecord(raw) && isRecord(parsed)) {
    for (const key of Object.keys(raw)) {
      if (raw[key] !== undefined && !(key in parsed)) return `${path}.${key}: unknown member`;
    }
    for (const key of Object.keys(parsed)) {
      if (raw[key] === undefined) return `${path}.${key}: missing (write defaults out)`;
      const inner = findDifference(raw[key], parsed[key], `${path}.${key}`);
      if (inner !== null) return inner;
    }
  }
  if (Array.isArray(raw) && Array.isArray(parsed) && raw.length === parsed.length) {
    for (let index = 0; index < raw.length; index += 1) {
      const inner = findDifference(raw[index], parsed[index], `${path}[${index}]`);
      if (inner !== null) return inner;
    }
  }
  return `${path}: differs from its parsed form`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
