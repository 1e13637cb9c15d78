import { join } from 'node:path';
import { createAuditRepository } from '../audit.ts';
import { createDatasetRepository } from '../datasets.ts';
import { createDeviceCredentialRepository } from '../device-credentials.ts';
import { createDeviceRepository } from '../devices.ts';
import { createDriftRepository } from '../drift.ts';
import { createEvaluationRepository } from '../evaluations.ts';
import { createIdempotencyRepository } from '../idempotency.ts';
import { createModelLineageRepository } from '../model-lineage.ts';
import type { Store } from '../repositories.ts';
import { createRetrainingPolicyRepository, createRetrainingRunRepository } from '../retraining.ts';
import { createRolloutRepository } from '../rollouts.ts';
import { createSamplePolicyRepository } from '../sample-policies.ts';
import { createSampleRepository } from '../samples.ts';
import { createSqliteApiTokenRepository } from './api-tokens.ts';
import { openSqlite, type SqliteDb } from './database.ts';
import { createSqliteDeadLetterRepository } from './dead-letters.ts';
import { createSqliteIngestRepository } from './ingest.ts';
import type { IntegrityCheck } from './integrity.ts';
import { createSqliteLeaderLock } from './leader-lock.ts';
import { createSqliteMessageRepository } from './messages.ts';
import { createSqliteModelRepository } from './models.ts';
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
  const dialect = sqliteDialect(db);
  return {
    dialect: 'sqlite',
    db,
    devices: createDeviceRepository(dialect),
    messages: createSqliteMessageRepository(db),
    deadLetters: createSqliteDeadLetterRepository(db),
    apiTokens: createSqliteApiTokenRepository(db),
    ingest,
    models: createSqliteModelRepository(db),
    rollouts: createRolloutRepository(dialect),
    samples: createSampleRepository(dialect),
    datasets: createDatasetRepository(dialect),
    evaluations: createEvaluationRepository(dialect),
    samplePolicies: createSamplePolicyRepository(dialect),
    retrainingPolicies: createRetrainingPolicyRepository(dialect),
    retrainingRuns: createRetrainingRunRepository(dialect),
    modelLineage: createModelLineageRepository(dialect),
    drift: createDriftRepository(dialect),
    audit: createAuditRepository(dialect),
    idempotency: createIdempotencyRepository(dialect),
    credentials: createDeviceCredentialRepository(dialect),
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
