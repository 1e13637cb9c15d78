import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { serviceGate } from '../../test-services.ts';
import type { DriftReferenceRecord, Store } from '../src/db/repositories.ts';
import { storeDialects, useDialectStore } from './store-dialects.ts';

/*
 * The drift repository (db/drift.ts): one contract over SQLite and PostgreSQL, both on the real
 * migrations. Each test starts from empty tables.
 */

const postgres = serviceGate('postgres');
const dialects = storeDialects({
  postgres,
  prefix: 'drift',
  clean: sql`DELETE FROM drift_references; DELETE FROM drift_sampling_boosts`,
});

const T = 1_800_000_000_000;
const SHA = 'a'.repeat(64);

function reference(key: string, overrides: Partial<DriftReferenceRecord> = {}): DriftReferenceRecord {
  return {
    scope: 'site',
    key,
    modelSha256: SHA,
    modelId: 'det@1.0.0',
    source: 'auto',
    datasetId: null,
    from: T,
    to: T + 86_400_000,
    complete: false,
    sums: { frames: 10, confidence: [1, 2, 3], classes: { person: 4.5 } },
    state: null,
    updatedAt: T,
    updatedBy: null,
    ...overrides,
  };
}

describe.each(dialects)('drift store: $name', (dialect) => {
  let store: Store;
  useDialectStore(dialect, (opened) => {
    store = opened;
  });

  it('upserts references in one batch keyed by scope, key and model sha, and reads them back as written', async () => {
    await store.drift.putReferences([
      reference('b'),
      reference('a'),
      reference('cam-1', { scope: 'device', source: 'pinned', updatedBy: 'tok1' }),
    ]);
    const state = { progress: { band: 'major', moderateStreak: 3 }, numbers: { confidencePsi: 0.4 } };
    await store.drift.putReferences([reference('a', { complete: true, state, updatedAt: T + 5 })]);
    const rows = await store.drift.listReferences();
    expect(rows.map((row) => [row.scope, row.key])).toEqual([
      ['device', 'cam-1'],
      ['site', 'a'],
      ['site', 'b'],
    ]);
    expect(rows[1]).toEqual(reference('a', { complete: true, state, updatedAt: T + 5 }));
    expect(rows[0]).toMatchObject({ source: 'pinned', updatedBy: 'tok1', complete: false });
    expect(rows[2]!.state).toBeNull();
  });

  it('keeps one reference per model at the same site, and removes only the one named', async () => {
    await store.drift.putReferences([reference('a'), reference('a', { modelSha256: 'b'.repeat(64) })]);
    expect(await store.drift.removeReference('site', 'a', SHA)).toBe(true);
    expect(await store.drift.removeReference('site', 'a', SHA)).toBe(false);
    expect((await store.drift.listReferences()).map((row) => row.modelSha256)).toEqual(['b'.repeat(64)]);
  });

  it('stores one sampling boost per site with the previous policy (or none), replaces and removes it', async () => {
    const raised = { enabled: true, strategies: [], limits: { perMinute: 4 } };
    await store.drift.putBoost({ site: 'b', previous: null, raised, raisedAt: T, reason: { band: 'major' } });
    await store.drift.putBoost({
      site: 'a',
      previous: { enabled: true, limits: { perMinute: 2 } },
      raised,
      raisedAt: T,
      reason: { band: 'moderate' },
    });
    await store.drift.putBoost({ site: 'b', previous: null, raised, raisedAt: T + 1, reason: { band: 'moderate' } });
    const boosts = await store.drift.listBoosts();
    expect(boosts.map((boost) => [boost.site, boost.raisedAt])).toEqual([
      ['a', T],
      ['b', T + 1],
    ]);
    expect(boosts[0]!.previous).toEqual({ enabled: true, limits: { perMinute: 2 } });
    expect(boosts[1]).toMatchObject({ previous: null, raised, reason: { band: 'moderate' } });
    expect(await store.drift.removeBoost('a')).toBe(true);
    expect(await store.drift.removeBoost('a')).toBe(false);
    expect((await store.drift.listBoosts()).map((boost) => boost.site)).toEqual(['b']);
  });
});
