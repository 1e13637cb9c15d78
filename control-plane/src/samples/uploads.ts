import { createHash, randomBytes } from 'node:crypto';
import {
  close as closeFd,
  createReadStream,
  fsync as fsyncFd,
  ftruncate,
  mkdirSync,
  open as openFd,
  readdirSync,
  rmSync,
  write as writeFd,
} from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describeIssues, type Failure, ok, SampleMetadata, type SampleUploadState } from '@edgeloop/protocol';
import { imageSize } from 'image-size';
import type { SampleRecord, SampleRepository, SampleUploadRecord } from '../db/repositories.ts';
import type { Counter, MetricsRegistry } from '../metrics.ts';
import type { BlobStore } from '../models/blob-store.ts';
import { fsyncDirectory, placeBlob, writeBlob } from './blob-files.ts';
import { createGroupCommit, type Settled } from './group-commit.ts';

/*
 * Resumable, idempotent sample uploads (the protocol is in protocol/src/samples.ts). The bytes a
 * device sent so far live in `<uploadDir>/<uploadId>.part`; a chunk is appended, fsynced, and only
 * then acknowledged (the offset in the database moves), so a crash of either side resumes from the
 * last acknowledged byte. At the last byte the file is hashed and checked as a JPEG of the declared
 * size; only then does it move into the blob store and become a sample. Anything else discards the
 * upload: nothing partial is ever stored.
 *
 * A one-request upload (putWhole) that fits the in-memory budget is received into memory, hashed,
 * checked there (sha256; width and height from the JPEG frame header, read by image-size) and
 * written once, straight to a temporary file (O_DSYNC) that is renamed to its content address; a
 * larger one (or one past the budget) streams to a part file first. Either way the sample is acknowledged only after its blob is
 * durable and its row committed: uploads that finish together share one group commit (each blob
 * directory fsynced once, then every row in one INSERT), and one failed row fails only itself.
 * SQLite runs WAL with synchronous=NORMAL (db/sqlite/database.ts): a committed row survives a crash
 * of the process, a power loss can take the last commits (the blob, fsynced first, is then an
 * orphan a later upload of the same image reuses, never a row without its image).
 */

export type UploadErrorCode =
  | 'bad_request'
  | 'forbidden'
  | 'not_found'
  | 'payload_too_large'
  | 'offset_mismatch'
  | 'conflict'
  | 'hash_mismatch'
  | 'unprocessable';

/** A refused request; `offset` is the acknowledged offset where it helps the device resume. */
export type UploadFailure = Failure<UploadErrorCode> & { readonly offset?: number };
export type UploadResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: UploadFailure };

export type SampleUploads = {
  /** POST: starts an upload, or says where the one for this image stands (created: false). */
  begin(uploader: Uploader, body: unknown): Promise<UploadResult<{ state: SampleUploadState; created: boolean }>>;
  /**
   * POST /api/v1/samples: metadata and the whole image in one request (no resume). Stored at once;
   * created: false when the device had stored this image already.
   */
  putWhole(
    uploader: Uploader,
    body: unknown,
    image: AsyncIterable<Uint8Array>,
  ): Promise<UploadResult<{ state: SampleUploadState; created: boolean }>>;
  /** Deletes part files of one-request uploads a crash left behind (call at start). */
  sweepWholeParts(): number;
  /** HEAD/GET: where an upload stands. */
  state(uploader: Uploader, uploadId: string): Promise<UploadResult<SampleUploadState>>;
  /**
   * PATCH: appends `body` at `offset`. Resolves with the new state; `complete` once the sample is
   * stored. A body that breaks off keeps (and acknowledges) the bytes that arrived.
   */
  append(
    uploader: Uploader,
    uploadId: string,
    offset: number,
    body: AsyncIterable<Uint8Array>,
    declaredLength: number | null,
  ): Promise<UploadResult<SampleUploadState & { readonly interrupted: boolean }>>;
  /** Discards every upload of a device with its bytes (a purge); returns how many. */
  discardDevice(deviceId: string): Promise<number>;
  /** Discards uploads untouched since `before` with their bytes; returns how many. */
  discardStale(before: number): Promise<number>;
};

export type SampleUploadsDeps = {
  readonly samples: SampleRepository;
  readonly blobs: BlobStore;
  /** Where partial uploads live (kept across restarts). */
  readonly uploadDir: string;
  readonly clock: { now(): number };
  readonly metrics: MetricsRegistry;
  readonly maxBytes: number;
  readonly newId?: (kind: 'upload' | 'sample') => string;
  /**
   * Bytes of one-request uploads held in memory at once (default 64 MiB); an image that does not
   * fit what is left streams to a part file instead. 0: every image streams to disk.
   */
  readonly inMemoryBytes?: number;
  /** Largest group commit (default 256 samples). */
  readonly maxBatch?: number;
};

/**
 * The authenticated device of a request. `labels`: its labels as enrolled (server truth), read
 * with its credential in one query (SampleRepository.uploaderOf); a stored sample takes its
 * `site` label and labels from them, not from what the device sent (a device's own claim is not
 * trusted). Absent: the metadata's are kept.
 */
export type Uploader = { readonly id: string; readonly labels?: Readonly<Record<string, string>> };

const UPLOAD_ID = /^up_[0-9a-f]{24}$/;
/** Part files of one-request uploads (no row, nothing to resume): swept at start. */
const WHOLE_PREFIX = 'whole-';

function randomId(kind: 'upload' | 'sample'): string {
  return `${kind === 'upload' ? 'up' : 'smp'}_${randomBytes(12).toString('hex')}`;
}

/** Bytes of a part file read for its JPEG header (markers before the frame header are < 64 KiB each). */
const HEAD_BYTES = 1024 * 1024;
/** Bytes of a resumable upload's first chunk kept in memory for the header check (read from the file past these). */
const HEAD_KEPT_BYTES = 64 * 1024;

const fsOpen = promisify(openFd);
const fsWrite = promisify(writeFd);
const fsSync = promisify(fsyncFd);
const fsClose = promisify(closeFd);
const fsTruncate = promisify(ftruncate);

/** The first bytes of a part file, where the frame header is. */
async function readHead(path: string, size: number): Promise<Buffer> {
  const head = Buffer.allocUnsafe(Math.min(size, HEAD_BYTES));
  const handle = await open(path, 'r');
  try {
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/**
 * Width and height of a JPEG from its frame header (SOF0-2: baseline, extended, progressive, as
 * image-size reads it), or null when the bytes are not such a JPEG. Nothing is decoded; sharp
 * decodes the pixels later, for a thumbnail.
 */
export function jpegSize(head: Buffer): { readonly width: number; readonly height: number } | null {
  try {
    const size = imageSize(head);
    return size.type === 'jpg' && size.width > 0 && size.height > 0 ? { width: size.width, height: size.height } : null;
  } catch {
    return null;
  }
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * The sample row of validated metadata. `deviceLabels` (the device record's, when known) fill
 * `labels` and `site` (its `site` label) in place of the device's claim.
 */
export function sampleRecordOf(
  id: string,
  metadata: SampleMetadata,
  receivedAt: number,
  deviceLabels?: Readonly<Record<string, string>> | null,
): SampleRecord {
  const labels = deviceLabels === undefined ? metadata.labels : { ...(deviceLabels ?? {}) };
  return {
    id,
    deviceId: metadata.deviceId,
    site: deviceLabels === undefined ? metadata.site : (deviceLabels?.site ?? null),
    labels,
    modelId: metadata.model?.id ?? null,
    modelSha256: metadata.model?.sha256 ?? null,
    strategy: metadata.strategy,
    reason: metadata.reason,
    tags: metadata.tags,
    predictions: metadata.predictions,
    frameTs: metadata.frameTs,
    bootId: metadata.bootId,
    seq: metadata.seq,
    imageSha256: metadata.image.sha256,
    bytes: metadata.image.bytes,
    width: metadata.image.width,
    height: metadata.image.height,
    thumbnailSha256: null,
    receivedAt,
  };
}

export function createSampleUploads(deps: SampleUploadsDeps): SampleUploads {
  const newId = deps.newId ?? randomId;
  const counters = {
    rejected: deps.metrics.counter(
      'edgeloop_sample_uploads_rejected_total',
      'Sample upload requests refused, by reason (the upload is discarded where it cannot go on)',
    ),
    stored: deps.metrics.counter('edgeloop_samples_stored_total', 'Samples stored (complete, verified uploads)'),
    duplicates: deps.metrics.counter(
      'edgeloop_sample_uploads_duplicate_total',
      'Uploads of an image the device had stored already (answered as complete)',
    ),
    received: deps.metrics.counter(
      'edgeloop_sample_upload_received_bytes_total',
      'Sample bytes received and acknowledged',
    ),
    resumed: deps.metrics.counter(
      'edgeloop_sample_uploads_resumed_total',
      'Chunks that continued an upload at an offset above 0',
    ),
  } satisfies Record<string, Counter>;
  const batchSizes = deps.metrics.summary(
    'edgeloop_sample_commit_batch_size',
    'Samples per group commit (blob directories fsynced once, rows in one INSERT)',
  );
  /** Uploads with a chunk being received in this process (one writer per upload). */
  const busy = new Set<string>();
  mkdirSync(deps.uploadDir, { recursive: true });
  const partPath = (uploadId: string) => join(deps.uploadDir, `${uploadId}.part`);

  const refuse = <T>(
    code: UploadErrorCode,
    message: string,
    reason: string = code,
    offset?: number,
  ): UploadResult<T> => {
    counters.rejected.inc({ reason });
    return { ok: false, error: { code, message, ...(offset !== undefined ? { offset } : {}) } };
  };

  const discard = async (upload: SampleUploadRecord) => {
    await deps.samples.deleteUpload(upload.uploadId);
    await rm(partPath(upload.uploadId), { force: true });
  };

  const completeState = (sample: SampleRecord): SampleUploadState => ({
    uploadId: sample.id,
    offset: sample.bytes,
    complete: true,
    sampleId: sample.id,
  });

  type Stored = { readonly created: boolean; readonly sample: SampleRecord };
  /** A sample whose blob is in place: its row, and the directories to fsync before the row goes in. */
  type Pending = { readonly record: SampleRecord; readonly dirs: readonly string[] };

  /**
   * The group commit: every blob directory of the batch fsynced once, then the rows in one
   * INSERT. A directory that fails to sync fails its samples only; a batch INSERT that fails is
   * retried row by row, so one bad row fails only its own request.
   */
  const commits = createGroupCommit<Pending, Stored>({
    maxBatch: deps.maxBatch ?? 256,
    onBatch: (size) => batchSizes.observe(size),
    async commit(items) {
      const dirs = [...new Set(items.flatMap((item) => item.dirs))];
      const failedDirs = new Map<string, unknown>();
      await Promise.all(
        dirs.map((dir) =>
          fsyncDirectory(dir).catch((error: unknown) => {
            failedDirs.set(dir, error);
          }),
        ),
      );
      const outcomes: (Settled<Stored> | null)[] = items.map((item) => {
        const dir = item.dirs.find((d) => failedDirs.has(d));
        return dir === undefined ? null : { ok: false, error: failedDirs.get(dir) };
      });
      const ready = items.filter((_, i) => outcomes[i] === null);
      const together = await deps.samples.insertMany(ready.map((item) => item.record)).catch(() => null);
      let next = 0;
      for (let i = 0; i < items.length; i++) {
        if (outcomes[i] !== null) continue;
        outcomes[i] = together
          ? { ok: true, value: together[next++]! }
          : await deps.samples.insert(items[i]!.record).then(
              (value): Settled<Stored> => ({ ok: true, value }),
              (error: unknown): Settled<Stored> => ({ ok: false, error }),
            );
      }
      return outcomes as Settled<Stored>[];
    },
  });

  /** The received bytes of an image: a part file on disk, or (one-request uploads) in memory. */
  type Received =
    | {
        readonly part: string;
        readonly bytes?: undefined;
        readonly digest: string | null;
        /** The first bytes of the part file, when they were kept on the way in. */
        readonly head?: Buffer | undefined;
      }
    | { readonly bytes: Buffer; readonly part?: undefined; readonly digest: string };

  /**
   * Checks the received bytes (sha256, a JPEG of the declared size), puts them in the blob store
   * and stores the sample (group commit). On a refusal a part file is deleted. `received` null:
   * the part file of a finished resumable upload is gone (see finalize).
   */
  const verifyAndStore = async (
    metadata: SampleMetadata,
    received: Received | null,
    uploader: Uploader,
  ): Promise<UploadResult<Stored>> => {
    let dirs: readonly string[] = [];
    if (received === null) {
      // A crash between moving the bytes and storing the row: the blob is there already.
      if (deps.blobs.sizeOf(metadata.image.sha256) !== metadata.image.bytes) {
        return refuse('unprocessable', 'the bytes of this upload were lost; start it again', 'lost_bytes');
      }
    } else {
      const refuseAndDrop = async (code: UploadErrorCode, message: string, reason: string) => {
        if (received.part !== undefined) await rm(received.part, { force: true });
        return refuse<Stored>(code, message, reason);
      };
      const sha256 = received.digest ?? (await hashFile(received.part!));
      if (sha256 !== metadata.image.sha256) {
        return refuseAndDrop(
          'hash_mismatch',
          `the bytes hash to ${sha256}, not the declared ${metadata.image.sha256}; the upload is discarded`,
          'hash_mismatch',
        );
      }
      // The header only (format and size), from the frame header: no pixels are decoded.
      const image =
        received.bytes !== undefined
          ? jpegSize(received.bytes)
          : ((received.head ? jpegSize(received.head) : null) ??
            (received.head?.length === metadata.image.bytes
              ? null
              : jpegSize(await readHead(received.part, metadata.image.bytes))));
      if (image === null) {
        return refuseAndDrop('unprocessable', 'the bytes are not a JPEG image; the upload is discarded', 'not_jpeg');
      }
      if (image.width !== metadata.image.width || image.height !== metadata.image.height) {
        return refuseAndDrop(
          'unprocessable',
          `the image is ${image.width}x${image.height}, the metadata says ${metadata.image.width}x${metadata.image.height}; the upload is discarded`,
          'size_mismatch',
        );
      }
      dirs =
        received.bytes !== undefined
          ? await writeBlob(deps.blobs, wholePath(), received.bytes, sha256)
          : await placeBlob(deps.blobs, received.part, sha256, metadata.image.bytes);
    }
    const stored = await commits.submit({
      record: sampleRecordOf(newId('sample'), metadata, deps.clock.now(), uploader.labels),
      dirs,
    });
    if (stored.created) counters.stored.inc();
    else counters.duplicates.inc();
    return ok(stored);
  };

  /** The last byte of a resumable upload arrived: verify and store, then the upload is done. */
  const finalize = async (
    upload: SampleUploadRecord,
    received: { readonly digest: string; readonly head: Buffer } | null,
    uploader: Uploader,
  ): Promise<UploadResult<SampleUploadState>> => {
    const part = partPath(upload.uploadId);
    const partExists =
      received !== null ||
      (await stat(part).then(
        () => true,
        () => false,
      ));
    const stored = await verifyAndStore(
      SampleMetadata.parse(upload.metadata),
      partExists ? { part, digest: received?.digest ?? null, head: received?.head } : null,
      uploader,
    );
    if (!stored.ok) {
      await discard(upload);
      return stored;
    }
    await deps.samples.deleteUpload(upload.uploadId);
    return ok(completeState(stored.value.sample));
  };

  /** Metadata a device may upload: valid, its own, within the size limit. */
  const admit = (deviceId: string, body: unknown): UploadResult<SampleMetadata> => {
    const parsed = SampleMetadata.safeParse(body);
    if (!parsed.success) {
      return refuse(
        'bad_request',
        `invalid sample metadata: ${describeIssues(parsed.error.issues)}`,
        'invalid_metadata',
      );
    }
    const metadata = parsed.data;
    if (metadata.deviceId !== deviceId) {
      return refuse(
        'forbidden',
        `device ${deviceId} may upload only its own samples, not ${metadata.deviceId}'s`,
        'other_device',
      );
    }
    if (metadata.image.bytes > deps.maxBytes) {
      return refuse('payload_too_large', `the image has ${metadata.image.bytes} bytes; the limit is ${deps.maxBytes}`);
    }
    return ok(metadata);
  };

  const owned = async (deviceId: string, uploadId: string): Promise<UploadResult<SampleUploadRecord>> => {
    const upload = UPLOAD_ID.test(uploadId) ? await deps.samples.getUpload(uploadId) : null;
    if (!upload)
      return refuse('not_found', `no upload ${uploadId} (finished, discarded or never started)`, 'unknown_upload');
    if (upload.deviceId !== deviceId) {
      return refuse('forbidden', `upload ${uploadId} belongs to another device`, 'other_device');
    }
    return ok(upload);
  };

  /** A new temporary file for the bytes of a one-request upload (swept at start). */
  // Unique by a random tag of this instance and a counter (files are created O_EXCL): a random
  // name per upload cost a call into the CSPRNG each.
  const wholeTag = randomBytes(8).toString('hex');
  let wholeCount = 0;
  const wholePath = () => join(deps.uploadDir, `${WHOLE_PREFIX}${wholeTag}-${(wholeCount++).toString(36)}.part`);
  /** Bytes of one-request uploads that may still be held in memory. */
  let memoryLeft = deps.inMemoryBytes ?? 64 * 1024 * 1024;

  const refuseCount = (written: number, declared: number): UploadResult<never> | null =>
    written < declared
      ? refuse(
          'bad_request',
          `the image broke off after ${written} of ${declared} bytes; nothing is stored`,
          'truncated',
        )
      : null;
  const tooMany = (declared: number) => refuse<never>('payload_too_large', `more bytes than the declared ${declared}`);

  /** A one-request image into memory, then hashed; exactly `declared` bytes or a refusal. */
  const receiveInMemory = async (
    image: AsyncIterable<Uint8Array>,
    declared: number,
  ): Promise<UploadResult<Received>> => {
    const chunks: Uint8Array[] = [];
    let written = 0;
    for await (const chunk of image) {
      if (chunk.byteLength === 0) continue;
      if (written + chunk.byteLength > declared) return tooMany(declared);
      chunks.push(chunk);
      written += chunk.byteLength;
    }
    const refused = refuseCount(written, declared);
    if (refused) return refused;
    // One chunk (the usual case: the request body was read whole) is used as it is, not copied.
    const only = chunks.length === 1 ? chunks[0]! : null;
    const bytes = only ? Buffer.from(only.buffer, only.byteOffset, only.byteLength) : Buffer.concat(chunks, written);
    // Hashed here, on the event loop (about 0.2 ms for 200 KB with SHA extensions): the thread
    // pool's WebCrypto digest costs more CPU in all (a copy and two thread hops) than the hash.
    const digest = createHash('sha256').update(bytes).digest('hex');
    return ok({ bytes, digest });
  };

  /** A one-request image streamed to a fsynced part file, hashed on the way (nothing kept on a refusal). */
  const receiveToPart = async (image: AsyncIterable<Uint8Array>, declared: number): Promise<UploadResult<Received>> => {
    const part = wholePath();
    const hash = createHash('sha256');
    let written = 0;
    let refusal: UploadResult<never> | null = null;
    const handle = await open(part, 'wx');
    try {
      for await (const chunk of image) {
        if (chunk.byteLength === 0) continue;
        if (written + chunk.byteLength > declared) {
          refusal = tooMany(declared);
          break;
        }
        hash.update(chunk);
        let at = 0;
        while (at < chunk.byteLength) {
          const { bytesWritten } = await handle.write(chunk, at, chunk.byteLength - at, written + at);
          at += bytesWritten;
        }
        written += chunk.byteLength;
      }
      refusal ??= refuseCount(written, declared);
      if (!refusal) await handle.sync();
    } catch (error) {
      await handle.close();
      await rm(part, { force: true });
      throw error;
    }
    await handle.close();
    if (refusal) {
      await rm(part, { force: true });
      return refusal;
    }
    return ok({ part, digest: hash.digest('hex') });
  };

  return {
    async begin(uploader, body) {
      const deviceId = uploader.id;
      const admitted = admit(deviceId, body);
      if (!admitted.ok) return admitted;
      const metadata = admitted.value;
      const stored = await deps.samples.findByImage(deviceId, metadata.image.sha256);
      if (stored) {
        counters.duplicates.inc();
        return ok({ state: completeState(stored), created: false });
      }
      const now = deps.clock.now();
      const candidate: SampleUploadRecord = {
        uploadId: newId('upload'),
        deviceId,
        metadata,
        imageSha256: metadata.image.sha256,
        bytes: metadata.image.bytes,
        offset: 0,
        createdAt: now,
        updatedAt: now,
      };
      let { created, upload } = await deps.samples.createUpload(candidate);
      if (!created && upload.bytes !== metadata.image.bytes) {
        // Same hash, another size: the earlier upload cannot be right. Start over.
        await discard(upload);
        ({ created, upload } = await deps.samples.createUpload(candidate));
      }
      if (created) {
        // The part file is made by the first chunk.
        return ok({ state: { uploadId: upload.uploadId, offset: 0, complete: false, sampleId: null }, created: true });
      }
      if (upload.offset === upload.bytes && !busy.has(upload.uploadId)) {
        const finished = await finalize(upload, null, uploader);
        if (!finished.ok) return finished;
        return ok({ state: finished.value, created: false });
      }
      return ok({
        state: { uploadId: upload.uploadId, offset: upload.offset, complete: false, sampleId: null },
        created: false,
      });
    },

    async putWhole(uploader, body, image) {
      const admitted = admit(uploader.id, body);
      if (!admitted.ok) return admitted;
      const metadata = admitted.value;
      // No lookup of a stored copy first: the image came with this request anyway, and a repeat
      // is found by the INSERT (ON CONFLICT), whose blob is there already (answered 200, created: false).
      const declared = metadata.image.bytes;
      const inMemory = declared <= memoryLeft;
      if (inMemory) memoryLeft -= declared;
      try {
        const received = inMemory ? await receiveInMemory(image, declared) : await receiveToPart(image, declared);
        if (!received.ok) return received;
        counters.received.inc({}, declared);
        const result = await verifyAndStore(metadata, received.value, uploader);
        if (!result.ok) return result;
        return ok({ state: completeState(result.value.sample), created: result.value.created });
      } finally {
        if (inMemory) memoryLeft += declared;
      }
    },

    async state(uploader, uploadId) {
      const found = await owned(uploader.id, uploadId);
      if (!found.ok) return found;
      return ok({ uploadId, offset: found.value.offset, complete: false, sampleId: null });
    },

    async append(uploader, uploadId, offset, body, declaredLength) {
      const found = await owned(uploader.id, uploadId);
      if (!found.ok) return found;
      const upload = found.value;
      if (busy.has(uploadId)) {
        return refuse(
          'conflict',
          `another chunk of upload ${uploadId} is being received; retry after it`,
          'busy',
          upload.offset,
        );
      }
      if (offset !== upload.offset) {
        return refuse(
          'offset_mismatch',
          `the chunk starts at ${offset}; ${upload.offset} bytes are acknowledged`,
          'offset_mismatch',
          upload.offset,
        );
      }
      const room = upload.bytes - upload.offset;
      if (declaredLength !== null && declaredLength > room) {
        await discard(upload);
        return refuse('payload_too_large', `the chunk has ${declaredLength} bytes; the image has only ${room} left`);
      }
      busy.add(uploadId);
      try {
        if (offset > 0) counters.resumed.inc();
        const part = partPath(uploadId);
        // From 0 the file starts afresh; later, bytes past the acknowledged offset (written before
        // a crash, never acknowledged) are cut off.
        // Plain descriptors, not FileHandles (see blob-files.ts): each call is one trip to the pool.
        const fd = offset === 0 ? await fsOpen(part, 'w') : await fsOpen(part, 'r+').catch(() => fsOpen(part, 'w+'));
        // A chunk that carries the whole image is hashed on the way in (no second read), and its
        // first bytes are kept for the JPEG header check.
        const hash = offset === 0 ? createHash('sha256') : null;
        const head: Buffer[] = [];
        let headBytes = 0;
        let written = 0;
        let interrupted = false;
        let tooLarge = false;
        try {
          if (offset > 0) await fsTruncate(fd, offset);
          try {
            for await (const chunk of body) {
              if (chunk.byteLength === 0) continue;
              if (written + chunk.byteLength > room) {
                tooLarge = true;
                break;
              }
              hash?.update(chunk);
              if (hash && headBytes < HEAD_KEPT_BYTES) {
                head.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
                headBytes += chunk.byteLength;
              }
              let at = 0;
              while (at < chunk.byteLength) {
                at += (await fsWrite(fd, chunk, at, chunk.byteLength - at, offset + written + at)).bytesWritten;
              }
              written += chunk.byteLength;
            }
          } catch {
            // The link broke mid-chunk: what arrived is kept and acknowledged below.
            interrupted = true;
          }
          await fsSync(fd);
        } finally {
          await fsClose(fd);
        }
        if (tooLarge) {
          await discard(upload);
          return refuse('payload_too_large', `more bytes than the declared ${upload.bytes}; the upload is discarded`);
        }
        const next = offset + written;
        if (written > 0) counters.received.inc({}, written);
        if (next < upload.bytes) {
          if (written > 0 && !(await deps.samples.advanceUpload(uploadId, offset, next, deps.clock.now()))) {
            return refuse('conflict', `upload ${uploadId} moved on meanwhile`, 'busy');
          }
          return ok({ uploadId, offset: next, complete: false, sampleId: null, interrupted });
        }
        // The last byte: verified and stored before anything is acknowledged (a crash before the
        // answer leaves the old offset, and the device sends the last chunk again).
        const finished = await finalize(
          { ...upload, offset: next },
          hash ? { digest: hash.digest('hex'), head: Buffer.concat(head, headBytes) } : null,
          uploader,
        );
        if (!finished.ok) return finished;
        return ok({ ...finished.value, interrupted });
      } finally {
        busy.delete(uploadId);
      }
    },

    sweepWholeParts() {
      let removed = 0;
      for (const name of readdirSync(deps.uploadDir)) {
        if (!name.startsWith(WHOLE_PREFIX)) continue;
        rmSync(join(deps.uploadDir, name), { force: true });
        removed++;
      }
      return removed;
    },

    async discardDevice(deviceId) {
      const ids = await deps.samples.deleteUploadsOfDevice(deviceId);
      for (const id of ids) await rm(partPath(id), { force: true });
      return ids.length;
    },

    async discardStale(before) {
      let removed = 0;
      for (;;) {
        const stale = (await deps.samples.staleUploads(before, 100)).filter((u) => !busy.has(u.uploadId));
        for (const upload of stale) await discard(upload);
        removed += stale.length;
        if (stale.length < 100) return removed;
      }
    },
  };
}
