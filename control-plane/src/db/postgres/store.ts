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
import { createPostgresApiTokenRepository } from './api-tokens.ts';
import { openPostgres, type PostgresDb } from './database.ts';
import { createPostgresDeadLetterRepository } from './dead-letters.ts';
import { createPostgresDeviceRepository } from './devices.ts';
import { createPostgresIngestRepository } from './ingest.ts';
import { createPostgresLeaderLock } from './leader-lock.ts';
import { createPostgresMessageRepository } from './messages.ts';
import { createPostgresModelRepository } from './models.ts';
import { createPostgresRolloutRepository } from './rollouts.ts';
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
  let closed = false;
  return {
    dialect: 'postgres',
    db,
    devices: createPostgresDeviceRepository(db),
    messages: createPostgresMessageRepository(db),
    deadLetters: createPostgresDeadLetterRepository(db),
    apiTokens: createPostgresApiTokenRepository(db),
    ingest: createPostgresIngestRepository(db),
    models: createPostgresModelRepository(db),
    rollouts: createPostgresRolloutRepository(db),
    samples: createSampleRepository(postgresDialect(db)),
    datasets: createDatasetRepository(postgresDialect(db)),
    evaluations: createEvaluationRepository(postgresDialect(db)),
    samplePolicies: createSamplePolicyRepository(postgresDialect(db)),
    retrainingPolicies: createRetrainingPolicyRepository(postgresDialect(db)),
    retrainingRuns: createRetrainingRunRepository(postgresDialect(db)),
    modelLineage: createModelLineageRepository(postgresDialect(db)),
    drift: createDriftRepository(postgresDialect(db)),
    audit: createAuditRepository(postgresDialect(db)),
    idempotency: createIdempotencyRepository(postgresDialect(db)),
    credentials: createDeviceCredentialRepository(postgresDialect(db)),
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
