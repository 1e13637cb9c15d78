import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildReleaseFromFile, type KeyPair, signRelease } from '@edgeloop/firmware-images';
import type { ModelAssignment, ModelManifestInput, SignedModelRelease } from '@edgeloop/protocol';
import { modelId } from '@edgeloop/protocol';

/* Signed releases and assignments for the model-update tests, made the way firmware-images makes them. */

export const DAY_MS = 86_400_000;

export type ReleaseOptions = {
  readonly keys: KeyPair;
  readonly modelPath: string;
  readonly manifest: ModelManifestInput;
  readonly counter: number;
  readonly issuedAt?: number;
  readonly ttlMs?: number;
  readonly hardware?: readonly string[];
};

export async function signedRelease(options: ReleaseOptions): Promise<SignedModelRelease> {
  const draft = await buildReleaseFromFile({
    modelPath: options.modelPath,
    manifest: options.manifest,
    releaseCounter: options.counter,
    issuedAt: options.issuedAt ?? Date.now() - 1000,
    ttlMs: options.ttlMs ?? 30 * DAY_MS,
    ...(options.hardware ? { hardware: options.hardware } : {}),
  });
  return signRelease({ release: draft, privateKeyPem: options.keys.privateKeyPem });
}

/** Writes `bytes` as `<dir>/<name>-<version>.onnx` and signs a release of it. */
export async function signedBytes(
  dir: string,
  bytes: Uint8Array,
  options: Omit<ReleaseOptions, 'modelPath'>,
): Promise<{ signed: SignedModelRelease; modelPath: string }> {
  const manifest = options.manifest as { name: string; version: string };
  const modelPath = path.join(dir, `${manifest.name}-${manifest.version}-${options.counter}.onnx`);
  writeFileSync(modelPath, bytes);
  return { signed: await signedRelease({ ...options, modelPath }), modelPath };
}

/** The registry path the control plane serves a model version at. */
export function registryPath(signed: SignedModelRelease): string {
  return `/api/v1/models/${signed.release.name}/${signed.release.version}/file`;
}

export function assignmentOf(
  signed: SignedModelRelease,
  options: { rolloutId?: string | null; mode?: 'active' | 'shadow'; url?: string; expiresAt?: number } = {},
): ModelAssignment {
  const { release } = signed;
  return {
    // Valid for a week unless told otherwise, as the control plane stamps it.
    expiresAt: options.expiresAt ?? Date.now() + 7 * DAY_MS,
    rolloutId: options.rolloutId === undefined ? 'rollout-1' : options.rolloutId,
    model: {
      id: modelId(release.name, release.version),
      name: release.name,
      version: release.version,
      sha256: release.sha256,
    },
    mode: options.mode ?? 'active',
    url: options.url ?? registryPath(signed),
    signed,
  };
}
