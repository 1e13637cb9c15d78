import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { serviceGate } from '../../test-services.ts';
import type { RetrainingRunRecord, Store } from '../src/db/repositories.ts';
import { storeDialects, useDialectStore } from './store-dialects.ts';

/*
 * The retraining repositories (db/retraining.ts): one contract over SQLite and PostgreSQL, both on
 * the real migrations. Each test starts from empty tables (a new file; rows deleted on PostgreSQL).
 */

const postgres = serviceGate('postgres');
const dialects = storeDialects({
  postgres,
  prefix: 'retraining',
  clean: sql`DELETE FROM retraining_runs; DELETE FROM retraining_policies; DELETE FROM samples`,
});

const T = 1_800_000_000_000;

function run(runId: string, overrides: Partial<RetrainingRunRecord> = {}): RetrainingRunRecord {
  return {
    runId,
    modelName: 'det',
    parentModel: { id: 'det@1.0.0', sha256: 'a'.repeat(64) },
    reason: { kind: 'drift', numbers: { windows: 3, psi: 0.31 } },
    datasetId: 'retrain-det@1',
    exportUrls: {
      coco: '/api/v1/datasets/retrain-det@1/export?format=coco',
      yolo: '/api/v1/datasets/retrain-det@1/export?format=yolo',
    },
    webhookUrl: 'http://127.0.0.1:9/hook',
    status: 'delivering',
    attempts: 0,
    lastStatusCode: null,
    lastError: null,
    nextAttemptAt: T,
    deliveries: [],
    claimedBy: null,
    claimedAt: null,
    resultModelId: null,
    createdAt: T,
    updatedAt: T,
    createdBy: 'system:retraining',
    ...overrides,
  };
}

describe.each(dialects)('retraining store: $name', (dialect) => {
  let store: Store;
  useDialectStore(dialect, (opened) => {
    store = opened;
  });

  it('stores one policy per model name with its sealed secret, replaces it, lists and removes it', async () => {
    const policy = { triggers: { samples: { min: 10 } }, cooldownS: 3600, enabled: true };
    await store.retrainingPolicies.put({
      modelName: 'det',
      policy,
      webhookSecret: 'v1.sealed',
      updatedAt: T,
      updatedBy: 'tok1',
    });
    await store.retrainingPolicies.put({
      modelName: 'cls',
      policy,
      webhookSecret: null,
      updatedAt: T,
      updatedBy: null,
    });
    await store.retrainingPolicies.put({
      modelName: 'det',
      policy: { ...policy, cooldownS: 60 },
      webhookSecret: 'v1.other',
      updatedAt: T + 1,
      updatedBy: 'tok2',
    });
    expect(await store.retrainingPolicies.get('det')).toEqual({
      modelName: 'det',
      policy: { ...policy, cooldownS: 60 },
      webhookSecret: 'v1.other',
      updatedAt: T + 1,
      updatedBy: 'tok2',
    });
    expect((await store.retrainingPolicies.list()).map((p) => p.modelName)).toEqual(['cls', 'det']);
    expect(await store.retrainingPolicies.remove('cls')).toBe(true);
    expect(await store.retrainingPolicies.remove('cls')).toBe(false);
    expect(await store.retrainingPolicies.get('cls')).toBeNull();
  });

  it('round-trips a run and lists runs newest first by status and model name, a keyset page at a time', async () => {
    await store.retrainingRuns.create(run('r1'));
    await store.retrainingRuns.create(
      run('r2', { createdAt: T + 10, status: 'pending', webhookUrl: null, parentModel: null }),
    );
    await store.retrainingRuns.create(run('r3', { createdAt: T + 20, modelName: 'cls' }));
    expect(await store.retrainingRuns.get('r1')).toEqual(run('r1'));
    expect(await store.retrainingRuns.get('r2')).toEqual(
      run('r2', { createdAt: T + 10, status: 'pending', webhookUrl: null, parentModel: null }),
    );
    expect(await store.retrainingRuns.get('ghost')).toBeNull();
    const ids = async (query: Parameters<Store['retrainingRuns']['list']>[0]) =>
      (await store.retrainingRuns.list(query)).map((r) => r.runId);
    expect(await ids({ limit: 10 })).toEqual(['r3', 'r2', 'r1']);
    expect(await ids({ status: 'pending', limit: 10 })).toEqual(['r2']);
    expect(await ids({ modelName: 'det', limit: 10 })).toEqual(['r2', 'r1']);
    expect(await ids({ before: { createdAt: T + 20, runId: 'r3' }, limit: 1 })).toEqual(['r2']);
    expect((await store.retrainingRuns.latest('det'))?.runId).toBe('r2');
    expect(await store.retrainingRuns.latest('none')).toBeNull();
  });

  it('records each delivery attempt once, keeps the newest attempts, and lists only runs that are due', async () => {
    await store.retrainingRuns.create(run('r1'));
    await store.retrainingRuns.create(run('r2', { nextAttemptAt: T + 5_000 }));
    expect((await store.retrainingRuns.due(T, 10)).map((r) => r.runId)).toEqual(['r1']);
    const attempt = (n: number) => ({ at: T + n, statusCode: 503, error: 'HTTP 503', durationMs: 4 });
    const first = await store.retrainingRuns.recordDelivery('r1', 0, {
      status: 'delivering',
      nextAttemptAt: T + 1_000,
      delivery: attempt(1),
      keep: 2,
    });
    expect(first).toMatchObject({ attempts: 1, lastStatusCode: 503, lastError: 'HTTP 503', nextAttemptAt: T + 1_000 });
    // The same attempt recorded twice (two writers) counts once.
    expect(
      await store.retrainingRuns.recordDelivery('r1', 0, {
        status: 'delivering',
        nextAttemptAt: T,
        delivery: attempt(1),
        keep: 2,
      }),
    ).toBeNull();
    await store.retrainingRuns.recordDelivery('r1', 1, {
      status: 'delivering',
      nextAttemptAt: T + 2_000,
      delivery: attempt(2),
      keep: 2,
    });
    const last = await store.retrainingRuns.recordDelivery('r1', 2, {
      status: 'delivered',
      nextAttemptAt: null,
      delivery: { at: T + 3, statusCode: 204, error: null, durationMs: 2 },
      keep: 2,
    });
    expect(last).toMatchObject({
      status: 'delivered',
      attempts: 3,
      lastStatusCode: 204,
      lastError: null,
      nextAttemptAt: null,
    });
    expect(last?.deliveries).toEqual([attempt(2), { at: T + 3, statusCode: 204, error: null, durationMs: 2 }]);
    expect((await store.retrainingRuns.due(T + 10_000, 10)).map((r) => r.runId)).toEqual(['r2']);
    // A delivered run takes no more attempts.
    expect(
      await store.retrainingRuns.recordDelivery('r1', 3, {
        status: 'failed',
        nextAttemptAt: null,
        delivery: attempt(4),
        keep: 2,
      }),
    ).toBeNull();
  });

  it('logs an attempt that was in flight when a trainer claimed the run, and keeps the run claimed', async () => {
    await store.retrainingRuns.create(run('r1'));
    await store.retrainingRuns.claim('r1', 'trainer', T + 1, ['delivering']);
    const logged = await store.retrainingRuns.recordDelivery('r1', 0, {
      status: 'delivered',
      nextAttemptAt: null,
      delivery: { at: T + 2, statusCode: 202, error: null, durationMs: 3 },
      keep: 20,
    });
    expect(logged).toMatchObject({ status: 'claimed', attempts: 1, lastStatusCode: 202, nextAttemptAt: null });
    expect(logged?.deliveries).toHaveLength(1);
    const retry = await store.retrainingRuns.recordDelivery('r1', 1, {
      status: 'delivering',
      nextAttemptAt: T + 9_000,
      delivery: { at: T + 3, statusCode: 503, error: 'HTTP 503', durationMs: 3 },
      keep: 20,
    });
    expect(retry).toMatchObject({ status: 'claimed', attempts: 2, nextAttemptAt: null });
    expect(await store.retrainingRuns.due(T + 10_000, 10)).toEqual([]);
  });

  it('lets one trainer claim a run, links the model registered from it once, and finds the run by its model', async () => {
    await store.retrainingRuns.create(run('r1', { status: 'pending', webhookUrl: null, nextAttemptAt: null }));
    const claimed = await store.retrainingRuns.claim('r1', 'tok_trainer', T + 1, ['pending', 'delivered', 'failed']);
    expect(claimed).toMatchObject({ status: 'claimed', claimedBy: 'tok_trainer', claimedAt: T + 1 });
    expect(await store.retrainingRuns.claim('r1', 'tok_other', T + 2, ['pending', 'delivered', 'failed'])).toBeNull();
    expect(await store.retrainingRuns.claim('ghost', 'tok_other', T + 2, ['pending'])).toBeNull();
    const linked = await store.retrainingRuns.linkModel('r1', 'det@2.0.0', T + 3);
    expect(linked).toMatchObject({ status: 'model-registered', resultModelId: 'det@2.0.0', updatedAt: T + 3 });
    expect(await store.retrainingRuns.linkModel('r1', 'det@2.0.0', T + 4)).toMatchObject({
      resultModelId: 'det@2.0.0',
    });
    expect(await store.retrainingRuns.linkModel('r1', 'det@3.0.0', T + 5)).toBeNull();
    expect(await store.retrainingRuns.linkModel('ghost', 'det@3.0.0', T + 5)).toBeNull();
    expect((await store.retrainingRuns.byResultModel('det@2.0.0'))?.runId).toBe('r1');
    expect(await store.retrainingRuns.byResultModel('det@3.0.0')).toBeNull();
  });

  it('counts the samples a query matches, received after a time (what the samples trigger reads)', async () => {
    const sample = (id: string, site: string, receivedAt: number) => ({
      id,
      deviceId: `cam-${site}`,
      site,
      labels: { site, line: 'l1' },
      modelId: 'det@1.0.0',
      modelSha256: 'a'.repeat(64),
      strategy: 'near-threshold',
      reason: 'near',
      tags: [],
      predictions: [],
      frameTs: receivedAt - 10,
      bootId: 'boot0001',
      seq: receivedAt - T,
      imageSha256: id.padEnd(64, '0'),
      bytes: 10,
      width: 4,
      height: 4,
      thumbnailSha256: null,
      receivedAt,
    });
    await store.samples.insertMany([sample('b1', 'b', T + 1), sample('b2', 'b', T + 2), sample('a1', 'a', T + 3)]);
    expect(await store.samples.count({})).toBe(3);
    expect(await store.samples.count({ site: 'b' })).toBe(2);
    expect(await store.samples.count({ site: 'b', receivedAfter: T + 1 })).toBe(1);
    expect(await store.samples.count({ labels: [['line', 'l1']], receivedAfter: T + 3 })).toBe(0);
    expect(await store.samples.count({ site: 'b', hasLabels: true })).toBe(0);
  });
});
