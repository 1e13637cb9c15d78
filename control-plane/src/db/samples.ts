import type { Labels } from '@edgeloop/protocol';
import { type SQL, sql } from 'drizzle-orm';
import type { DeletedSample, SampleQuery, SampleRecord, SampleRepository, SampleUploadRecord } from './repositories.ts';
import type { SqlDialect } from './sql-dialect.ts';
import { num, strOrNull, toSampleRecord } from './sql-row.ts';

/*
 * The sample aggregate, written once for every dialect: the queries are plain SQL that SQLite and
 * PostgreSQL both accept (ON CONFLICT DO NOTHING, DELETE ... RETURNING, EXISTS), and the few places
 * they differ (JSON parameters and paths, affected rows, how numbers come back) sit in SqlDialect
 * (sql-dialect.ts), built by each store (sqlite/store.ts, postgres/store.ts).
 */

const SAMPLE_COLUMNS = sql.raw(
  [
    'id',
    'device_id',
    'site',
    'labels',
    'model_id',
    'model_sha256',
    'strategy',
    'reason',
    'tags',
    'predictions',
    'frame_ts',
    'boot_id',
    'seq',
    'image_sha256',
    'bytes',
    'width',
    'height',
    'thumbnail_sha256',
    'received_at',
  ].join(', '),
);

const UPLOAD_COLUMNS = sql.raw('upload_id, device_id, metadata, image_sha256, bytes, "offset", created_at, updated_at');

const NOT_REFERENCED = sql.raw('NOT EXISTS (SELECT 1 FROM dataset_samples ds WHERE ds.sample_id = samples.id)');

export function createSampleRepository(dialect: SqlDialect): SampleRepository {
  const toSample = (row: Record<string, unknown>): SampleRecord => toSampleRecord(row, dialect.readJson);

  const toUpload = (row: Record<string, unknown>): SampleUploadRecord => ({
    uploadId: String(row.upload_id),
    deviceId: String(row.device_id),
    metadata: dialect.readJson(row.metadata),
    imageSha256: String(row.image_sha256),
    bytes: num(row.bytes),
    offset: num(row.offset),
    createdAt: num(row.created_at),
    updatedAt: num(row.updated_at),
  });

  const toDeleted = (row: Record<string, unknown>): DeletedSample => ({
    id: String(row.id),
    imageSha256: String(row.image_sha256),
    thumbnailSha256: strOrNull(row.thumbnail_sha256),
    bytes: num(row.bytes),
  });

  const inList = (values: readonly string[]) =>
    sql.join(
      values.map((value) => sql`${value}`),
      sql`, `,
    );

  const findByImage = async (deviceId: string, imageSha256: string) => {
    const [row] = await dialect.all(
      sql`SELECT ${SAMPLE_COLUMNS} FROM samples WHERE device_id = ${deviceId} AND image_sha256 = ${imageSha256}`,
    );
    return row ? toSample(row) : null;
  };

  const getUpload = async (uploadId: string) => {
    const [row] = await dialect.all(sql`SELECT ${UPLOAD_COLUMNS} FROM sample_uploads WHERE upload_id = ${uploadId}`);
    return row ? toUpload(row) : null;
  };

  const sampleValues = (sample: SampleRecord) => sql`(
    ${sample.id}, ${sample.deviceId}, ${sample.site}, ${dialect.json(sample.labels)}, ${sample.modelId},
    ${sample.modelSha256}, ${sample.strategy}, ${sample.reason}, ${dialect.json(sample.tags)},
    ${dialect.json(sample.predictions)}, ${sample.frameTs}, ${sample.bootId}, ${sample.seq},
    ${sample.imageSha256}, ${sample.bytes}, ${sample.width}, ${sample.height}, ${sample.thumbnailSha256},
    ${sample.receivedAt})`;

  /** The row that holds (device, image) already, for a sample that was not inserted. */
  const existingOf = async (sample: SampleRecord) => {
    const existing = await findByImage(sample.deviceId, sample.imageSha256);
    if (!existing) throw new Error(`sample of ${sample.deviceId} with image ${sample.imageSha256} vanished`);
    return { created: false, sample: existing };
  };

  /** The WHERE conditions of a sample query (list and count). */
  const whereOf = (query: Omit<SampleQuery, 'limit'>): SQL[] => {
    const where: SQL[] = [sql`1 = 1`];
    if (query.deviceId !== undefined) where.push(sql`device_id = ${query.deviceId}`);
    if (query.site !== undefined) where.push(sql`site = ${query.site}`);
    for (const [key, value] of query.labels ?? [])
      where.push(sql`${dialect.jsonText(sql.raw('labels'), key)} = ${value}`);
    if (query.modelId !== undefined) where.push(sql`model_id = ${query.modelId}`);
    if (query.modelSha256 !== undefined) where.push(sql`model_sha256 = ${query.modelSha256}`);
    if (query.strategy !== undefined) where.push(sql`strategy = ${query.strategy}`);
    if (query.from !== undefined) where.push(sql`frame_ts >= ${query.from}`);
    if (query.to !== undefined) where.push(sql`frame_ts <= ${query.to}`);
    if (query.hasLabels !== undefined) {
      const labelled = sql.raw(
        'EXISTS (SELECT 1 FROM dataset_samples ds WHERE ds.sample_id = samples.id AND ds.annotations IS NOT NULL)',
      );
      where.push(query.hasLabels ? labelled : sql`NOT ${labelled}`);
    }
    if (query.receivedAfter !== undefined) where.push(sql`received_at > ${query.receivedAfter}`);
    if (query.before) {
      const { receivedAt, id } = query.before;
      where.push(sql`(received_at < ${receivedAt} OR (received_at = ${receivedAt} AND id < ${id}))`);
    }
    return where;
  };

  return {
    async insert(sample) {
      const inserted = await dialect.run(sql`
        INSERT INTO samples (${SAMPLE_COLUMNS}) VALUES ${sampleValues(sample)}
        ON CONFLICT (device_id, image_sha256) DO NOTHING`);
      if (inserted === 1) return { created: true, sample };
      return existingOf(sample);
    },

    async insertMany(samples) {
      if (samples.length === 0) return [];
      // One statement is one transaction in both dialects; RETURNING names the rows it made (a
      // repeat of a stored image, or of one earlier in the same batch, is not among them).
      const rows = await dialect.all(sql`
        INSERT INTO samples (${SAMPLE_COLUMNS}) VALUES ${sql.join(samples.map(sampleValues), sql`, `)}
        ON CONFLICT (device_id, image_sha256) DO NOTHING RETURNING id`);
      const made = new Set(rows.map((row) => String(row.id)));
      const results: { created: boolean; sample: SampleRecord }[] = [];
      for (const sample of samples) {
        results.push(made.has(sample.id) ? { created: true, sample } : await existingOf(sample));
      }
      return results;
    },

    async get(id) {
      const [row] = await dialect.all(sql`SELECT ${SAMPLE_COLUMNS} FROM samples WHERE id = ${id}`);
      return row ? toSample(row) : null;
    },

    findByImage,

    async uploaderOf(deviceId) {
      const [row] = await dialect.all(
        sql`SELECT id, secret_hash, secret_hash_next, secret_next_deadline, labels FROM devices
            WHERE id = ${deviceId} AND revoked_at IS NULL`,
      );
      if (!row) return null;
      return {
        id: String(row.id),
        secretHash: String(row.secret_hash),
        secretHashNext: strOrNull(row.secret_hash_next),
        secretNextDeadline: row.secret_next_deadline === null ? null : num(row.secret_next_deadline),
        labels: (dialect.readJson(row.labels) ?? {}) as Labels,
      };
    },

    async list(query: SampleQuery) {
      const where = whereOf(query);
      const rows = await dialect.all(sql`
        SELECT ${SAMPLE_COLUMNS} FROM samples WHERE ${sql.join(where, sql` AND `)}
        ORDER BY received_at DESC, id DESC LIMIT ${query.limit}`);
      return rows.map(toSample);
    },

    async count(query) {
      const [row] = await dialect.all(
        sql`SELECT count(*) AS n FROM samples WHERE ${sql.join(whereOf(query), sql` AND `)}`,
      );
      return num(row?.n ?? 0);
    },

    async setThumbnail(id, sha256) {
      await dialect.run(sql`UPDATE samples SET thumbnail_sha256 = ${sha256} WHERE id = ${id}`);
    },

    async usage() {
      const [row] = await dialect.all(sql`SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM samples`);
      return { count: num(row?.n ?? 0), bytes: num(row?.b ?? 0) };
    },

    async oldestUnreferenced({ before, limit }) {
      const age = before === undefined ? sql`` : sql` AND received_at < ${before}`;
      const rows = await dialect.all(sql`
        SELECT id, image_sha256, thumbnail_sha256, bytes FROM samples
        WHERE ${NOT_REFERENCED}${age} ORDER BY received_at ASC, id ASC LIMIT ${limit}`);
      return rows.map(toDeleted);
    },

    async deleteIds(ids, options = {}) {
      if (ids.length === 0) return { deleted: [], memberships: 0 };
      let memberships = 0;
      if (options.withMemberships) {
        memberships = await dialect.run(sql`DELETE FROM dataset_samples WHERE sample_id IN (${inList(ids)})`);
      }
      // Without memberships removed, a sample a dataset took meanwhile is kept (datasets are immutable).
      const guard = options.withMemberships ? sql`` : sql` AND ${NOT_REFERENCED}`;
      const rows = await dialect.all(sql`
        DELETE FROM samples WHERE id IN (${inList(ids)})${guard}
        RETURNING id, image_sha256, thumbnail_sha256, bytes`);
      return { deleted: rows.map(toDeleted), memberships };
    },

    async idsOfDevice(deviceId) {
      const rows = await dialect.all(sql`SELECT id FROM samples WHERE device_id = ${deviceId}`);
      return rows.map((row) => String(row.id));
    },

    async blobInUse(sha256) {
      const rows = await dialect.all(
        sql`SELECT 1 AS one FROM samples WHERE image_sha256 = ${sha256} OR thumbnail_sha256 = ${sha256} LIMIT 1`,
      );
      return rows.length > 0;
    },

    async createUpload(upload) {
      const inserted = await dialect.run(sql`
        INSERT INTO sample_uploads (${UPLOAD_COLUMNS}) VALUES (
          ${upload.uploadId}, ${upload.deviceId}, ${dialect.json(upload.metadata)}, ${upload.imageSha256},
          ${upload.bytes}, ${upload.offset}, ${upload.createdAt}, ${upload.updatedAt}
        ) ON CONFLICT (device_id, image_sha256) DO NOTHING`);
      if (inserted === 1) return { created: true, upload };
      const [row] = await dialect.all(sql`
        SELECT ${UPLOAD_COLUMNS} FROM sample_uploads
        WHERE device_id = ${upload.deviceId} AND image_sha256 = ${upload.imageSha256}`);
      if (!row) throw new Error(`upload of ${upload.deviceId} for ${upload.imageSha256} vanished`);
      return { created: false, upload: toUpload(row) };
    },

    getUpload,

    async advanceUpload(uploadId, expected, offset, now) {
      const changed = await dialect.run(sql`
        UPDATE sample_uploads SET "offset" = ${offset}, updated_at = ${now}
        WHERE upload_id = ${uploadId} AND "offset" = ${expected}`);
      return changed === 1;
    },

    async deleteUpload(uploadId) {
      await dialect.run(sql`DELETE FROM sample_uploads WHERE upload_id = ${uploadId}`);
    },

    async deleteUploadsOfDevice(deviceId) {
      const rows = await dialect.all(sql`DELETE FROM sample_uploads WHERE device_id = ${deviceId} RETURNING upload_id`);
      return rows.map((row) => String(row.upload_id));
    },

    async staleUploads(before, limit) {
      const rows = await dialect.all(sql`
        SELECT ${UPLOAD_COLUMNS} FROM sample_uploads WHERE updated_at < ${before}
        ORDER BY updated_at ASC LIMIT ${limit}`);
      return rows.map(toUpload);
    },
  };
}
