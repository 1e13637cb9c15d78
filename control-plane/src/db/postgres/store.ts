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
import { createPostgresApiTokenRepository } from './api-tokens.ts';
import { openPostgres, type PostgresDb } from './database.ts';
import { createPostgresDeadLetterRepository } from './dead-letters.ts';
import { createPostgresIngestRepository } from './ingest.ts';
import { createPostgresLeaderLock } from './leader-lock.ts';
import { createPostgresMessageRepository } from './messages.ts';
import { createPostgresModelRepository } from './models.ts';
import { postgresDialect } from './sql-dialect.ts';

export type PostgresStore = Store & { readonly db: PostgresDb };

/**
 * The PostgreSQL store (scale-out path): same repositories, same contract suite. The live-state
 * cache of the ingest writer still assumes one writing control plane per database.
 */
export async function createPostgresStore(options: {
  readonly url: string;
  readonly maxConnections?: number;
}): Promise<PostgresStore> {
  const db = await openPostgres(options.url, options);
  const dialect = postgresDialect(db);
  let closed = false;
  return {
    dialect: 'postgres',
    db,
    devices: createDeviceRepository(dialect),
    messages: createPostgresMessageRepository(db),
    deadLetters: createPostgresDeadLetterRepository(db),
    apiTokens: createPostgresApiTokenRepository(db),
    ingest: createPostgresIngestRepository(db),
    models: createPostgresModelRepository(db),
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
    openLeaderLock: (key) => createPostgresLeaderLock({ url: options.url, key }),
    async probeWrite() {
      // Refused in a read-only transaction and on a standby although it changes nothing.
      await db.$client.query('UPDATE devices SET id = id WHERE false');
    },
    async close() {
      if (closed) return;
      closed = true;
      await db.$client.end();
    },
  };
}
