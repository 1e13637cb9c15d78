import { createApiTokenRepository } from './api-tokens.ts';
import { createAuditRepository } from './audit.ts';
import { createDatasetRepository } from './datasets.ts';
import { createDeadLetterRepository } from './dead-letters.ts';
import { createDeviceCredentialRepository } from './device-credentials.ts';
import { createDeviceRepository } from './devices.ts';
import { createDriftRepository } from './drift.ts';
import { createEvaluationRepository } from './evaluations.ts';
import { createIdempotencyRepository } from './idempotency.ts';
import { createMessageRepository } from './messages.ts';
import { createModelLineageRepository } from './model-lineage.ts';
import { createModelRepository } from './models.ts';
import type { Store } from './repositories.ts';
import { createRetrainingPolicyRepository, createRetrainingRunRepository } from './retraining.ts';
import { createRolloutRepository } from './rollouts.ts';
import { createSamplePolicyRepository } from './sample-policies.ts';
import { createSampleRepository } from './samples.ts';
import type { SqlDialect } from './sql-dialect.ts';

/** What a store owns itself: its ingest writer, leader lock, write probe and lifecycle. */
export type StoreOwnParts = 'dialect' | 'ingest' | 'openLeaderLock' | 'probeWrite' | 'close';

/**
 * The repositories every store builds the same way, over its dialect (sqlite/store.ts and
 * postgres/store.ts add the parts of their own).
 */
export function createRepositories(dialect: SqlDialect): Omit<Store, StoreOwnParts> {
  return {
    devices: createDeviceRepository(dialect),
    credentials: createDeviceCredentialRepository(dialect),
    messages: createMessageRepository(dialect),
    deadLetters: createDeadLetterRepository(dialect),
    apiTokens: createApiTokenRepository(dialect),
    models: createModelRepository(dialect),
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
  };
}
