import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildReleaseFromFile, generateKeyPair, type KeyPair, signRelease } from '@edgeloop/firmware-images';
import {
  type ApiClient,
  type ModelManifestInput,
  type ModelView,
  type ReleaseLineage,
  type SignedModelRelease,
  unwrap,
} from '@edgeloop/protocol';
import type { TestControlPlane } from './harness.ts';

/*
 * Signed model releases for control-plane tests, made the way an operator makes them: a key pair
 * (its .pub file given to the control plane as a trusted key), a model file, buildReleaseFromFile
 * and signRelease. Model bytes are synthetic but start like an ONNX ModelProto (the registry does
 * not parse models; the agent does).
 */

export type SigningKit = {
  readonly dir: string;
  readonly key: KeyPair;
  /** Path of the trusted public key file (give it to --trusted-keys). */
  readonly publicKeyPath: string;
  /** Model bytes that look like ONNX: an ir_version field tag, then random bytes. */
  modelBytes(size: number): Buffer;
  /** Writes the bytes to a file and signs a release of them. */
  sign(
    bytes: Uint8Array,
    manifest: ModelManifestInput,
    options?: {
      key?: KeyPair;
      releaseCounter?: number;
      issuedAt?: number;
      ttlMs?: number;
      hardware?: string[];
      /** The release's signed lineage (dataset version, parent sha256, run id, trainer). */
      lineage?: ReleaseLineage;
    },
  ): Promise<SignedModelRelease>;
  /** Signs a release of the bytes and registers it through the typed client (admin or operator). */
  publish(
    client: ApiClient,
    bytes: Uint8Array,
    manifest: ModelManifestInput,
    options?: Parameters<SigningKit['sign']>[2],
  ): Promise<ModelView>;
  dispose(): void;
};

export function createSigningKit(): SigningKit {
  const dir = mkdtempSync(join(tmpdir(), 'edgeloop-models-'));
  const key = generateKeyPair();
  const publicKeyPath = join(dir, 'release.pub');
  writeFileSync(publicKeyPath, key.publicKeyPem);
  let files = 0;
  return {
    dir,
    key,
    publicKeyPath,
    modelBytes(size) {
      return Buffer.concat([Buffer.from([0x08, 0x07, 0x12, 0x04]), randomBytes(Math.max(0, size - 4))]);
    },
    async sign(bytes, manifest, options = {}) {
      const path = join(dir, `model-${files++}.onnx`);
      writeFileSync(path, bytes);
      const draft = await buildReleaseFromFile({
        modelPath: path,
        manifest,
        releaseCounter: options.releaseCounter ?? 1,
        issuedAt: options.issuedAt ?? Date.now(),
        ttlMs: options.ttlMs ?? 86_400_000,
        ...(options.hardware ? { hardware: options.hardware } : {}),
        ...(options.lineage ? { lineage: options.lineage } : {}),
      });
      return signRelease({ release: draft, privateKeyPem: (options.key ?? key).privateKeyPem });
    },
    async publish(client, bytes, manifest, options) {
      const signed = await this.sign(bytes, manifest, options);
      return unwrap(client.models.upload({ release: JSON.stringify(signed), model: new Blob([bytes]) }));
    },
    dispose() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The multipart upload of a release and a model file, as `curl -F release=@... -F model=@...` sends it. */
export function uploadForm(release: unknown, bytes: Uint8Array): FormData {
  const form = new FormData();
  form.append('release', typeof release === 'string' ? release : JSON.stringify(release));
  form.append('model', new Blob([bytes]), 'model.onnx');
  return form;
}

/**
 * POST /api/v1/models with a form as it is, through app.request, with the admin token unless
 * given. Not a client: it answers the raw Response, for the tests of how the server answers
 * uploads (bad signatures, malformed forms, wrong roles). A well-formed upload goes through
 * `kit.publish` or `client.models.upload`.
 */
export function postModelForm(
  t: TestControlPlane,
  form: FormData,
  token: string | null = t.adminToken,
): Promise<Response> {
  return t.raw('POST', '/api/v1/models', { token, form });
}
