import { type TrustedKey, verifyRelease } from '@edgeloop/firmware-images/verify';
import {
  canonicalJson,
  fail,
  type LineageFlag,
  type ModelAssignment,
  type ModelManifest,
  type ModelRef,
  type ModelSummary,
  type ModelView,
  modelFilePath,
  modelId,
  ok,
  type Result,
  type SignedModelRelease,
} from '@edgeloop/protocol';
import type { ModelRecord, ModelRepository } from '../db/repositories.ts';
import type { EventBus } from '../events.ts';
import type { MetricsRegistry } from '../metrics.ts';
import type { BlobStore, ReceivedBlob } from './blob-store.ts';
import type { LineageService } from './lineage.ts';

/*
 * The model registry: signed releases checked against the trusted public keys at upload, bytes
 * stored content-addressed, versions immutable. The control plane never holds a private key; it
 * only verifies. Devices verify again before installing (hardware, anti-rollback).
 */

export type RegisterErrorCode =
  | 'no_trusted_keys'
  | 'malformed'
  | 'unknown_key'
  | 'bad_signature'
  | 'expired'
  | 'size_mismatch'
  | 'hash_mismatch'
  | 'invalid_model'
  | 'conflict';

export type RegisterInput = {
  /** The `release` part: SignedModelRelease JSON text. */
  readonly releaseText: string;
  /** The `model` part, received into the blob store's temporary area. */
  readonly blob: ReceivedBlob;
  readonly uploadedBy: string | null;
  /** The uploading token's role, for the audit entry of a flagged lineage. */
  readonly uploaderRole?: string | null;
};

export type Registered = {
  readonly model: ModelRecord;
  readonly created: boolean;
  /** What the registry could not confirm of the release's lineage (accepted, but flagged). */
  readonly lineageFlags: readonly LineageFlag[];
};

/** Tracks model downloads for /metrics (the rollout benchmark reads peak concurrency). */
export type DownloadTracker = {
  /** Counts a download as started; call the returned function once when it ends. */
  begin(): (outcome: 'complete' | 'aborted') => void;
  served(bytes: number): void;
  refused(reason: string): void;
  readonly active: number;
  readonly peak: number;
  resetPeak(): void;
};

export type ModelRegistry = {
  readonly trustedKeyIds: readonly string[];
  register(input: RegisterInput): Promise<Result<Registered, RegisterErrorCode>>;
  get(name: string, version: string): Promise<ModelRecord | null>;
  /** The lineage flags stored for a model ([] when its release names no lineage). */
  lineageFlags(modelId: string): Promise<readonly LineageFlag[]>;
  getById(id: string): Promise<ModelRecord | null>;
  list(query: { name?: string; afterId?: string; limit: number }): Promise<ModelRecord[]>;
  /** Path of a registered model's bytes on disk. */
  pathOf(model: ModelRecord): string;
  readonly downloads: DownloadTracker;
};

/**
 * First bytes an ONNX file (a protobuf ModelProto) can start with: the tag of one of its fields
 * (ir_version, producer_name, ..., graph, opset_import, metadata_props, training_info, functions).
 * A cheap check that catches a JSON, zip or text file sent by mistake; the agent parses for real.
 */
const MODEL_PROTO_FIRST_BYTES: ReadonlySet<number> = new Set([
  0x08, 0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72, 0xa2, 0xca, 0xd2,
]);

export function toModelRef(model: ModelRecord): ModelRef {
  return { id: model.id, name: model.name, version: model.version, sha256: model.sha256 };
}

export function toModelSummary(model: ModelRecord): ModelSummary {
  const signed = JSON.parse(model.signed) as SignedModelRelease;
  return {
    id: model.id,
    name: model.name,
    version: model.version,
    sha256: model.sha256,
    sizeBytes: model.sizeBytes,
    releaseCounter: model.releaseCounter,
    adapter: model.adapter,
    keyId: model.keyId,
    issuedAt: model.issuedAt,
    expiresAt: model.expiresAt,
    hardware: [...signed.release.hardware],
    createdAt: model.createdAt,
    uploadedBy: model.uploadedBy,
    url: modelFilePath(model.name, model.version),
  };
}

export function toModelView(model: ModelRecord, lineageFlags: readonly LineageFlag[]): ModelView {
  const signed = JSON.parse(model.signed) as SignedModelRelease;
  return {
    ...toModelSummary(model),
    manifest: model.manifest as ModelManifest,
    signed,
    lineage: signed.release.lineage ?? null,
    lineageFlags: [...lineageFlags],
  };
}

/** The default of --rollouts-assignment-ttl-hours: an assignment is valid for 7 days. */
export const DEFAULT_ASSIGNMENT_TTL_MS = 7 * 86_400_000;

/**
 * What desired state tells a device to run for this model, valid until `expiresAt` (epoch ms): the
 * writer stamps it as now + the assignment TTL, and assignment-refresh.ts renews it before it lapses.
 */
export function toModelAssignment(
  model: ModelRecord,
  rolloutId: string | null,
  mode: 'active' | 'shadow',
  expiresAt: number,
): ModelAssignment {
  return {
    rolloutId,
    model: toModelRef(model),
    mode,
    url: modelFilePath(model.name, model.version),
    signed: JSON.parse(model.signed) as SignedModelRelease,
    expiresAt,
  };
}

function createDownloadTracker(metrics: MetricsRegistry): DownloadTracker {
  let active = 0;
  let peak = 0;
  const bytes = metrics.counter('edgeloop_model_download_bytes_total', 'Model bytes served');
  const finished = metrics.counter('edgeloop_model_downloads_total', 'Model downloads ended, by outcome');
  const refused = metrics.counter('edgeloop_model_download_refused_total', 'Model downloads refused, by reason');
  metrics.gauge('edgeloop_model_downloads_active', 'Model downloads in progress', () => active);
  metrics.gauge('edgeloop_model_downloads_peak', 'Most model downloads in progress at once since start', () => peak);
  return {
    begin() {
      active++;
      if (active > peak) peak = active;
      let ended = false;
      return (outcome) => {
        if (ended) return;
        ended = true;
        active--;
        finished.inc({ outcome });
      };
    },
    served(count) {
      bytes.inc(undefined, count);
    },
    refused(reason) {
      refused.inc({ reason });
    },
    get active() {
      return active;
    },
    get peak() {
      return peak;
    },
    resetPeak() {
      peak = active;
    },
  };
}

export function createModelRegistry(deps: {
  readonly models: ModelRepository;
  readonly blobs: BlobStore;
  readonly trustedKeys: readonly TrustedKey[];
  readonly clock: { now(): number };
  readonly metrics: MetricsRegistry;
  readonly bus: EventBus;
  /** Checks, stores and links the lineage a release names (models/lineage.ts); absent: not recorded. */
  readonly lineage?: Pick<LineageService, 'record' | 'flagsOf'>;
}): ModelRegistry {
  const uploads = deps.metrics.counter('edgeloop_model_uploads_total', 'Model uploads, by result');
  const downloads = createDownloadTracker(deps.metrics);

  const register = async (
    input: RegisterInput,
  ): Promise<Result<{ model: ModelRecord; created: boolean }, RegisterErrorCode>> => {
    const { blob } = input;
    if (deps.trustedKeys.length === 0) {
      return fail(
        'no_trusted_keys',
        'no trusted keys are configured, so no release can be verified: start the control plane with ' +
          '--trusted-keys (EDGELOOP_TRUSTED_KEYS) naming the public key files (.pub) releases are signed with',
      );
    }
    let signed: unknown;
    try {
      signed = JSON.parse(input.releaseText);
    } catch (error) {
      return fail('malformed', `the release part is not JSON: ${(error as Error).message}`);
    }
    const verified = verifyRelease(signed, {
      trustedKeys: deps.trustedKeys,
      now: deps.clock.now(),
      hardwareProfile: null,
      fileSize: blob.sizeBytes,
      fileSha256: blob.sha256,
    });
    if (!verified.ok) {
      // Hardware and anti-rollback are device checks (skipped here); the rest are upload errors.
      const code = verified.error.code;
      if (code === 'hardware_incompatible' || code === 'release_counter_rollback') {
        return fail('malformed', verified.error.message);
      }
      return fail(code, verified.error.message);
    }
    if (blob.firstByte === null || !MODEL_PROTO_FIRST_BYTES.has(blob.firstByte)) {
      return fail('invalid_model', 'the model part is not an ONNX file (it does not start like a protobuf ModelProto)');
    }
    const release = verified.value.release;
    const id = modelId(release.name, release.version);
    const signedText = JSON.stringify(verified.value);
    const sameRelease = (existing: ModelRecord) =>
      existing.sha256 === release.sha256 &&
      canonicalJson(JSON.parse(existing.signed) as unknown) === canonicalJson(verified.value);
    const conflict = (existing: ModelRecord) =>
      fail(
        'conflict',
        `model ${id} is already registered with ${existing.sha256 === release.sha256 ? 'another release of these bytes' : `other bytes (sha256 ${existing.sha256})`}; a version is immutable: publish a new version`,
      );

    const existing = await deps.models.get(id);
    if (existing) return sameRelease(existing) ? ok({ model: existing, created: false }) : conflict(existing);

    await blob.commit();
    const stored = await deps.models.create({
      id,
      name: release.name,
      version: release.version,
      sha256: release.sha256,
      sizeBytes: release.sizeBytes,
      releaseCounter: release.releaseCounter,
      adapter: release.manifest.adapter,
      keyId: release.keyId,
      issuedAt: release.issuedAt,
      expiresAt: release.expiresAt,
      signed: signedText,
      manifest: release.manifest,
      createdAt: deps.clock.now(),
      uploadedBy: input.uploadedBy,
    });
    if (!stored.created) {
      // Another upload of the same id won the race.
      return sameRelease(stored.model) ? ok({ model: stored.model, created: false }) : conflict(stored.model);
    }
    deps.bus.publish('model.registered', {
      modelId: id,
      sha256: release.sha256,
      sizeBytes: release.sizeBytes,
      releaseCounter: release.releaseCounter,
    });
    return ok(stored);
  };

  return {
    trustedKeyIds: deps.trustedKeys.map((key) => key.keyId),

    async register(input) {
      let result: Result<{ model: ModelRecord; created: boolean }, RegisterErrorCode>;
      try {
        result = await register(input);
      } finally {
        // Committed bytes were moved; anything else in the temporary area goes.
        await input.blob.discard();
      }
      uploads.inc({ result: result.ok ? (result.value.created ? 'created' : 'unchanged') : result.error.code });
      if (!result.ok) return result;
      // A re-upload records the lineage too: it repairs a row that a crash between the two writes lost.
      const { model } = result.value;
      const lineageFlags = deps.lineage
        ? await deps.lineage.record(model, (JSON.parse(model.signed) as SignedModelRelease).release, {
            actor: input.uploadedBy,
            role: input.uploaderRole ?? null,
          })
        : [];
      return ok({ ...result.value, lineageFlags });
    },

    async lineageFlags(modelId) {
      return deps.lineage ? deps.lineage.flagsOf(modelId) : [];
    },

    get(name, version) {
      return deps.models.get(modelId(name, version));
    },

    getById(id) {
      return deps.models.get(id);
    },

    list(query) {
      return deps.models.list(query);
    },

    pathOf(model) {
      return deps.blobs.pathOf(model.sha256);
    },

    downloads,
  };
}
