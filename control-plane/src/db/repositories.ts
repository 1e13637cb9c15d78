import type { ApiRole, Channel, Desired, DeviceStatus, HealthState, Labels, Result } from '@edgeloop/protocol';

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
  /** Reads, changes and writes the desired state in one transaction; null for an unknown device. */
  updateDesired(id: string, update: (current: Desired | null) => Desired): Promise<Desired | null>;
  /** Desired state of every active device that has one (re-published at start). */
  listDesired(): Promise<{ id: string; desired: Desired }[]>;
  counts(): Promise<FleetCounts>;
  /** Live states of every active device (the ingest writer's cache is filled from these). */
  loadLiveStates(): Promise<LoadedLiveState[]>;
  loadLiveState(id: string): Promise<LoadedLiveState | null>;
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
};

export type StoredMessage = NewMessage & { readonly id: number };

export type MessageQuery = {
  readonly deviceId: string;
  readonly channel?: Channel;
  /** Keyset paging, newest first by (deviceTs, id): rows strictly before this key. */
  readonly before?: { readonly deviceTs: number; readonly id: number };
  readonly limit: number;
};

export type MessageRepository = {
  /** Newest first by device timestamp. */
  list(query: MessageQuery): Promise<StoredMessage[]>;
  /** Rows with this (device, msgId): 0 or 1. */
  count(deviceId: string, msgId?: string): Promise<number>;
  /** Deletes up to `limit` of the oldest rows received before `cutoff`; returns how many. */
  pruneOlderThan(cutoff: number, limit: number): Promise<number>;
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

/** One flush of the ingest writer: everything in it commits in one transaction, or nothing does. */
export type IngestBatch = {
  readonly messages: readonly NewMessage[];
  readonly deadLetters: readonly NewDeadLetter[];
  readonly devices: readonly DeviceLiveWrite[];
};

export type IngestRepository = {
  /** Inserts messages (a duplicate (device, msgId) is skipped), dead letters and live states. */
  commit(batch: IngestBatch): Promise<{ readonly inserted: readonly boolean[] }>;
};

export type Store = {
  readonly dialect: 'sqlite' | 'postgres';
  readonly devices: DeviceRepository;
  readonly messages: MessageRepository;
  readonly deadLetters: DeadLetterRepository;
  readonly apiTokens: ApiTokenRepository;
  readonly ingest: IngestRepository;
  close(): Promise<void>;
};
