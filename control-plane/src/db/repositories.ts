import type { ApiRole, Channel, Desired, DeviceStatus, HealthState, Labels, Result } from '@edgeloop/protocol';
import type { AuditRepository } from './audit.ts';
import type { SiteCountsQuery, SiteCountsRecord } from './device-sites.ts';
import type { IdempotencyRepository } from './idempotency.ts';
import type { ModelLineageRepository } from './model-lineage.ts';

export type { ApiRole };

/*
 * The storage contract, one repository per aggregate. Every function is async so that a
 * PostgreSQL implementation can sit behind the same interfaces (SQLite's driver is synchronous
 * underneath); test/store-contract.test.ts runs one suite against every implementation.
 */

/** What lists and the API show of a device. */
export type DeviceRecord = {
  readonly id: string;
  readonly labels: Labels;
  readonly enrolledAt: number;
  readonly status: DeviceStatus;
  readonly statusChangedAt: number | null;
  readonly health: HealthState;
  readonly healthReasons: readonly string[];
  readonly lastSeen: number | null;
  readonly bootId: string | null;
  readonly agentVersion: string | null;
  readonly keepaliveS: number | null;
  readonly telemetryIntervalS: number | null;
  readonly desiredVersion: number;
};

/** A device with its latest telemetry, reported and desired state (JSON as stored). */
export type DeviceDetailRecord = DeviceRecord & {
  readonly telemetry: unknown;
  readonly telemetryAt: number | null;
  readonly reported: unknown;
  readonly reportedAt: number | null;
  readonly desired: Desired | null;
};

/**
 * The live state the ingest writer keeps per device (it is the only writer of these fields).
 * Ordering keys are (bootId, seq) pairs of the message last applied.
 */
export type DeviceLiveState = {
  id: string;
  enrolledAt: number;
  status: DeviceStatus;
  statusChangedAt: number | null;
  statusBootId: string | null;
  statusSeq: number | null;
  /** Connection number (Status.session) of the status message last applied, when it had one. */
  statusSession: number | null;
  /** Boots seen, oldest first; the last one is the current boot. */
  bootIds: string[];
  lastSeen: number | null;
  agentVersion: string | null;
  keepaliveS: number | null;
  telemetryIntervalS: number | null;
  health: HealthState;
  healthReasons: string[];
  telemetryBootId: string | null;
  telemetrySeq: number | null;
  telemetryAt: number | null;
  reportedBootId: string | null;
  reportedSeq: number | null;
  reportedAt: number | null;
};

/** A live state as loaded at start, with the latest telemetry document to judge health from. */
export type LoadedLiveState = DeviceLiveState & { readonly telemetry: unknown };

/** A live-state write: the whole state, plus telemetry / reported documents when they changed. */
export type DeviceLiveWrite = {
  readonly state: DeviceLiveState;
  /** Set when the latest telemetry changed (the JSON document to store). */
  readonly telemetry?: unknown;
  readonly reported?: unknown;
};

export type DeviceListQuery = {
  readonly status?: DeviceStatus;
  readonly health?: HealthState;
  /** Every pair must match (AND). */
  readonly labels?: readonly (readonly [string, string])[];
  /** The reported active model: its name, and its version when given. */
  readonly model?: { readonly name: string; readonly version?: string };
  /** Devices with ids after this one (keyset paging, ordered by id). */
  readonly afterId?: string;
  readonly limit: number;
};

export type FleetCounts = {
  readonly total: number;
  readonly byStatus: Readonly<Record<string, number>>;
  readonly byHealth: Readonly<Record<string, number>>;
  readonly byHealthReason: Readonly<Record<string, number>>;
};

export type EnrollDevice = {
  readonly id: string;
  readonly labels: Labels;
  readonly secretHash: string;
  readonly now: number;
  /** How the device proves itself on MQTT; secret (the default) or cert (its certificate's fingerprint below). */
  readonly authMethod?: 'secret' | 'cert';
  /** sha256 (lowercase hex) of the device certificate issued at this enrollment (authMethod cert). */
  readonly certFingerprint?: string | null;
};

/**
 * The secret hashes of an active device: the current one and, while a rotation is pending, the
 * next one with the deadline after which only the next one works.
 */
export type DeviceCredential = {
  readonly secretHash: string;
  /** The rotated secret the device has not used yet; null when no rotation is pending. */
  readonly secretHashNext: string | null;
  /** After this instant (epoch ms) the current secret no longer works; null without a rotation. */
  readonly secretNextDeadline: number | null;
};

export type DeviceCredentialRepository = {
  /** The credential of an active (not revoked) device, or null. */
  get(id: string): Promise<DeviceCredential | null>;
  /**
   * Begins a rotation in one statement: sets the next secret's hash and the deadline. A pending
   * rotation is replaced; one whose deadline is at or before `now` is promoted first (its secret
   * had become the only valid one, so it is the old secret now). Null for no active device.
   */
  beginRotation(input: {
    readonly id: string;
    readonly secretHashNext: string;
    readonly deadline: number;
    readonly now: number;
  }): Promise<DeviceCredential | null>;
  /**
   * Makes the pending next secret the current one, in one statement, when the pending one is still
   * `secretHashNext`: idempotent (a repeat, or a rotation begun meanwhile, changes nothing: false).
   */
  promote(id: string, secretHashNext: string): Promise<boolean>;
};

export type DeviceRepository = {
  /** Creates a device, or re-creates one whose credential was revoked; `conflict` if it is active. */
  enroll(input: EnrollDevice): Promise<Result<DeviceRecord, 'conflict'>>;
  /** An active (not revoked) device, or null. */
  get(id: string): Promise<DeviceDetailRecord | null>;
  list(query: DeviceListQuery): Promise<DeviceRecord[]>;
  /** Sets labels (a null value removes one); null when no active device has this id. */
  patchLabels(id: string, patch: Readonly<Record<string, string | null>>): Promise<DeviceRecord | null>;
  /** Revokes the credential; false when no active device has this id. */
  revoke(id: string, now: number): Promise<boolean>;
  /** The secret hash of an active device, for MQTT authentication. */
  secretHash(id: string): Promise<string | null>;
  /** The certificate fingerprint of an active device enrolled with `auth: cert`; null otherwise. */
  certFingerprint(id: string): Promise<string | null>;
  /** Reads, changes and writes the desired state in one transaction; null for an unknown device. */
  updateDesired(id: string, update: (current: Desired | null) => Desired): Promise<Desired | null>;
  /** Desired state of every active device that has one (re-published at start). */
  listDesired(): Promise<{ id: string; desired: Desired }[]>;
  counts(): Promise<FleetCounts>;
  /** Active devices grouped by their `site` label, counted by status and health, a page of sites. */
  sites(query: SiteCountsQuery): Promise<SiteCountsRecord[]>;
  /** Live states of every active device (the ingest writer's cache is filled from these). */
  loadLiveStates(): Promise<LoadedLiveState[]>;
  loadLiveState(id: string): Promise<LoadedLiveState | null>;
  /**
   * What the rollout engine reads about active devices: by id (any number; read in chunks) or by
   * labels (every pair must match). Revoked devices are left out.
   */
  snapshots(query: DeviceSnapshotQuery): Promise<DeviceSnapshot[]>;
};

export type DeviceSnapshotQuery =
  | { readonly ids: readonly string[] }
  | { readonly labels: readonly (readonly [string, string])[] };

/** A device as the rollout engine sees it: labels, status, reported and desired state. */
export type DeviceSnapshot = {
  readonly id: string;
  readonly labels: Labels;
  readonly status: DeviceStatus;
  /** The latest Reported message (JSON as stored), or null. */
  readonly reported: unknown;
  readonly desired: Desired | null;
};

export type NewMessage = {
  readonly deviceId: string;
  readonly channel: Channel;
  readonly msgId: string;
  readonly bootId: string;
  readonly seq: number;
  readonly deviceTs: number;
  readonly receivedAt: number;
  readonly body: string;
  /** The device's ts was beyond the allowed skew from receivedAt, or before 2020 (default false). */
  readonly clockSkew?: boolean;
};

export type StoredMessage = NewMessage & { readonly id: number; readonly clockSkew: boolean };

/** Where a history page starts: rows strictly before this key in (receivedAt, seq, id) order. */
export type MessageCursor = { readonly receivedAt: number; readonly seq: number; readonly id: number };

export type MessageQuery = {
  readonly deviceId: string;
  readonly channel?: Channel;
  /** Keyset paging, newest first by (receivedAt, seq, id): rows strictly before this key. */
  readonly before?: MessageCursor;
  readonly limit: number;
};

export type MessageRepository = {
  /**
   * Newest first by the control plane's receive time, then the device's seq (then the row id):
   * the order of arrival. The device's own ts is data, never the order, so a skewed clock cannot
   * put a message first.
   */
  list(query: MessageQuery): Promise<StoredMessage[]>;
  /** Rows with this (device, msgId): 0 or 1. */
  count(deviceId: string, msgId?: string): Promise<number>;
  /** Deletes up to `limit` of the oldest rows received before `cutoff`; returns how many. */
  pruneOlderThan(cutoff: number, limit: number): Promise<number>;
  /**
   * The rollout-gate fields of every telemetry message received (control-plane time) in
   * [from, to], extracted in the database: one query, small rows (see telemetry-sample.ts).
   */
  telemetrySamples(range: { readonly from: number; readonly to: number }): Promise<TelemetrySample[]>;
};

/** The fields of one telemetry message that rollout gates use. */
export type TelemetrySample = {
  readonly deviceId: string;
  readonly receivedAt: number;
  /** sha256 of the model that produced the pipeline metrics; null without pipeline metrics. */
  readonly modelSha256: string | null;
  readonly frames: number;
  readonly errors: number;
  readonly windowS: number;
  readonly latencyP95: number | null;
  readonly detectionsPer1000: Readonly<Record<string, number>>;
  readonly confidence: readonly number[];
  readonly shadow: {
    readonly candidateSha256: string;
    readonly compared: number;
    readonly precision: number | null;
    readonly recall: number | null;
    readonly candidateLatencyP95: number | null;
  } | null;
};

export type NewDeadLetter = {
  readonly receivedAt: number;
  readonly deviceId: string | null;
  readonly topic: string;
  readonly reason: string;
  readonly detail: string;
  readonly payloadSize: number;
  readonly payloadExcerpt: string;
};

export type DeadLetter = NewDeadLetter & { readonly id: number };

export type DeadLetterQuery = {
  readonly deviceId?: string;
  readonly reason?: string;
  /** Keyset paging, newest first: rows with ids below this one. */
  readonly beforeId?: number;
  readonly limit: number;
};

export type DeadLetterRepository = {
  list(query: DeadLetterQuery): Promise<DeadLetter[]>;
  pruneOlderThan(cutoff: number, limit: number): Promise<number>;
};

export type ApiToken = {
  readonly id: string;
  readonly name: string;
  readonly role: ApiRole;
  readonly bootstrap: boolean;
  readonly createdAt: number;
  readonly revokedAt: number | null;
};

export type NewApiToken = {
  readonly id: string;
  readonly name: string;
  readonly role: ApiRole;
  readonly tokenHash: string;
  readonly now: number;
};

export type ApiTokenRepository = {
  create(token: NewApiToken): Promise<ApiToken>;
  /** The active token with this hash, or null. */
  findByHash(tokenHash: string): Promise<(ApiToken & { readonly tokenHash: string }) | null>;
  list(): Promise<ApiToken[]>;
  revoke(id: string, now: number): Promise<boolean>;
  /** Revokes the previous bootstrap token(s) and stores this one, in one transaction. */
  replaceBootstrap(token: NewApiToken): Promise<ApiToken>;
  activeAdminCount(): Promise<number>;
};

/**
 * How a commit keeps live state right when several writers share one database (replicas on one
 * PostgreSQL, or two processes on one SQLite file). Inside the transaction, with the rows of
 * batch.devices locked, the repository asks which rows another writer changed since the batch was
 * folded; for those it reads the rows whole and stores refold()'s writes instead, so the batch's
 * messages are ordered against the newest state by the rules of device-state.ts, whoever wrote it.
 */
export type LiveReconcile = {
  /** Ids of the (locked) rows that differ from the states the batch was folded from. */
  stale(stored: readonly DeviceLiveState[]): readonly string[];
  /**
   * Called with those rows whole (locked); returns the device writes to store instead of
   * batch.devices: the stale devices folded again on their rows, the others as they were.
   */
  refold(stored: readonly LoadedLiveState[]): readonly DeviceLiveWrite[];
};

/** A device whose boot the batch made current, and the seqs of that boot its latest state holds. */
export type PromotedBoot = {
  readonly deviceId: string;
  readonly bootId: string;
  /** Of the latest telemetry, when it is of this boot; null: any seq of the boot is newer. */
  readonly telemetrySeq: number | null;
  readonly reportedSeq: number | null;
};

/** The newest stored message of a channel of a promoted boot (the store does not order boots). */
export type StoredOfBoot = {
  readonly deviceId: string;
  readonly channel: 'telemetry' | 'reported';
  readonly body: string;
  readonly receivedAt: number;
};

/**
 * Telemetry and reported state of a boot stored before its birth (another replica stored them
 * while the birth waited unacknowledged) are not current when stored (device-state.ts rule 2).
 * When the batch makes that boot current, the commit looks them up, after inserting the batch's
 * messages and under the same locks, and stores what the rules make of them instead.
 */
export type BootCatchUp = {
  /** The devices whose boot this batch made current, as its writes now stand (after any refold). */
  promoted(): readonly PromotedBoot[];
  /** Called with the newest stored telemetry / reported of those boots past their seqs; returns the device writes to store. */
  apply(found: readonly StoredOfBoot[]): readonly DeviceLiveWrite[];
};

/** One flush of the ingest writer: everything in it commits in one transaction, or nothing does. */
export type IngestBatch = {
  readonly messages: readonly NewMessage[];
  readonly deadLetters: readonly NewDeadLetter[];
  readonly devices: readonly DeviceLiveWrite[];
  /** Absent: this batch's device writes are stored as they are (a store with one writer). */
  readonly reconcile?: LiveReconcile;
  /** Absent: no lookup of a promoted boot's earlier messages. */
  readonly lateBoots?: BootCatchUp;
};

export type IngestRepository = {
  /** Inserts messages (a duplicate (device, msgId) is skipped), dead letters and live states. */
  commit(batch: IngestBatch): Promise<{ readonly inserted: readonly boolean[] }>;
};

/* ----------------------------------------- models ------------------------------------------- */

/** A registered model version. `signed` is the SignedModelRelease JSON text, as verified. */
export type ModelRecord = {
  readonly id: string;
  readonly name: string;
  readonly version: string;
  readonly sha256: string;
  readonly sizeBytes: number;
  readonly releaseCounter: number;
  readonly adapter: string;
  readonly keyId: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly signed: string;
  readonly manifest: unknown;
  readonly createdAt: number;
  readonly uploadedBy: string | null;
};

export type ModelListQuery = {
  readonly name?: string;
  /** Keyset paging by id (byte order). */
  readonly afterId?: string;
  readonly limit: number;
};

export type ModelRepository = {
  /** Stores a new version; when the id exists, stores nothing and returns the existing row. */
  create(model: ModelRecord): Promise<{ readonly created: boolean; readonly model: ModelRecord }>;
  get(id: string): Promise<ModelRecord | null>;
  list(query: ModelListQuery): Promise<ModelRecord[]>;
};

/* ---------------------------------------- rollouts ------------------------------------------ */

export type RolloutRecord = {
  readonly id: string;
  readonly modelId: string;
  /** RolloutSpec (parsed, defaults filled in) as stored. */
  readonly spec: unknown;
  readonly status: string;
  readonly stageIndex: number;
  readonly stageStartedAt: number;
  readonly failingWindows: number;
  readonly lastEvaluatedAt: number | null;
  /** Cohorts { canary, control, order } as stored. */
  readonly cohorts: unknown;
  readonly reason: string | null;
  /** Increases with every write; writers compare it (optimistic concurrency). */
  readonly version: number;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly createdBy: string | null;
};

export type RolloutPatchRecord = Partial<
  Pick<RolloutRecord, 'status' | 'stageIndex' | 'stageStartedAt' | 'failingWindows' | 'lastEvaluatedAt' | 'reason'>
>;

export type AssignmentRecord = {
  readonly rolloutId: string;
  readonly deviceId: string;
  readonly mode: string;
  readonly stageIndex: number;
  readonly state: string;
  /** ModelRef JSON or null. */
  readonly previous: unknown;
  readonly assignedAt: number;
  readonly updatedAt: number;
  readonly reason: string | null;
};

export type NewRolloutEvent = {
  readonly rolloutId: string;
  readonly at: number;
  readonly type: string;
  readonly stage: string | null;
  readonly data: Readonly<Record<string, unknown>>;
};

export type RolloutEventRecord = NewRolloutEvent & { readonly id: number };

export type RolloutListQuery = {
  readonly status?: string;
  readonly modelId?: string;
  /** Keyset paging, newest first by (createdAt, id): rows strictly before this key. */
  readonly before?: { readonly createdAt: number; readonly id: string };
  readonly limit: number;
};

export type AssignmentListQuery = {
  readonly rolloutId: string;
  readonly state?: string;
  readonly afterDeviceId?: string;
  readonly limit: number;
};

export type RolloutEventQuery = {
  readonly rolloutId: string;
  readonly type?: string;
  /** Oldest first: events with ids above this one. */
  readonly afterId?: number;
  readonly limit: number;
};

export type RolloutRepository = {
  /** Stores a new rollout and its first event in one transaction. */
  create(rollout: RolloutRecord, event: NewRolloutEvent): Promise<void>;
  get(id: string): Promise<RolloutRecord | null>;
  list(query: RolloutListQuery): Promise<RolloutRecord[]>;
  /**
   * Rollouts the engine must look at: running or paused ones, and rolled-back or aborted ones
   * with devices not yet back (assigned, active, failed or reverting).
   */
  listWork(): Promise<RolloutRecord[]>;
  /**
   * Applies `patch` only when the row still has `expectedVersion` (bumping it), appending the
   * events in the same transaction. Null when another writer got there first.
   */
  update(
    id: string,
    expectedVersion: number,
    patch: RolloutPatchRecord,
    now: number,
    events?: readonly NewRolloutEvent[],
  ): Promise<RolloutRecord | null>;
  assignments(rolloutId: string): Promise<AssignmentRecord[]>;
  listAssignments(query: AssignmentListQuery): Promise<AssignmentRecord[]>;
  /** Inserts or replaces assignment rows (by rollout and device). */
  putAssignments(rows: readonly AssignmentRecord[]): Promise<void>;
  setAssignmentStates(
    rolloutId: string,
    changes: readonly { readonly deviceId: string; readonly state: string; readonly reason: string | null }[],
    now: number,
  ): Promise<void>;
  assignmentCounts(rolloutId: string): Promise<Record<string, number>>;
  appendEvents(events: readonly NewRolloutEvent[]): Promise<void>;
  listEvents(query: RolloutEventQuery): Promise<RolloutEventRecord[]>;
  /** The newest event of a type, or null. */
  lastEvent(rolloutId: string, type: string): Promise<RolloutEventRecord | null>;
  /** Models rollouts assigned to this device and still want it to have (state assigned or active). */
  assignedModelIds(deviceId: string): Promise<string[]>;
};

/* ----------------------------------------- samples ------------------------------------------ */

/** A stored hard sample: the device's SampleMetadata flattened, plus where and when it was stored. */
export type SampleRecord = {
  readonly id: string;
  readonly deviceId: string;
  readonly site: string | null;
  readonly labels: Readonly<Record<string, string>>;
  readonly modelId: string | null;
  readonly modelSha256: string | null;
  readonly strategy: string;
  readonly reason: string;
  readonly tags: readonly string[];
  /** SamplePrediction[] as stored. */
  readonly predictions: unknown;
  readonly frameTs: number;
  readonly bootId: string;
  readonly seq: number;
  readonly imageSha256: string;
  readonly bytes: number;
  readonly width: number;
  readonly height: number;
  readonly thumbnailSha256: string | null;
  readonly receivedAt: number;
};

export type SampleQuery = {
  readonly deviceId?: string;
  readonly site?: string;
  /** Device labels at capture; every pair must match (AND). */
  readonly labels?: readonly (readonly [string, string])[];
  readonly modelId?: string;
  readonly modelSha256?: string;
  readonly strategy?: string;
  /** Capture time (frameTs) range, inclusive. */
  readonly from?: number;
  readonly to?: number;
  /** Whether some dataset version holds human labels (annotations) for the sample. */
  readonly hasLabels?: boolean;
  /** Received by the control plane strictly after this time (epoch ms). */
  readonly receivedAfter?: number;
  /** Keyset paging, newest first by (receivedAt, id): rows strictly before this key. */
  readonly before?: { readonly receivedAt: number; readonly id: string };
  readonly limit: number;
};

/** An upload under way; its bytes so far are in a temporary file named after uploadId. */
export type SampleUploadRecord = {
  readonly uploadId: string;
  readonly deviceId: string;
  /** SampleMetadata as validated. */
  readonly metadata: unknown;
  readonly imageSha256: string;
  readonly bytes: number;
  readonly offset: number;
  readonly createdAt: number;
  readonly updatedAt: number;
};

/** What deleting samples freed: the rows, so their blobs can go when nothing else uses them. */
export type DeletedSample = {
  readonly id: string;
  readonly imageSha256: string;
  readonly thumbnailSha256: string | null;
  readonly bytes: number;
};

/** What a sample upload reads about its device (SampleRepository.uploaderOf). */
export type SampleUploaderRecord = DeviceCredential & {
  readonly id: string;
  readonly labels: Labels;
};

export type SampleRepository = {
  /** Stores a sample; when (device, image sha256) exists, stores nothing and returns the existing row. */
  insert(sample: SampleRecord): Promise<{ readonly created: boolean; readonly sample: SampleRecord }>;
  /**
   * Stores several samples in one statement (one commit: the group commit of uploads), each as
   * insert does; the results are in the same order. Throws (storing none) when any row is refused.
   */
  insertMany(samples: readonly SampleRecord[]): Promise<{ readonly created: boolean; readonly sample: SampleRecord }[]>;
  get(id: string): Promise<SampleRecord | null>;
  findByImage(deviceId: string, imageSha256: string): Promise<SampleRecord | null>;
  /**
   * The one device lookup of a sample upload: the secret hashes an active (not revoked) device's
   * credential is checked against (with a pending rotation's), and its enrolled labels (the server truth a sample takes), in
   * one query. Null for an unknown or revoked device.
   */
  uploaderOf(deviceId: string): Promise<SampleUploaderRecord | null>;
  /** Newest first by (receivedAt, id). */
  list(query: SampleQuery): Promise<SampleRecord[]>;
  /** How many samples the filters match (paging fields ignored). */
  count(query: Omit<SampleQuery, 'limit' | 'before'>): Promise<number>;
  setThumbnail(id: string, sha256: string): Promise<void>;
  /** Samples and bytes stored. */
  usage(): Promise<{ readonly count: number; readonly bytes: number }>;
  /**
   * The oldest samples (by receivedAt) that no dataset version references, received before
   * `before` when given: what retention deletes first.
   */
  oldestUnreferenced(query: { readonly before?: number; readonly limit: number }): Promise<DeletedSample[]>;
  /** Deletes these samples (and, with `withMemberships`, their dataset memberships); returns the rows deleted and memberships removed. */
  deleteIds(
    ids: readonly string[],
    options?: { readonly withMemberships?: boolean },
  ): Promise<{ readonly deleted: DeletedSample[]; readonly memberships: number }>;
  /** Ids of every sample of a device. */
  idsOfDevice(deviceId: string): Promise<string[]>;
  /** Whether any sample still uses this blob (as its image or thumbnail). */
  blobInUse(sha256: string): Promise<boolean>;

  createUpload(upload: SampleUploadRecord): Promise<{ readonly created: boolean; readonly upload: SampleUploadRecord }>;
  getUpload(uploadId: string): Promise<SampleUploadRecord | null>;
  /** Moves the acknowledged offset, only from `expected`; false when another writer moved it. */
  advanceUpload(uploadId: string, expected: number, offset: number, now: number): Promise<boolean>;
  deleteUpload(uploadId: string): Promise<void>;
  /** Deletes every upload of a device; returns their ids (their part files go too). */
  deleteUploadsOfDevice(deviceId: string): Promise<string[]>;
  /** Uploads not touched since `before`, oldest first. */
  staleUploads(before: number, limit: number): Promise<SampleUploadRecord[]>;
};

/* --------------------------------------- evaluations ---------------------------------------- */

/** A posted evaluation report (protocol CreateEvaluationRequest, validated before it was stored). */
export type EvaluationRecord = {
  readonly id: string;
  readonly modelId: string;
  readonly modelSha256: string;
  readonly datasetId: string;
  /** EvaluationMetrics. */
  readonly metrics: unknown;
  /** EvaluationBaseline, or null. */
  readonly baseline: unknown;
  /** Evaluator. */
  readonly evaluator: unknown;
  readonly createdAt: number;
  readonly createdBy: string | null;
};

export type EvaluationRepository = {
  insert(record: EvaluationRecord): Promise<void>;
  /** A model's evaluations, newest first; only on one dataset version, only those with a baseline. */
  list(query: {
    readonly modelId: string;
    readonly datasetId?: string;
    readonly withBaseline?: boolean;
    readonly limit: number;
  }): Promise<EvaluationRecord[]>;
};

/* ----------------------------------------- datasets ----------------------------------------- */

/** How a version was made (the `query` JSON column): its filters or ids, its splits, its labels. */
export type DatasetRecipe = {
  readonly source: 'query' | 'ids' | 'labels';
  /** The sample filters (source query). */
  readonly query?: unknown;
  readonly splits: { readonly train: number; readonly val: number; readonly test: number };
  /** Class names of imported labels (source labels). */
  readonly categories?: readonly string[];
  readonly annotationCount?: number;
};

export type DatasetRecord = {
  readonly id: string;
  readonly name: string;
  readonly version: number;
  readonly parentId: string | null;
  readonly recipe: DatasetRecipe;
  readonly sampleCount: number;
  readonly createdAt: number;
  readonly createdBy: string | null;
};

export type DatasetMembershipRow = {
  readonly sampleId: string;
  readonly split: string;
  /** Boxes of a labelled version (JSON as stored); null when the sample has none. */
  readonly annotations: unknown;
};

/** A member with its sample. */
export type DatasetMemberRow = DatasetMembershipRow & { readonly sample: SampleRecord };

export type DatasetRepository = {
  /** The highest version of a name, 0 when there is none. */
  latestVersion(name: string): Promise<number>;
  /**
   * Stores a version and its members in one transaction; `conflict` when the id or (name,
   * version) exists (another writer took that version number).
   */
  create(dataset: DatasetRecord, members: readonly DatasetMembershipRow[]): Promise<'created' | 'conflict'>;
  get(id: string): Promise<DatasetRecord | null>;
  /** Newest first by (createdAt, id). */
  list(query: {
    readonly name?: string;
    readonly before?: { readonly createdAt: number; readonly id: string };
    readonly limit: number;
  }): Promise<DatasetRecord[]>;
  /** Members per split. */
  splitCounts(id: string): Promise<Record<string, number>>;
  /** Members by sample id (keyset paging), with their sample rows; members whose sample was purged are left out. */
  members(id: string, page: { readonly afterSampleId?: string; readonly limit: number }): Promise<DatasetMemberRow[]>;
  /** Which of these ids are stored samples. */
  existingSampleIds(ids: readonly string[]): Promise<Set<string>>;
};

/* ---------------------------------------- retraining ---------------------------------------- */

/** A retraining policy of a model name (db/retraining.ts). */
export type RetrainingPolicyRecord = {
  readonly modelName: string;
  /** A RetrainingPolicy without its webhook secret (validated before it was stored). */
  readonly policy: unknown;
  /** The webhook secret sealed with AES-GCM (retraining/webhook-secret.ts); null without one. */
  readonly webhookSecret: string | null;
  readonly updatedAt: number;
  readonly updatedBy: string | null;
};

export type RetrainingPolicyRepository = {
  /** Stores the policy of a model name, replacing the one it had. */
  put(record: RetrainingPolicyRecord): Promise<void>;
  get(modelName: string): Promise<RetrainingPolicyRecord | null>;
  /** Every policy, ordered by model name. */
  list(): Promise<RetrainingPolicyRecord[]>;
  remove(modelName: string): Promise<boolean>;
};

/** One webhook delivery attempt of a run. */
export type RetrainingDeliveryRecord = {
  readonly at: number;
  /** The receiver's HTTP status; null when no response came (refused, timed out). */
  readonly statusCode: number | null;
  readonly error: string | null;
  readonly durationMs: number;
};

/** A retraining run (protocol RetrainingRun is its view). */
export type RetrainingRunRecord = {
  readonly runId: string;
  readonly modelName: string;
  readonly parentModel: { readonly id: string; readonly sha256: string } | null;
  /** RetrainingReason ({ kind, numbers }). */
  readonly reason: unknown;
  readonly datasetId: string;
  readonly exportUrls: { readonly coco: string; readonly yolo: string };
  readonly webhookUrl: string | null;
  /** pending | delivering | delivered | failed | claimed | model-registered */
  readonly status: string;
  readonly attempts: number;
  readonly lastStatusCode: number | null;
  readonly lastError: string | null;
  readonly nextAttemptAt: number | null;
  /** Oldest first, the newest ones kept. */
  readonly deliveries: readonly RetrainingDeliveryRecord[];
  readonly claimedBy: string | null;
  readonly claimedAt: number | null;
  readonly resultModelId: string | null;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly createdBy: string | null;
};

export type RetrainingRunRepository = {
  create(run: RetrainingRunRecord): Promise<void>;
  get(runId: string): Promise<RetrainingRunRecord | null>;
  /** Newest first by (createdAt, runId); keyset paging. */
  list(query: {
    readonly status?: string;
    readonly modelName?: string;
    readonly before?: { readonly createdAt: number; readonly runId: string };
    readonly limit: number;
  }): Promise<RetrainingRunRecord[]>;
  /** The newest run of a model name, or null. */
  latest(modelName: string): Promise<RetrainingRunRecord | null>;
  /** Runs whose next webhook attempt is due (status delivering, nextAttemptAt <= now), oldest due first. */
  due(now: number, limit: number): Promise<RetrainingRunRecord[]>;
  /**
   * Logs one delivery attempt and moves the run on (delivering again with a next attempt, delivered,
   * or failed), only while it has `expectedAttempts` attempts; null otherwise. A run claimed or
   * linked meanwhile logs the attempt but keeps its status (and takes no next attempt); a delivered
   * or failed one takes nothing. The log keeps the newest `keep` attempts.
   */
  recordDelivery(
    runId: string,
    expectedAttempts: number,
    outcome: {
      readonly status: 'delivering' | 'delivered' | 'failed';
      readonly nextAttemptAt: number | null;
      readonly delivery: RetrainingDeliveryRecord;
      readonly keep: number;
    },
  ): Promise<RetrainingRunRecord | null>;
  /** A trainer takes the run, only from one of the `from` statuses; null when it is in none (or unknown). */
  claim(runId: string, claimedBy: string, now: number, from: readonly string[]): Promise<RetrainingRunRecord | null>;
  /**
   * Names the model registered from this run (status model-registered). Idempotent for the same
   * model; null for an unknown run or one linked to another model already.
   */
  linkModel(runId: string, modelId: string, now: number): Promise<RetrainingRunRecord | null>;
  /** The run a model was registered from, or null. */
  byResultModel(modelId: string): Promise<RetrainingRunRecord | null>;
};

/* ------------------------------------------- drift ------------------------------------------ */

/** A drift reference of (scope, key, model sha256) and the last judged state (db/drift.ts). */
export type DriftReferenceRecord = {
  readonly scope: 'site' | 'device';
  readonly key: string;
  readonly modelSha256: string;
  readonly modelId: string | null;
  readonly source: 'auto' | 'dataset' | 'pinned';
  readonly datasetId: string | null;
  readonly from: number | null;
  readonly to: number | null;
  readonly complete: boolean;
  /** The reference's DriftSums (drift/maths.ts) as JSON. */
  readonly sums: unknown;
  /** The last judged DriftState (and its streaks) as JSON; null before any. */
  readonly state: unknown;
  readonly updatedAt: number;
  /** Who set it: an API token id for dataset and pinned references, null for auto. */
  readonly updatedBy: string | null;
};

/** Sampling drift raised at a site: the `{ site }` selector policy before (null: none) and the raised one. */
export type DriftBoostRecord = {
  readonly site: string;
  readonly previous: unknown;
  readonly raised: unknown;
  readonly raisedAt: number;
  /** Why: the band, the windows and the numbers. */
  readonly reason: unknown;
};

export type DriftRepository = {
  listReferences(): Promise<DriftReferenceRecord[]>;
  /** Upserts these references in one transaction. */
  putReferences(records: readonly DriftReferenceRecord[]): Promise<void>;
  removeReference(scope: 'site' | 'device', key: string, modelSha256: string): Promise<boolean>;
  listBoosts(): Promise<DriftBoostRecord[]>;
  putBoost(record: DriftBoostRecord): Promise<void>;
  removeBoost(site: string): Promise<boolean>;
};

/** Exactly one holder at a time across replicas (PostgreSQL advisory lock; SQLite: always). */
export type LeaderLock = {
  /** Takes the lock if free, or checks the held one is still alive; whether this process holds it. */
  acquire(): Promise<boolean>;
  readonly held: boolean;
  release(): Promise<void>;
};

/** A sample policy stored for a label selector (`{}`: the whole fleet). */
export type SamplePolicyRecord = {
  readonly selector: Readonly<Record<string, string>>;
  /** A SamplePolicy, validated before it was stored. */
  readonly policy: unknown;
  readonly updatedAt: number;
  readonly updatedBy: string | null;
};

export type SamplePolicyRepository = {
  /** Stores the policy of a selector, replacing the one it had. */
  put(record: SamplePolicyRecord): Promise<void>;
  /** Removes a selector's policy; false when it had none. */
  remove(selector: Readonly<Record<string, string>>): Promise<boolean>;
  /** Every stored selector policy, ordered by selector. */
  list(): Promise<SamplePolicyRecord[]>;
};

export type Store = {
  readonly dialect: 'sqlite' | 'postgres';
  readonly devices: DeviceRepository;
  /** Device secrets for MQTT and HTTP device authentication, with rotation (db/device-credentials.ts). */
  readonly credentials: DeviceCredentialRepository;
  readonly messages: MessageRepository;
  readonly deadLetters: DeadLetterRepository;
  readonly apiTokens: ApiTokenRepository;
  readonly ingest: IngestRepository;
  readonly models: ModelRepository;
  readonly rollouts: RolloutRepository;
  readonly samples: SampleRepository;
  readonly datasets: DatasetRepository;
  readonly evaluations: EvaluationRepository;
  readonly samplePolicies: SamplePolicyRepository;
  /** Retraining policies per model name and the runs they fired (db/retraining.ts). */
  readonly retrainingPolicies: RetrainingPolicyRepository;
  readonly retrainingRuns: RetrainingRunRepository;
  /** The lineage rows of registered models and the reads of the lineage walk (db/model-lineage.ts). */
  readonly modelLineage: ModelLineageRepository;
  /** Drift references, last judged states and drift-raised site sampling (db/drift.ts). */
  readonly drift: DriftRepository;
  /** The audit log (append and read; retention prunes by age). */
  readonly audit: AuditRepository;
  /** Idempotency-Key records of the POSTs that create things. */
  readonly idempotency: IdempotencyRepository;
  /** A leader lock on a dedicated connection; `key` names the lock (one per role). */
  openLeaderLock(key: number): LeaderLock;
  /**
   * Resolves when the database would accept a write now, rejects with why not (read only, locked,
   * a standby). Writes nothing: SQLite takes and drops the write lock (BEGIN IMMEDIATE; ROLLBACK),
   * PostgreSQL runs a write statement that matches no row. The readiness check (/readyz) calls it.
   */
  probeWrite(): Promise<void>;
  close(): Promise<void>;
};
