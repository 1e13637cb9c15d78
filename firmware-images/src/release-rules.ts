import type { ModelRelease } from '@edgeloop/protocol';

/**
 * Rules a release must follow beyond the protocol schema. The signer refuses to sign a release
 * that breaks one, and a verifier calls such a release `malformed`. Pure; no key material.
 *
 * - the manifest's name and version are the release's name and version;
 * - expiresAt is after issuedAt;
 * - when the manifest lists compatible hardware, the release's hardware list names only profiles
 *   from it (a release may narrow the manifest's list, never widen it).
 */
export function findReleaseProblems(release: ModelRelease): string[] {
  const problems: string[] = [];
  if (release.manifest.name !== release.name) {
    problems.push(`manifest name ${release.manifest.name} differs from release name ${release.name}`);
  }
  if (release.manifest.version !== release.version) {
    problems.push(`manifest version ${release.manifest.version} differs from release version ${release.version}`);
  }
  if (release.expiresAt <= release.issuedAt) {
    problems.push(
      `expiresAt ${formatInstant(release.expiresAt)} is not after issuedAt ${formatInstant(release.issuedAt)}`,
    );
  }
  const allowed = release.manifest.compatibleHardware;
  if (allowed.length > 0) {
    const extra = release.hardware.filter((profile) => !allowed.includes(profile));
    if (extra.length > 0) {
      problems.push(`hardware ${extra.join(', ')} is not in the manifest's compatibleHardware (${allowed.join(', ')})`);
    }
  }
  return problems;
}

/** An epoch-ms instant as ISO 8601, or `<n> ms` when it is outside the Date range. */
export function formatInstant(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? `${ms} ms` : date.toISOString();
}
