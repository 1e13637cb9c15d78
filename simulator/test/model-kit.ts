import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildReleaseFromFile, generateKeyPair, signRelease } from '@edgeloop/firmware-images';
import {
  createApiClient,
  type ModelManifestInput,
  type ModelRef,
  modelId,
  type SignedModelRelease,
  unwrap,
} from '@edgeloop/protocol';

/*
 * Signed model releases made the way an operator makes them (a key pair whose public half the
 * control plane trusts, edgeloop-image's signing functions) and uploaded over the real HTTP API.
 * Simulated devices never run the bytes, so they are random bytes that start like an ONNX
 * ModelProto (the registry checks that much).
 */

export type ModelKit = {
  readonly dir: string;
  readonly publicKeyPath: string;
  readonly publicKeyPem: string;
  /** Signs `name@version` over fresh bytes of `size` and uploads it; returns its ModelRef. */
  publish(
    name: string,
    version: string,
    releaseCounter: number,
    size?: number,
  ): Promise<ModelRef & { sizeBytes: number }>;
  /** Signs and uploads a real model file with its manifest. */
  publishFile(
    modelPath: string,
    manifest: ModelManifestInput,
    releaseCounter: number,
  ): Promise<ModelRef & { sizeBytes: number }>;
  dispose(): void;
};

export function createModelKit(controlPlaneUrl: () => string, token: string): ModelKit {
  const dir = mkdtempSync(join(tmpdir(), 'edgeloop-kit-'));
  const key = generateKeyPair();
  const publicKeyPath = join(dir, 'release.pub');
  writeFileSync(publicKeyPath, key.publicKeyPem);
  return {
    dir,
    publicKeyPath,
    publicKeyPem: key.publicKeyPem,
    async publish(name, version, releaseCounter, size = 16 * 1024) {
      const bytes = Buffer.concat([Buffer.from([0x08, 0x08]), randomBytes(size - 2)]);
      const file = join(dir, `${name}-${version}.onnx`);
      writeFileSync(file, bytes);
      const manifest: ModelManifestInput = {
        name,
        version,
        adapter: 'yolo',
        input: { width: 640, height: 640 },
        labels: ['person', 'car', 'bicycle'],
      };
      return this.publishFile(file, manifest, releaseCounter);
    },
    async publishFile(file, manifest, releaseCounter) {
      const { name, version } = manifest;
      const bytes = readFileSync(file);
      const draft = await buildReleaseFromFile({
        modelPath: file,
        manifest,
        releaseCounter,
        issuedAt: Date.now(),
        ttlMs: 86_400_000,
      });
      const signed: SignedModelRelease = signRelease({ release: draft, privateKeyPem: key.privateKeyPem });
      const client = createApiClient({ baseUrl: controlPlaneUrl(), token });
      await unwrap(
        client.models.upload({ release: JSON.stringify(signed), model: new Blob([bytes]), fileName: `${name}.onnx` }),
      );
      return { id: modelId(name, version), name, version, sha256: signed.release.sha256, sizeBytes: bytes.byteLength };
    },
    dispose() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
