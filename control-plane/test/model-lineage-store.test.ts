import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { serviceGate } from '../../test-services.ts';
import type { ModelLineageRecord } from '../src/db/model-lineage.ts';
import type { ModelRecord, SampleRecord, Store } from '../src/db/repositories.ts';
import { storeDialects, useDialectStore } from './store-dialects.ts';

/*
 * The model lineage repository (db/model-lineage.ts): one contract over SQLite and PostgreSQL,
 * both on the real migrations. Each test starts from empty tables (a new file; rows deleted on
 * PostgreSQL).
 */

const postgres = serviceGate('postgres');
const dialects = storeDialects({
  postgres,
  prefix: 'lineage',
  clean: sql`DELETE FROM model_lineage; DELETE FROM models; DELETE FROM dataset_samples; DELETE FROM datasets;
             DELETE FROM samples`,
});

const T = 1_800_000_000_000;
const sha = (c: string) => c.repeat(64);

function model(version: string, sha256: string, createdAt = T): ModelRecord {
  return {
    id: `det@${version}`,
    name: 'det',
    version,
    sha256,
    sizeBytes: 1234,
    releaseCounter: 1,
    adapter: 'yolo',
    keyId: 'abcdef0123456789',
    issuedAt: T,
    expiresAt: T + 1e9,
    signed: '{"release":{},"signature":"x"}',
    manifest: { name: 'det', version, adapter: 'yolo' },
    createdAt,
    uploadedBy: 'tok1',
  };
}

function lineage(modelId: string, overrides: Partial<ModelLineageRecord> = {}): ModelLineageRecord {
  return {
    modelId,
    modelSha256: sha('b'),
    datasetId: 'hard@1',
    parentSha256: sha('a'),
    runId: 'run_1',
    trainer: 'ultralytics 8.3',
    flags: [],
    createdAt: T,
    ...overrides,
  };
}

function sample(id: string, site: string | null, strategy: string): SampleRecord {
  return {
    id,
    deviceId: 'cam-1',
    site,
    labels: {},
    modelId: 'det@1.0.0',
    modelSha256: sha('a'),
    strategy,
    reason: 'near threshold',
    tags: [],
    predictions: [],
    frameTs: T,
    bootId: 'bootaaaa',
    seq: 1,
    imageSha256: `${id.padEnd(63, '0')}1`.slice(0, 64),
    bytes: 1000,
    width: 64,
    height: 48,
    thumbnailSha256: null,
    receivedAt: T,
  };
}

describe.each(dialects)('model lineage store: $name', (dialect) => {
  let store: Store;
  useDialectStore(dialect, (opened) => {
    store = opened;
  });

  it('stores one row per model with its flags, keeps the first on a second put, and finds rows by parent and run', async () => {
    await store.models.create(model('1.0.0', sha('a')));
    await store.models.create(model('2.0.0', sha('b'), T + 1));
    await store.models.create(model('2.1.0', sha('c'), T + 2));
    await store.modelLineage.put(lineage('det@2.0.0', { flags: ['unknown_dataset'] }));
    await store.modelLineage.put(lineage('det@2.0.0', { flags: [], trainer: 'another' }));
    await store.modelLineage.put(
      lineage('det@2.1.0', { modelSha256: sha('c'), datasetId: null, runId: null, trainer: null, createdAt: T + 2 }),
    );
    expect(await store.modelLineage.get('det@2.0.0')).toEqual(lineage('det@2.0.0', { flags: ['unknown_dataset'] }));
    expect(await store.modelLineage.get('det@1.0.0')).toBeNull();
    expect((await store.modelLineage.children(sha('a'), 10)).map((row) => row.modelId)).toEqual([
      'det@2.0.0',
      'det@2.1.0',
    ]);
    expect((await store.modelLineage.children(sha('a'), 1)).map((row) => row.modelId)).toEqual(['det@2.0.0']);
    expect(await store.modelLineage.children(sha('f'), 10)).toEqual([]);
    expect((await store.modelLineage.byRun('run_1', 10)).map((row) => row.modelId)).toEqual(['det@2.0.0']);
    expect((await store.modelLineage.get('det@2.1.0'))?.trainer).toBeNull();
  });

  it('refuses a row for a model that is not registered', async () => {
    await expect(store.modelLineage.put(lineage('ghost@1.0.0'))).rejects.toThrow();
  });

  it('names the registered models holding a sha256, oldest first', async () => {
    await store.models.create(model('1.0.1', sha('a'), T + 5));
    await store.models.create(model('1.0.0', sha('a'), T));
    await store.models.create(model('3.0.0', sha('d'), T));
    expect(await store.modelLineage.modelsWithSha(sha('a'), 10)).toEqual([
      { id: 'det@1.0.0', sha256: sha('a'), createdAt: T },
      { id: 'det@1.0.1', sha256: sha('a'), createdAt: T + 5 },
    ]);
    expect(await store.modelLineage.modelsWithSha(sha('e'), 10)).toEqual([]);
  });

  it("counts a dataset version's stored samples by strategy and site and names the first few", async () => {
    const samples = [
      sample('s1', 'b', 'near-threshold'),
      sample('s2', 'b', 'near-threshold'),
      sample('s3', 'a', 'random'),
      sample('s4', null, 'disagreement'),
      sample('s5', 'b', 'random'),
    ];
    for (const row of samples) await store.samples.insert(row);
    const members = samples.slice(0, 4).map((row) => ({ sampleId: row.id, split: 'train', annotations: null }));
    const dataset = {
      id: 'hard@1',
      name: 'hard',
      version: 1,
      parentId: null,
      recipe: { source: 'query' as const, splits: { train: 100, val: 0, test: 0 } },
      sampleCount: 4,
      createdAt: T,
      createdBy: 'tok1',
    };
    expect(await store.datasets.create(dataset, members)).toBe('created');
    expect(await store.modelLineage.datasetSamples('hard@1', 3)).toEqual({
      count: 4,
      byStrategy: { 'near-threshold': 2, random: 1, disagreement: 1 },
      bySite: { a: 1, b: 2, '(none)': 1 },
      sampleIds: ['s1', 's2', 's3'],
    });
    expect(await store.modelLineage.datasetSamples('nope@1', 3)).toEqual({
      count: 0,
      byStrategy: {},
      bySite: {},
      sampleIds: [],
    });
  });
});
