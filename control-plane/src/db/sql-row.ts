import type { SampleRecord } from './repositories.ts';

/*
 * Reading the rows of the plain-SQL aggregates (samples.ts, datasets.ts): column values as both
 * dialects return them, and the `samples` row, which the sample aggregate reads and dataset
 * exports read joined to their membership.
 */

/** A numeric column (PostgreSQL returns bigint as text). */
export const num = (value: unknown): number => Number(value);
/** A nullable text column. */
export const strOrNull = (value: unknown): string | null =>
  value === null || value === undefined ? null : String(value);

/** A `samples` row as a record; `readJson` is the dialect's (SqlDialect.readJson). */
export function toSampleRecord(row: Record<string, unknown>, readJson: (value: unknown) => unknown): SampleRecord {
  return {
    id: String(row.id),
    deviceId: String(row.device_id),
    site: strOrNull(row.site),
    labels: (readJson(row.labels) ?? {}) as Record<string, string>,
    modelId: strOrNull(row.model_id),
    modelSha256: strOrNull(row.model_sha256),
    strategy: String(row.strategy),
    reason: String(row.reason),
    tags: (readJson(row.tags) ?? []) as string[],
    predictions: readJson(row.predictions) ?? [],
    frameTs: num(row.frame_ts),
    bootId: String(row.boot_id),
    seq: num(row.seq),
    imageSha256: String(row.image_sha256),
    bytes: num(row.bytes),
    width: num(row.width),
    height: num(row.height),
    thumbnailSha256: strOrNull(row.thumbnail_sha256),
    receivedAt: num(row.received_at),
  };
}
