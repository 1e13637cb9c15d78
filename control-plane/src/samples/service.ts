import { join } from 'node:path';
import type { SamplePrediction, SamplePurgeResult, SampleStrategyKind, SampleView } from '@edgeloop/protocol';
import sharp from 'sharp';
import type { DeletedSample, SampleRecord, SampleRepository } from '../db/repositories.ts';
import type { MetricsRegistry } from '../metrics.ts';
import type { BlobStore } from '../models/blob-store.ts';
import { makePrefixDirectories, removeBlob, storeBlob } from './blob-files.ts';
import { createSampleUploads, type SampleUploads } from './uploads.ts';

/*
 * The sample store: uploads (uploads.ts), reads with thumbnails made by sharp and cached as
 * blobs, an explicit purge per device, and retention (age, then a fleet byte quota), which never
 * touches a sample a dataset version holds. Blobs are shared by content: one goes only when no
 * sample uses it any more.
 */

export type SampleService = {
  readonly uploads: SampleUploads;
  readonly repository: SampleRepository;
  readonly blobs: BlobStore;
  /** Where the image of a sample lives. */
  imagePath(sample: SampleRecord): string;
  /** The thumbnail (made once, then cached), or null when the image cannot be decoded. */
  thumbnail(sample: SampleRecord): Promise<{ readonly path: string; readonly sha256: string } | null>;
  /** Deletes every sample of a device, with their dataset memberships, and its uploads under way. */
  purgeDevice(deviceId: string): Promise<SamplePurgeResult>;
  /** One retention pass: old samples, then the quota, then stale uploads. */
  prune(): Promise<PruneOutcome>;
};

export type PruneOutcome = {
  readonly aged: number;
  readonly overQuota: number;
  readonly staleUploads: number;
  /** Bytes still above the quota (samples datasets hold are never pruned); 0 when within it. */
  readonly quotaExcessBytes: number;
};

export type SampleServiceDeps = {
  readonly samples: SampleRepository;
  readonly blobs: BlobStore;
  readonly dataDir: string;
  readonly clock: { now(): number };
  readonly metrics: MetricsRegistry;
  readonly config: {
    readonly maxBytes: number;
    readonly retentionDays: number;
    readonly quotaBytes: number;
    readonly uploadExpiryHours: number;
    readonly thumbnailWidth: number;
  };
  readonly chunk?: number;
  readonly newId?: (kind: 'upload' | 'sample') => string;
};

const DAY_MS = 86_400_000;

/** The API view of a stored sample. */
export function toSampleView(sample: SampleRecord): SampleView {
  return {
    id: sample.id,
    deviceId: sample.deviceId,
    site: sample.site,
    labels: { ...sample.labels },
    model:
      sample.modelId !== null && sample.modelSha256 !== null
        ? { id: sample.modelId, sha256: sample.modelSha256 }
        : null,
    strategy: sample.strategy as SampleStrategyKind,
    reason: sample.reason,
    tags: [...sample.tags],
    predictions: sample.predictions as SamplePrediction[],
    frameTs: sample.frameTs,
    bootId: sample.bootId,
    seq: sample.seq,
    image: {
      sha256: sample.imageSha256,
      bytes: sample.bytes,
      width: sample.width,
      height: sample.height,
      contentType: 'image/jpeg',
    },
    receivedAt: sample.receivedAt,
  };
}

export function createSampleService(deps: SampleServiceDeps): SampleService {
  const chunk = deps.chunk ?? 500;
  const uploads = createSampleUploads({
    samples: deps.samples,
    blobs: deps.blobs,
    uploadDir: join(deps.dataDir, 'sample-uploads'),
    clock: deps.clock,
    metrics: deps.metrics,
    maxBytes: deps.config.maxBytes,
    ...(deps.newId ? { newId: deps.newId } : {}),
  });
  uploads.sweepWholeParts();
  makePrefixDirectories(deps.blobs);
  const pruned = deps.metrics.counter(
    'edgeloop_samples_pruned_total',
    'Samples deleted, by reason (age, quota, purge)',
  );
  const thumbnails = deps.metrics.counter('edgeloop_sample_thumbnails_made_total', 'Thumbnails made (then cached)');

  /** Deletes blobs no sample uses any more. */
  const releaseBlobs = async (deleted: readonly DeletedSample[]) => {
    const candidates = new Set(
      deleted.flatMap((s) => [s.imageSha256, ...(s.thumbnailSha256 ? [s.thumbnailSha256] : [])]),
    );
    for (const sha256 of candidates) {
      if (!(await deps.samples.blobInUse(sha256))) await removeBlob(deps.blobs, sha256);
    }
  };

  const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

  return {
    uploads,
    repository: deps.samples,
    blobs: deps.blobs,

    imagePath: (sample) => deps.blobs.pathOf(sample.imageSha256),

    async thumbnail(sample) {
      if (sample.thumbnailSha256 && deps.blobs.sizeOf(sample.thumbnailSha256) !== null) {
        return { path: deps.blobs.pathOf(sample.thumbnailSha256), sha256: sample.thumbnailSha256 };
      }
      let bytes: Buffer;
      try {
        bytes = await sharp(deps.blobs.pathOf(sample.imageSha256))
          .resize({ width: deps.config.thumbnailWidth, withoutEnlargement: true })
          .jpeg({ quality: 80 })
          .toBuffer();
      } catch {
        return null;
      }
      const sha256 = await storeBlob(deps.blobs, bytes);
      await deps.samples.setThumbnail(sample.id, sha256);
      thumbnails.inc();
      return { path: deps.blobs.pathOf(sha256), sha256 };
    },

    async purgeDevice(deviceId) {
      await uploads.discardDevice(deviceId);
      const ids = await deps.samples.idsOfDevice(deviceId);
      let purged = 0;
      let bytes = 0;
      let removedFromDatasets = 0;
      for (let i = 0; i < ids.length; i += chunk) {
        const { deleted, memberships } = await deps.samples.deleteIds(ids.slice(i, i + chunk), {
          withMemberships: true,
        });
        await releaseBlobs(deleted);
        purged += deleted.length;
        bytes += deleted.reduce((sum, s) => sum + s.bytes, 0);
        removedFromDatasets += memberships;
      }
      pruned.inc({ reason: 'purge' }, purged);
      return { deviceId, purged, bytes, removedFromDatasets };
    },

    async prune() {
      const now = deps.clock.now();
      let aged = 0;
      if (deps.config.retentionDays > 0) {
        const before = now - deps.config.retentionDays * DAY_MS;
        for (;;) {
          const oldest = await deps.samples.oldestUnreferenced({ before, limit: chunk });
          const { deleted } = await deps.samples.deleteIds(oldest.map((s) => s.id));
          await releaseBlobs(deleted);
          aged += deleted.length;
          if (oldest.length < chunk) break;
          await yieldToLoop();
        }
        pruned.inc({ reason: 'age' }, aged);
      }
      let overQuota = 0;
      let quotaExcessBytes = 0;
      if (deps.config.quotaBytes > 0) {
        let excess = (await deps.samples.usage()).bytes - deps.config.quotaBytes;
        while (excess > 0) {
          const oldest = await deps.samples.oldestUnreferenced({ limit: chunk });
          if (oldest.length === 0) break;
          // Just enough of the oldest to get under the quota.
          const take: string[] = [];
          let freed = 0;
          for (const sample of oldest) {
            if (freed >= excess) break;
            take.push(sample.id);
            freed += sample.bytes;
          }
          const { deleted } = await deps.samples.deleteIds(take);
          await releaseBlobs(deleted);
          overQuota += deleted.length;
          excess -= deleted.reduce((sum, s) => sum + s.bytes, 0);
          if (deleted.length === 0) break;
          await yieldToLoop();
        }
        quotaExcessBytes = Math.max(0, excess);
        pruned.inc({ reason: 'quota' }, overQuota);
      }
      const staleUploads = await uploads.discardStale(now - deps.config.uploadExpiryHours * 3_600_000);
      return { aged, overQuota, staleUploads, quotaExcessBytes };
    },
  };
}
