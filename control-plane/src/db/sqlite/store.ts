import { join } from 'node:path';
import { createAuditRepository } from '../audit.ts';
import { createDatasetRepository } from '../datasets.ts';
import { createDeviceCredentialRepository } from '../device-credentials.ts';
import { createDriftRepository } from '../drift.ts';
import { createEvaluationRepository } from '../evaluations.ts';
import { createIdempotencyRepository } from '../idempotency.ts';
import { createModelLineageRepository } from '../model-lineage.ts';
import type { Store } from '../repositories.ts';
import { createRetrainingPolicyRepository, createRetrainingRunRepository } from '../retraining.ts';
import { createSamplePolicyRepository } from '../sample-policies.ts';
import { createSampleRepository } from '../samples.ts';
import { createSqliteApiTokenRepository } from './api-tokens.ts';
import { openSqlite, type SqliteDb } from './database.ts';
import { createSqliteDeadLetterRepository } from './dead-letters.ts';
import { createSqliteDeviceRepository } from './devices.ts';
import { createSqliteIngestRepository } from './ingest.ts';
import type { IntegrityCheck } from './integrity.ts';
import { createSqliteLeaderLock } from './leader-lock.ts';
import { createSqliteMessageRepository } from './messages.ts';
import { createSqliteModelRepository } from './models.ts';
import { createSqliteRolloutRepository } from './rollouts.ts';
import { sqliteDialect } from './sql-dialect.ts';

export const SQLITE_FILE = 'edgeloop.db';

export type SqliteStore = Store & { readonly db: SqliteDb };

/** The embedded store: `<dataDir>/edgeloop.db` (or `:memory:`), migrated. */
export function createSqliteStore(options: {
  readonly dataDir?: string;
  readonly file?: string;
  /** The integrity check before the migrations (default quick); a damaged file throws DatabaseCorruptError. */
  readonly integrityCheck?: IntegrityCheck;
}): SqliteStore {
  const file = options.file ?? join(options.dataDir ?? '.', SQLITE_FILE);
  const db = openSqlite(file, options.integrityCheck ? { integrityCheck: options.integrityCheck } : {});
  const ingest = createSqliteIngestRepository(db);
  return {
    dialect: 'sqlite',
    db,
    devices: createSqliteDeviceRepository(db),
    messages: createSqliteMessageRepository(db),
    deadLetters: createSqliteDeadLetterRepository(db),
    apiTokens: createSqliteApiTokenRepository(db),
    ingest,
    models: createSqliteModelRepository(db),
    rollouts: createSqliteRolloutRepository(db),
    samples: createSampleRepository(sqliteDialect(db)),
    datasets: createDatasetRepository(sqliteDialect(db)),
    evaluations: createEvaluationRepository(sqliteDialect(db)),
    samplePolicies: createSamplePolicyRepository(sqliteDialect(db)),
    retrainingPolicies: createRetrainingPolicyRepository(sqliteDialect(db)),
    retrainingRuns: createRetrainingRunRepository(sqliteDialect(db)),
    modelLineage: createModelLineageRepository(sqliteDialect(db)),
    drift: createDriftRepository(sqliteDialect(db)),
    audit: createAuditRepository(sqliteDialect(db)),
    idempotency: createIdempotencyRepository(sqliteDialect(db)),
    credentials: createDeviceCredentialRepository(sqliteDialect(db)),
    openLeaderLock: () => createSqliteLeaderLock(),
    async probeWrite() {
      const client = db.$client;
      // A transaction under way (better-sqlite3 is synchronous: only one opened by this code) writes already.
      if (client.inTransaction) return;
      client.exec('BEGIN IMMEDIATE; ROLLBACK');
    },
    async close() {
      await ingest.close();
      if (db.$client.open) db.$client.close();
    },
  };
}
