import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DriftState, RetrainingPolicy } from '@edgeloop/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDatasetService } from '../datasets/service.ts';
import type { ModelRecord, RolloutRecord } from '../db/repositories.ts';
import { createSqliteStore, type SqliteStore } from '../db/sqlite/store.ts';
import { createBlobStore } from '../models/blob-store.ts';
import { createRetrainingService } from './service.ts';
import { createSecretBox } from './webhook-secret.ts';

/* The retraining service over a real SQLite store; completed rollouts and drift states come through deps. */

const T = 1_800_000_000_000;

const model = (version: string, createdAt: number): ModelRecord => ({
  id: `det@${version}`,
  name: 'det',
  version,
  sha256: version.replace(/\D/g, '').padEnd(64, 'e'),
  sizeBytes: 10,
  releaseCounter: 1,
  adapter: 'yolo',
  keyId: 'abcdef0123456789',
  issuedAt: T,
  expiresAt: T + 1e9,
  signed: '{}',
  manifest: {},
  createdAt,
  uploadedBy: null,
});

describe('retraining service', () => {
  let dir: string;
  let store: SqliteStore;
  let completed: Pick<RolloutRecord, 'modelId'>[];
  let states: DriftState[];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'edgeloop-retraining-service-'));
    store = createSqliteStore({ dataDir: dir });
    completed = [];
    states = [];
    await store.models.create(model('1.0.0', T));
    await store.models.create(model('1.1.0', T + 10));
    await store.models.create(model('2.0.0', T + 20));
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const service = () =>
    createRetrainingService({
      policies: store.retrainingPolicies,
      runs: store.retrainingRuns,
      datasets: createDatasetService({
        datasets: store.datasets,
        samples: store.samples,
        blobs: createBlobStore({ root: join(dir, 'blobs') }),
        clock: { now: () => T },
      }),
      models: store.models,
      rollouts: { list: async () => completed as RolloutRecord[] },
      driftStates: () => states,
      secrets: createSecretBox(Buffer.alloc(32, 1)),
      baseUrl: () => 'http://cp.test',
      clock: { now: () => T },
    });

  it('names as parent the champion (newest completed rollout of the name), else what the sites run, else the newest version', async () => {
    const retraining = service();
    expect(await retraining.parentModelOf('det')).toEqual({ id: 'det@2.0.0', sha256: model('2.0.0', 0).sha256 });
    states = [
      { scope: 'site', key: 'a', modelId: 'det@1.0.0' },
      { scope: 'site', key: 'b', modelId: 'det@1.0.0' },
      { scope: 'site', key: 'c', modelId: 'det@1.1.0' },
      { scope: 'site', key: 'd', modelId: 'other@1.0.0' },
    ] as DriftState[];
    expect((await retraining.parentModelOf('det'))?.id).toBe('det@1.0.0');
    completed = [{ modelId: 'other@3.0.0' }, { modelId: 'det@1.1.0' }, { modelId: 'det@1.0.0' }];
    expect((await retraining.parentModelOf('det'))?.id).toBe('det@1.1.0');
    expect(await retraining.parentModelOf('cls')).toBeNull();
  });

  it('keeps the webhook secret out of the stored policy JSON and opens it for signing', async () => {
    const retraining = service();
    const set = await retraining.setPolicy(
      'det',
      RetrainingPolicy.parse({
        dataset: { name: 'retrain-det' },
        webhook: { url: 'https://trainer.test/hook', secret: 'sixteen-chars-secret' },
      }),
      'tok_ops',
    );
    expect(set.ok && set.value.webhook).toEqual({ url: 'https://trainer.test/hook', hasSecret: true });
    const row = await store.retrainingPolicies.get('det');
    expect(row?.policy).toMatchObject({ webhook: { url: 'https://trainer.test/hook' } });
    expect(JSON.stringify(row?.policy)).not.toContain('sixteen-chars-secret');
    expect(await retraining.secretOf('det')).toBe('sixteen-chars-secret');
    // Dropping the webhook drops the secret with it.
    await retraining.setPolicy('det', RetrainingPolicy.parse({ dataset: { name: 'retrain-det' } }), 'tok_ops');
    expect(await retraining.secretOf('det')).toBeNull();
    expect((await retraining.getPolicy('det'))?.webhook).toBeNull();
  });
});
