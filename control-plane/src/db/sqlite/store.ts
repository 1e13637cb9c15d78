import { join } from 'node:path';
import { createAuditRepository } from '../audit.ts';
import { createDatasetRepository } from '../datasets.ts';
import { createIdempotencyRepository } from '../idempotency.ts';
import type { Store } from '../repositories.ts';
import { createSamplePolicyRepository } from '../sample-policies.ts';
import { createSampleRepository } from '../samples.ts';
import { createSqliteApiTokenRepository } from './api-tokens.ts';
import { openSqlite, type SqliteDb } from './database.ts';
import { createSqliteDeadLetterRepository } from './dead-letters.ts';
import { createSqliteDeviceRepository } from './devices.ts';
import { createSqliteIngestRepository } from './ingest.ts';
import { createSqliteLeaderLock } from './leader-lock.ts';
import { createSqliteMessageRepository } from './messages.ts';
import { createSqliteModelRepository } from './models.ts';
import { createSqliteRolloutRepository } from './rollouts.ts';
import { sqliteDialect } from './sql-dialect.ts';

export const SQLITE_FILE = 'edgeloop.db';

export type SqliteStore = Store & { readonly db: SqliteDb };

/** The embedded store: `<dataDir>/edgeloop.db` (or `:memory:`), migrated. */
export function createSqliteStore(options: { readonly dataDir?: string; readonly file?: string }): SqliteStore {
  const file = options.file ?? join(options.dataDir ?? '.', SQLITE_FILE);
  const db = openSqlite(file);
  return {
    dialect: 'sqlite',
    db,
    devices: createSqliteDeviceRepository(db),
    messages: createSqliteMessageRepository(db),
    deadLetters: createSqliteDeadLetterRepository(db),
    apiTokens: createSqliteApiTokenRepository(db),
    ingest: createSqliteIngestRepository(db),
    models: createSqliteModelRepository(db),
    rollouts: createSqliteRolloutRepository(db),
    samples: createSampleRepository(sqliteDialect(db)),
    datasets: createDatasetRepository(sqliteDialect(db)),
    samplePolicies: createSamplePolicyRepository(sqliteDialect(db)),
    audit: createAuditRepository(sqliteDialect(db)),
    idempotency: createIdempotencyRepository(sqliteDialect(db)),
    openLeaderLock: () => createSqliteLeaderLock(),
    async close() {
      if (db.$client.open) db.$client.close();
    },
  };
}
