import { index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';

/*
 * SQLite schema (drizzle sqlite-core). Migrations are generated from this file with
 * `npm run db:generate -w @edgeloop/control-plane` into control-plane/drizzle/sqlite/ and applied at start.
 * JSON columns hold text; times are epoch milliseconds.
 */

/** One row per enrolled device: credentials, labels and the live state the ingest writer keeps. */
export const devices = sqliteTable(
  'devices',
  {
    id: text('id').primaryKey(),
    labels: text('labels', { mode: 'json' }).$type<Record<string, string>>().notNull(),
    secretHash: text('secret_hash').notNull(),
    enrolledAt: integer('enrolled_at').notNull(),
    revokedAt: integer('revoked_at'),
    /** online | offline | unknown */
    status: text('status').notNull().default('unknown'),
    statusChangedAt: integer('status_changed_at'),
    /** Ordering key of the status message last applied: its boot and seq. */
    statusBootId: text('status_boot_id'),
    statusSeq: integer('status_seq'),
    statusSession: integer('status_session'),
    /** Boots seen, oldest first, the current one last (a short ring). */
    bootIds: text('boot_ids', { mode: 'json' }).$type<string[]>().notNull(),
    bootId: text('boot_id'),
    lastSeen: integer('last_seen'),
    agentVersion: text('agent_version'),
    keepaliveS: integer('keepalive_s'),
    telemetryIntervalS: real('telemetry_interval_s'),
    /** healthy | degraded | offline | unknown */
    health: text('health').notNull().default('unknown'),
    healthReasons: text('health_reasons', { mode: 'json' }).$type<string[]>().notNull(),
    telemetry: text('telemetry', { mode: 'json' }).$type<unknown>(),
    telemetryBootId: text('telemetry_boot_id'),
    telemetrySeq: integer('telemetry_seq'),
    telemetryAt: integer('telemetry_at'),
    reported: text('reported', { mode: 'json' }).$type<unknown>(),
    reportedBootId: text('reported_boot_id'),
    reportedSeq: integer('reported_seq'),
    reportedAt: integer('reported_at'),
    desired: text('desired', { mode: 'json' }).$type<unknown>(),
    desiredVersion: integer('desired_version').notNull().default(0),
    /** A rotated secret not yet used by the device (keyed hash); both it and secret_hash work until then. */
    secretHashNext: text('secret_hash_next'),
    /** After this time the old secret stops working even if the device never used the new one. */
    secretNextDeadline: integer('secret_next_deadline'),
    /** secret | cert: how the device proves its identity on MQTT. */
    authMethod: text('auth_method').notNull().default('secret'),
    /** sha256 (hex) of the device certificate issued last, when authMethod is cert. */
    certFingerprint: text('cert_fingerprint'),
  },
  (table) => [index('devices_status_idx').on(table.status), index('devices_health_idx').on(table.health)],
);

/**
 * Every accepted device -> cloud message, exactly once per (device, msgId). The body is the
 * payload as the device sent it (validated JSON text).
 */
export const messages = sqliteTable(
  'messages',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    deviceId: text('device_id').notNull(),
    /** status | telemetry | events | reported | reply */
    channel: text('channel').notNull(),
    msgId: text('msg_id').notNull(),
    bootId: text('boot_id').notNull(),
    seq: integer('seq').notNull(),
    deviceTs: integer('device_ts').notNull(),
    receivedAt: integer('received_at').notNull(),
    body: text('body').notNull(),
    /** The device's ts was beyond now + the allowed skew, or before 2020: kept as data, never used for order. */
    clockSkew: integer('clock_skew', { mode: 'boolean' }).notNull().default(false),
  },
  (table) => [
    uniqueIndex('messages_device_msg_uq').on(table.deviceId, table.msgId),
    // History is ordered by the server's receive time, then the device's seq.
    index('messages_device_channel_received_idx').on(table.deviceId, table.channel, table.receivedAt, table.seq),
    index('messages_device_channel_ts_idx').on(table.deviceId, table.channel, table.deviceTs),
    // Rollout gates read telemetry by arrival time (device clocks may be skewed); appends land at
    // the right edge of this index, and retention pruning uses it too.
    index('messages_channel_received_idx').on(table.channel, table.receivedAt),
  ],
);

/** Messages that could not be accepted, with the reason, for operators to look at. */
export const deadLetters = sqliteTable('dead_letters', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  receivedAt: integer('received_at').notNull(),
  deviceId: text('device_id'),
  topic: text('topic').notNull(),
  /** payload_too_large | invalid_utf8 | invalid_json | invalid_schema | ... */
  reason: text('reason').notNull(),
  detail: text('detail').notNull(),
  payloadSize: integer('payload_size').notNull(),
  /** The first 1 KiB of the payload, base64. */
  payloadExcerpt: text('payload_excerpt').notNull(),
});

/** Bearer tokens of the HTTP API, stored as keyed hashes. */
export const apiTokens = sqliteTable(
  'api_tokens',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    /** admin | operator | viewer */
    role: text('role').notNull(),
    tokenHash: text('token_hash').notNull(),
    /** The bootstrap admin token (set from EDGELOOP_ADMIN_TOKEN or generated at first start). */
    bootstrap: integer('bootstrap', { mode: 'boolean' }).notNull().default(false),
    createdAt: integer('created_at').notNull(),
    revokedAt: integer('revoked_at'),
  },
  (table) => [uniqueIndex('api_tokens_hash_uq').on(table.tokenHash)],
);

/** Registered model versions (immutable). The bytes live in the blob store under their sha256. */
export const models = sqliteTable(
  'models',
  {
    /** `name@version` */
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    version: text('version').notNull(),
    sha256: text('sha256').notNull(),
    sizeBytes: integer('size_bytes').notNull(),
    releaseCounter: integer('release_counter').notNull(),
    adapter: text('adapter').notNull(),
    keyId: text('key_id').notNull(),
    issuedAt: integer('issued_at').notNull(),
    expiresAt: integer('expires_at').notNull(),
    /** The SignedModelRelease as verified, JSON text handed to devices verbatim. */
    signed: text('signed').notNull(),
    manifest: text('manifest', { mode: 'json' }).$type<unknown>().notNull(),
    createdAt: integer('created_at').notNull(),
    uploadedBy: text('uploaded_by'),
  },
  (table) => [index('models_name_idx').on(table.name), index('models_sha256_idx').on(table.sha256)],
);

/** Rollouts: the reconcile loop's state. `version` guards concurrent writers (API and engine). */
export const rollouts = sqliteTable(
  'rollouts',
  {
    id: text('id').primaryKey(),
    modelId: text('model_id')
      .notNull()
      .references(() => models.id),
    spec: text('spec', { mode: 'json' }).$type<unknown>().notNull(),
    /** running | paused | completed | rolled_back | aborted */
    status: text('status').notNull(),
    stageIndex: integer('stage_index').notNull(),
    stageStartedAt: integer('stage_started_at').notNull(),
    failingWindows: integer('failing_windows').notNull().default(0),
    lastEvaluatedAt: integer('last_evaluated_at'),
    /** { canary, control, order } frozen at creation. */
    cohorts: text('cohorts', { mode: 'json' }).$type<unknown>().notNull(),
    reason: text('reason'),
    version: integer('version').notNull().default(1),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
    createdBy: text('created_by'),
  },
  (table) => [index('rollouts_status_idx').on(table.status), index('rollouts_created_idx').on(table.createdAt)],
);

/** Which devices a rollout handed the model to, and where each one is. */
export const rolloutDevices = sqliteTable(
  'rollout_devices',
  {
    rolloutId: text('rollout_id')
      .notNull()
      .references(() => rollouts.id, { onDelete: 'cascade' }),
    deviceId: text('device_id').notNull(),
    /** shadow | active */
    mode: text('mode').notNull(),
    stageIndex: integer('stage_index').notNull(),
    /** assigned | active | failed | reverting | rolled_back */
    state: text('state').notNull(),
    /** The ModelRef the device ran before (what a rollback returns it to). */
    previous: text('previous', { mode: 'json' }).$type<unknown>(),
    assignedAt: integer('assigned_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
    reason: text('reason'),
  },
  (table) => [
    primaryKey({ columns: [table.rolloutId, table.deviceId] }),
    index('rollout_devices_device_idx').on(table.deviceId),
  ],
);

/** Every transition and verdict of a rollout, with the numbers behind it. */
export const rolloutEvents = sqliteTable(
  'rollout_events',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    rolloutId: text('rollout_id')
      .notNull()
      .references(() => rollouts.id, { onDelete: 'cascade' }),
    at: integer('at').notNull(),
    type: text('type').notNull(),
    stage: text('stage'),
    data: text('data', { mode: 'json' }).$type<unknown>().notNull(),
  },
  (table) => [index('rollout_events_rollout_idx').on(table.rolloutId, table.id)],
);

/* ------------------------------------- hard samples ------------------------------------------ */

/**
 * Hard samples a device uploaded: metadata as the device sent it (SampleMetadata), the image in the
 * blob store under `image_sha256`. One sample per (device, image sha256): a re-upload is the same
 * sample. Rows outlive their device (deleting a device keeps its samples).
 */
export const samples = sqliteTable(
  'samples',
  {
    id: text('id').primaryKey(),
    deviceId: text('device_id').notNull(),
    site: text('site'),
    labels: text('labels', { mode: 'json' }).$type<Record<string, string>>().notNull(),
    modelId: text('model_id'),
    modelSha256: text('model_sha256'),
    strategy: text('strategy').notNull(),
    reason: text('reason').notNull(),
    tags: text('tags', { mode: 'json' }).$type<string[]>().notNull(),
    /** SamplePrediction[] (pre-annotations). */
    predictions: text('predictions', { mode: 'json' }).$type<unknown>().notNull(),
    frameTs: integer('frame_ts').notNull(),
    bootId: text('boot_id').notNull(),
    seq: integer('seq').notNull(),
    imageSha256: text('image_sha256').notNull(),
    bytes: integer('bytes').notNull(),
    width: integer('width').notNull(),
    height: integer('height').notNull(),
    /** The cached thumbnail blob, once one was made. */
    thumbnailSha256: text('thumbnail_sha256'),
    receivedAt: integer('received_at').notNull(),
  },
  (table) => [
    uniqueIndex('samples_device_image_uq').on(table.deviceId, table.imageSha256),
    index('samples_received_idx').on(table.receivedAt, table.id),
    index('samples_device_received_idx').on(table.deviceId, table.receivedAt),
    index('samples_frame_ts_idx').on(table.frameTs),
    index('samples_image_idx').on(table.imageSha256),
  ],
);

/** Uploads under way: the bytes acknowledged so far live in a temp file under the data dir. */
export const sampleUploads = sqliteTable(
  'sample_uploads',
  {
    uploadId: text('upload_id').primaryKey(),
    deviceId: text('device_id').notNull(),
    /** SampleMetadata as validated. */
    metadata: text('metadata', { mode: 'json' }).$type<unknown>().notNull(),
    imageSha256: text('image_sha256').notNull(),
    bytes: integer('bytes').notNull(),
    offset: integer('offset').notNull().default(0),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
  },
  (table) => [
    uniqueIndex('sample_uploads_device_image_uq').on(table.deviceId, table.imageSha256),
    index('sample_uploads_updated_idx').on(table.updatedAt),
  ],
);

/* --------------------------------------- datasets -------------------------------------------- */

/** Immutable dataset versions `name@version`; a labelled version points at its parent. */
export const datasets = sqliteTable(
  'datasets',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    version: integer('version').notNull(),
    parentId: text('parent_id'),
    /** The sample query or id list the version was made from, as given. */
    query: text('query', { mode: 'json' }).$type<unknown>().notNull(),
    sampleCount: integer('sample_count').notNull().default(0),
    createdAt: integer('created_at').notNull(),
    createdBy: text('created_by'),
  },
  (table) => [uniqueIndex('datasets_name_version_uq').on(table.name, table.version)],
);

/** The frozen membership of a dataset version, with each sample's split and labels. */
export const datasetSamples = sqliteTable(
  'dataset_samples',
  {
    datasetId: text('dataset_id')
      .notNull()
      .references(() => datasets.id, { onDelete: 'cascade' }),
    sampleId: text('sample_id').notNull(),
    /** train | val | test */
    split: text('split').notNull(),
    /** Human labels (COCO-derived annotations) of a labelled version; null before labelling. */
    annotations: text('annotations', { mode: 'json' }).$type<unknown>(),
  },
  (table) => [
    primaryKey({ columns: [table.datasetId, table.sampleId] }),
    index('dataset_samples_sample_idx').on(table.sampleId),
  ],
);

/**
 * Offline evaluations of a registered model on a dataset version (`edgeloop-agent eval`):
 * EvaluationMetrics as JSON, with the champion measured beside it. Rows are kept as posted.
 */
export const evaluations = sqliteTable(
  'evaluations',
  {
    id: text('id').primaryKey(),
    modelId: text('model_id')
      .notNull()
      .references(() => models.id),
    /** sha256 of the file evaluated (checked against the registered model's). */
    modelSha256: text('model_sha256').notNull(),
    datasetId: text('dataset_id').notNull(),
    metrics: text('metrics', { mode: 'json' }).$type<unknown>().notNull(),
    /** { modelId, sha256, metrics } of the champion; null when none was run. */
    baseline: text('baseline', { mode: 'json' }).$type<unknown>(),
    evaluator: text('evaluator', { mode: 'json' }).$type<unknown>().notNull(),
    createdAt: integer('created_at').notNull(),
    createdBy: text('created_by'),
  },
  (table) => [index('evaluations_model_dataset_idx').on(table.modelId, table.datasetId, table.createdAt)],
);

/**
 * Sample policies set by label selector (PUT /api/v1/sample-policy). `selector_key` is the
 * selector's canonical JSON (keys sorted; `{}` is the whole fleet). A device's policy is the one of
 * the most specific selector it matches; it is copied into its desired state.
 */
export const samplePolicies = sqliteTable('sample_policies', {
  selectorKey: text('selector_key').primaryKey(),
  selector: text('selector', { mode: 'json' }).$type<Record<string, string>>().notNull(),
  /** A SamplePolicy (validated before it is stored). */
  policy: text('policy', { mode: 'json' }).$type<unknown>().notNull(),
  updatedAt: integer('updated_at').notNull(),
  updatedBy: text('updated_by'),
});

/*
 * Governance (issue 12): the audit log and Idempotency-Key records. Rows of audit_log are only ever
 * appended (and pruned by age by the retention setting); no API route edits or deletes them.
 */
export const auditLog = sqliteTable(
  'audit_log',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    at: integer('at').notNull(),
    /** A token id, `device:<id>`, or `system:rollouts`. */
    actor: text('actor').notNull(),
    /** admin | operator | viewer | device | system */
    actorRole: text('actor_role').notNull(),
    /** The route (`POST /api/v1/devices/:id/commands`) or an engine action (`rollout.advanced`). */
    action: text('action').notNull(),
    /** What kind of thing it acted on: devices, rollouts, models, tokens, ... */
    resource: text('resource').notNull(),
    target: text('target'),
    requestId: text('request_id'),
    source: text('source'),
    status: integer('status'),
    /** A small redacted digest of what changed (never secrets). */
    summary: text('summary', { mode: 'json' }).$type<unknown>().notNull(),
  },
  (table) => [
    index('audit_log_at_idx').on(table.at),
    index('audit_log_actor_idx').on(table.actor, table.id),
    index('audit_log_target_idx').on(table.target, table.id),
  ],
);

/**
 * Idempotency-Key records: the key is stored as a hash, scoped to the caller; the response as
 * AES-GCM ciphertext under a key derived from the Idempotency-Key itself (an enrollment's response
 * holds the device's password: the database alone does not reveal it).
 */
export const idempotencyKeys = sqliteTable(
  'idempotency_keys',
  {
    actor: text('actor').notNull(),
    keyHash: text('key_hash').notNull(),
    /** in-flight | done */
    state: text('state').notNull(),
    /** sha256 of method, path and body; null while a streamed body is still being read. */
    requestHash: text('request_hash'),
    status: integer('status'),
    response: text('response'),
    createdAt: integer('created_at').notNull(),
    expiresAt: integer('expires_at').notNull(),
  },
  (table) => [
    primaryKey({ columns: [table.actor, table.keyHash] }),
    index('idempotency_keys_expires_idx').on(table.expiresAt),
  ],
);

/*
 * Retraining (issue 9 §3): a policy per model name (what fires a run, which dataset it freezes,
 * where its webhook goes) and the runs it fired, each with its delivery log. The webhook secret is
 * AES-GCM ciphertext under a key derived from the control plane's secret material (retraining/
 * webhook-secret.ts): the database alone does not reveal it, and the control plane can still sign.
 */
export const retrainingPolicies = sqliteTable('retraining_policies', {
  modelName: text('model_name').primaryKey(),
  /** A RetrainingPolicy without its webhook secret (validated before it is stored). */
  policy: text('policy', { mode: 'json' }).$type<unknown>().notNull(),
  /** The webhook secret, sealed (v1.<iv>.<tag>.<ciphertext>, base64url); null without one. */
  webhookSecret: text('webhook_secret'),
  updatedAt: integer('updated_at').notNull(),
  updatedBy: text('updated_by'),
});

/** One row per retraining run: why it fired, the dataset version it froze, its webhook deliveries. */
export const retrainingRuns = sqliteTable(
  'retraining_runs',
  {
    id: text('id').primaryKey(),
    modelName: text('model_name').notNull(),
    /** { id, sha256 } of the model committed for the name when the run fired; null when none. */
    parentModel: text('parent_model', { mode: 'json' }).$type<unknown>(),
    /** { kind, numbers } */
    reason: text('reason', { mode: 'json' }).$type<unknown>().notNull(),
    datasetId: text('dataset_id').notNull(),
    /** { coco, yolo } */
    exportUrls: text('export_urls', { mode: 'json' }).$type<unknown>().notNull(),
    /** Where the webhook goes (copied from the policy when the run fired); null for pull only. */
    webhookUrl: text('webhook_url'),
    /** pending | delivering | delivered | failed | claimed | model-registered */
    status: text('status').notNull(),
    attempts: integer('attempts').notNull().default(0),
    lastStatusCode: integer('last_status_code'),
    lastError: text('last_error'),
    nextAttemptAt: integer('next_attempt_at'),
    /** The delivery log: [{ at, statusCode, error, durationMs }], oldest first (capped). */
    deliveries: text('deliveries', { mode: 'json' }).$type<unknown>().notNull(),
    claimedBy: text('claimed_by'),
    claimedAt: integer('claimed_at'),
    /** The model registered from this run (its lineage names the runId). */
    resultModelId: text('result_model_id'),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
    createdBy: text('created_by'),
  },
  (table) => [
    index('retraining_runs_status_idx').on(table.status, table.nextAttemptAt),
    index('retraining_runs_model_idx').on(table.modelName, table.createdAt),
    index('retraining_runs_result_model_idx').on(table.resultModelId),
  ],
);

/**
 * Drift references (control-plane/src/drift/): one row per (scope site|device, key, model sha256).
 * `sums` holds the reference window's summed histograms (confidence bins, detections per class
 * weighted by frames, near-threshold and scene-change counts) as JSON; `state` the last judged
 * DriftState, so a restart keeps both. auto: the first --drift-reference-s after the model was
 * first seen there; dataset: a dataset version's predictions; pinned: an operator's time range.
 */
export const driftReferences = sqliteTable(
  'drift_references',
  {
    scope: text('scope').notNull(),
    key: text('key').notNull(),
    modelSha256: text('model_sha256').notNull(),
    modelId: text('model_id'),
    /** auto | dataset | pinned */
    source: text('source').notNull(),
    datasetId: text('dataset_id'),
    fromAt: integer('from_at'),
    toAt: integer('to_at'),
    complete: integer('complete', { mode: 'boolean' }).notNull().default(false),
    sums: text('sums', { mode: 'json' }).$type<unknown>().notNull(),
    state: text('state', { mode: 'json' }).$type<unknown>(),
    updatedAt: integer('updated_at').notNull(),
    updatedBy: text('updated_by'),
  },
  (table) => [primaryKey({ columns: [table.scope, table.key, table.modelSha256] })],
);

/**
 * Sampling raised by drift at a site (adaptive sampling): the `{ site }` selector policy it had
 * before (null: none) and the raised one written, so the previous policy comes back when the site
 * is stable again, across restarts.
 */
export const driftSamplingBoosts = sqliteTable('drift_sampling_boosts', {
  site: text('site').primaryKey(),
  previous: text('previous', { mode: 'json' }).$type<unknown>(),
  raised: text('raised', { mode: 'json' }).$type<unknown>().notNull(),
  raisedAt: integer('raised_at').notNull(),
  reason: text('reason', { mode: 'json' }).$type<unknown>().notNull(),
});

/*
 * Lineage of registered models (issue 9 §4): what the signed release's `lineage` names, indexed so
 * the lineage walk finds children (by parent sha), the models of a run and of a dataset version,
 * and the flags the registry raised at upload (names it did not know). The signed release in
 * `models.signed` stays the truth; this row is its index, written right after the model row.
 */
export const modelLineage = sqliteTable(
  'model_lineage',
  {
    modelId: text('model_id')
      .primaryKey()
      .references(() => models.id),
    modelSha256: text('model_sha256').notNull(),
    datasetId: text('dataset_id'),
    parentSha256: text('parent_sha256'),
    runId: text('run_id'),
    trainer: text('trainer'),
    /** LineageFlag[] raised at registration: unknown_dataset, unknown_parent, unknown_run, ... */
    flags: text('flags', { mode: 'json' }).$type<string[]>().notNull(),
    createdAt: integer('created_at').notNull(),
  },
  (table) => [
    index('model_lineage_parent_idx').on(table.parentSha256),
    index('model_lineage_run_idx').on(table.runId),
    index('model_lineage_dataset_idx').on(table.datasetId),
  ],
);
