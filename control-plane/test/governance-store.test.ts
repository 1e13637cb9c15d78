import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceGate } from '../../test-services.ts';
import type { NewAuditEntry } from '../src/db/audit.ts';
import type { Store } from '../src/db/repositories.ts';
import { storeDialects } from './store-dialects.ts';

/* The audit and Idempotency-Key repositories: one suite over SQLite and PostgreSQL (real migrations). */

const postgres = serviceGate('postgres');
const dialects = storeDialects({ postgres, prefix: 'governance' });

const T = 1_800_000_000_000;

function entry(overrides: Partial<NewAuditEntry> = {}): NewAuditEntry {
  return {
    at: T,
    actor: 'tok_admin',
    actorRole: 'admin',
    action: 'POST /api/v1/devices',
    resource: 'devices',
    target: 'cam-1',
    requestId: 'req-1',
    source: '127.0.0.1',
    status: 201,
    summary: { body: { id: 'cam-1', labels: { site: 'north' } } },
    ...overrides,
  };
}

describe.each(dialects)('governance store: $name', (dialect) => {
  let store: Store;
  let dispose: () => Promise<void> = async () => {};

  beforeAll(async () => {
    if (dialect.skip) return;
    await dialect.setup();
    ({ store, dispose } = await dialect.create());
  }, 30_000);
  afterAll(async () => {
    await dispose();
    await dialect.teardown();
  });

  it('appends audit entries and reads them newest first with filters and keyset pages', async (context) => {
    if (dialect.skip) return context.skip(dialect.skip);
    await store.audit.append([
      entry(),
      entry({ at: T + 1, actor: 'tok_ops', actorRole: 'operator', action: 'PATCH /api/v1/devices/:id' }),
      entry({
        at: T + 2,
        actor: 'system:rollouts',
        actorRole: 'system',
        action: 'rollout.advanced',
        resource: 'rollouts',
        target: 'ro-1',
        requestId: null,
        source: null,
        status: null,
      }),
    ]);
    const all = await store.audit.list({ limit: 10 });
    expect(all.map((row) => row.action)).toEqual([
      'rollout.advanced',
      'PATCH /api/v1/devices/:id',
      'POST /api/v1/devices',
    ]);
    expect(all[2]).toMatchObject({ ...entry(), id: expect.any(Number) });
    expect(all[0]).toMatchObject({ requestId: null, source: null, status: null });
    expect((await store.audit.list({ actor: 'tok_ops', limit: 10 })).map((row) => row.actorRole)).toEqual(['operator']);
    expect(await store.audit.list({ resource: 'rollouts', target: 'ro-1', limit: 10 })).toHaveLength(1);
    expect(await store.audit.list({ from: T + 1, to: T + 1, limit: 10 })).toHaveLength(1);
    const page = await store.audit.list({ beforeId: all[0]!.id, limit: 1 });
    expect(page.map((row) => row.id)).toEqual([all[1]!.id]);
  });

  it('prunes only entries older than the cutoff', async (context) => {
    if (dialect.skip) return context.skip(dialect.skip);
    expect(await store.audit.pruneOlderThan(T + 1, 1000)).toBe(1);
    expect((await store.audit.list({ limit: 10 })).map((row) => row.at)).toEqual([T + 2, T + 1]);
  });

  it('gives a key to one request: the second sees it in flight, then done with its response', async (context) => {
    if (dialect.skip) return context.skip(dialect.skip);
    const begin = {
      actor: 'tok_a',
      keyHash: 'k1',
      requestHash: 'h1',
      now: T,
      expiresAt: T + 1000,
      staleBefore: T - 600,
    };
    expect(await store.idempotency.begin(begin)).toEqual({ started: true });
    const [second, third] = await Promise.all([store.idempotency.begin(begin), store.idempotency.begin(begin)]);
    expect(second).toMatchObject({ started: false, record: { state: 'in-flight' } });
    expect(third).toMatchObject({ started: false });
    // Another caller's key of the same name is its own.
    expect(await store.idempotency.begin({ ...begin, actor: 'tok_b' })).toEqual({ started: true });
    await store.idempotency.complete({
      actor: 'tok_a',
      keyHash: 'k1',
      requestHash: 'h1',
      status: 201,
      response: 'sealed',
    });
    expect(await store.idempotency.begin(begin)).toMatchObject({
      started: false,
      record: { state: 'done', status: 201, response: 'sealed', requestHash: 'h1', expiresAt: T + 1000 },
    });
  });

  it('frees a key when it expires, when it is released, or when its request is stale', async (context) => {
    if (dialect.skip) return context.skip(dialect.skip);
    const base = { actor: 'tok_c', requestHash: 'h', now: T, expiresAt: T + 1000, staleBefore: T - 600 };
    expect(await store.idempotency.begin({ ...base, keyHash: 'exp' })).toEqual({ started: true });
    await store.idempotency.complete({ actor: 'tok_c', keyHash: 'exp', requestHash: 'h', status: 200, response: 'r' });
    expect(await store.idempotency.begin({ ...base, keyHash: 'exp', now: T + 1000, expiresAt: T + 2000 })).toEqual({
      started: true,
    });

    expect(await store.idempotency.begin({ ...base, keyHash: 'rel' })).toEqual({ started: true });
    await store.idempotency.release('tok_c', 'rel');
    expect(await store.idempotency.begin({ ...base, keyHash: 'rel' })).toEqual({ started: true });

    expect(await store.idempotency.begin({ ...base, keyHash: 'stale' })).toEqual({ started: true });
    expect(await store.idempotency.begin({ ...base, keyHash: 'stale', now: T + 700, staleBefore: T + 100 })).toEqual({
      started: true,
    });
    expect(await store.idempotency.pruneExpired(T + 10_000, 1000)).toBeGreaterThanOrEqual(4);
  });
});
