import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { serviceGate } from '../../test-services.ts';
import type { PostgresStore } from '../src/db/postgres/store.ts';
import type {
  AssignmentRecord,
  DatasetRecord,
  EvaluationRecord,
  ModelRecord,
  NewMessage,
  RolloutRecord,
  SampleRecord,
  Store,
} from '../src/db/repositories.ts';
import type { SqliteStore } from '../src/db/sqlite/store.ts';
import { initialLiveState } from '../src/device-state.ts';
import { storeDialects } from './store-dialects.ts';

const postgres = serviceGate('postgres');

/*
 * One contract for every storage dialect: SQLite (embedded default) and PostgreSQL (scale-out).
 * A new dialect joins by adding a factory in store-dialects.ts; every test below must pass against it unchanged.
 */

const factories = storeDialects({
  postgres,
  prefix: 'contract',
  clean: sql`DELETE FROM evaluations; DELETE FROM rollout_events; DELETE FROM rollout_devices; DELETE FROM rollouts;
            DELETE FROM models;
            DELETE FROM devices; DELETE FROM messages; DELETE FROM dead_letters; DELETE FROM api_tokens;
            DELETE FROM dataset_samples; DELETE FROM datasets; DELETE FROM sample_uploads; DELETE FROM samples;
            DELETE FROM sample_policies`,
});

const T = 1_800_000_000_000;

function message(
  deviceId: string,
  msgId: string,
  deviceTs: number,
  channel: NewMessage['channel'] = 'telemetry',
): NewMessage {
  return { deviceId, channel, msgId, bootId: 'bootaaaa', seq: 1, deviceTs, receivedAt: deviceTs, body: '{"x":1}' };
}

describe.each(factories)('store contract: $name', (factory) => {
  let store: Store;
  let dispose: () => Promise<void>;

  beforeAll(async () => {
    await factory.setup();
  });
  afterAll(async () => {
    await factory.teardown();
  });

  beforeEach(async (context) => {
    if (factory.skip) {
      context.skip(factory.skip);
      return;
    }
    ({ store, dispose } = await factory.create());
  });
  afterEach(async () => {
    if (!factory.skip) await dispose();
  });

  const enroll = async (id: string, labels: Record<string, string> = {}, now = T) => {
    const result = await store.devices.enroll({ id, labels, secretHash: `hash-${id}`, now });
    if (!result.ok) throw new Error(result.error.message);
    return result.value;
  };

  describe('devices', () => {
    it('enrolls once, refuses an active duplicate and re-enrolls a revoked id with fresh state', async () => {
      const first = await enroll('cam-1', { site: 'a' });
      expect(first).toMatchObject({ id: 'cam-1', status: 'unknown', health: 'unknown', labels: { site: 'a' } });
      const duplicate = await store.devices.enroll({ id: 'cam-1', labels: {}, secretHash: 'h2', now: T });
      expect(duplicate.ok).toBe(false);
      if (!duplicate.ok) expect(duplicate.error.code).toBe('conflict');
      await store.ingest.commit({
        messages: [],
        deadLetters: [],
        devices: [{ state: { ...initialLiveState('cam-1', T), status: 'online', bootIds: ['b1'] } }],
      });
      expect(await store.devices.revoke('cam-1', T + 1)).toBe(true);
      expect(await store.devices.revoke('cam-1', T + 2)).toBe(false);
      expect(await store.devices.get('cam-1')).toBeNull();
      expect(await store.devices.secretHash('cam-1')).toBeNull();
      const again = await store.devices.enroll({ id: 'cam-1', labels: { site: 'b' }, secretHash: 'h3', now: T + 3 });
      expect(again.ok).toBe(true);
      expect(await store.devices.get('cam-1')).toMatchObject({
        status: 'unknown',
        bootId: null,
        labels: { site: 'b' },
      });
      expect(await store.devices.secretHash('cam-1')).toBe('h3');
    });

    it('keeps the certificate fingerprint of a cert device until it is revoked, and forgets it on re-enrollment', async () => {
      const base = { labels: {}, secretHash: 'h', now: T };
      await store.devices.enroll({ ...base, id: 'cam-cert', authMethod: 'cert', certFingerprint: 'ab'.repeat(32) });
      await store.devices.enroll({ ...base, id: 'cam-pass' });
      expect(await store.devices.certFingerprint('cam-cert')).toBe('ab'.repeat(32));
      expect(await store.devices.certFingerprint('cam-pass')).toBeNull();
      expect(await store.devices.certFingerprint('cam-nobody')).toBeNull();
      await store.devices.revoke('cam-cert', T + 1);
      expect(await store.devices.certFingerprint('cam-cert')).toBeNull();
      await store.devices.enroll({ ...base, id: 'cam-cert', now: T + 2 });
      expect(await store.devices.certFingerprint('cam-cert')).toBeNull();
      await store.devices.revoke('cam-pass', T + 3);
      await store.devices.enroll({ ...base, id: 'cam-pass', authMethod: 'secret', certFingerprint: 'cd'.repeat(32) });
      expect(await store.devices.certFingerprint('cam-pass')).toBeNull();
    });

    it('lists in id order with status, health and label filters and keyset paging', async () => {
      for (const [id, site] of [
        ['cam-c', 'north'],
        ['cam-a', 'north'],
        ['cam-b', 'south'],
      ] as const) {
        await enroll(id, { site, kind: 'camera' });
      }
      await store.ingest.commit({
        messages: [],
        deadLetters: [],
        devices: [{ state: { ...initialLiveState('cam-b', T), status: 'online', health: 'degraded' } }],
      });
      const ids = async (query: Parameters<Store['devices']['list']>[0]) =>
        (await store.devices.list(query)).map((d) => d.id);
      expect(await ids({ limit: 10 })).toEqual(['cam-a', 'cam-b', 'cam-c']);
      expect(await ids({ limit: 10, labels: [['site', 'north']] })).toEqual(['cam-a', 'cam-c']);
      expect(
        await ids({
          limit: 10,
          labels: [
            ['site', 'north'],
            ['kind', 'camera'],
          ],
        }),
      ).toEqual(['cam-a', 'cam-c']);
      expect(await ids({ limit: 10, labels: [['site', 'nowhere']] })).toEqual([]);
      expect(await ids({ limit: 10, status: 'online' })).toEqual(['cam-b']);
      expect(await ids({ limit: 10, health: 'degraded' })).toEqual(['cam-b']);
      expect(await ids({ limit: 2 })).toEqual(['cam-a', 'cam-b']);
      expect(await ids({ limit: 2, afterId: 'cam-b' })).toEqual(['cam-c']);
    });

    it('patches labels, removing those set to null', async () => {
      await enroll('cam-1', { a: '1', b: '2' });
      expect((await store.devices.patchLabels('cam-1', { a: null, c: '3' }))?.labels).toEqual({ b: '2', c: '3' });
      expect(await store.devices.patchLabels('missing', { a: '1' })).toBeNull();
    });

    it('updates desired state atomically with increasing versions', async () => {
      await enroll('cam-1');
      const bump = (current: { version: number } | null) => ({ version: (current?.version ?? 0) + 1, issuedAt: T });
      const results = await Promise.all([
        store.devices.updateDesired('cam-1', bump),
        store.devices.updateDesired('cam-1', bump),
      ]);
      expect(results.map((d) => d?.version).sort()).toEqual([1, 2]);
      expect((await store.devices.get('cam-1'))?.desired).toEqual({ version: 2, issuedAt: T });
      expect(await store.devices.listDesired()).toEqual([{ id: 'cam-1', desired: { version: 2, issuedAt: T } }]);
      expect(await store.devices.updateDesired('missing', bump)).toBeNull();
    });

    it('counts active devices by status, health and health reason', async () => {
      await enroll('cam-1');
      await enroll('cam-2');
      await enroll('cam-3');
      await store.ingest.commit({
        messages: [],
        deadLetters: [],
        devices: [
          {
            state: {
              ...initialLiveState('cam-1', T),
              status: 'online',
              health: 'degraded',
              healthReasons: ['high-temperature', 'disk-nearly-full'],
            },
          },
          {
            state: {
              ...initialLiveState('cam-2', T),
              status: 'online',
              health: 'degraded',
              healthReasons: ['high-temperature'],
            },
          },
        ],
      });
      await store.devices.revoke('cam-3', T);
      expect(await store.devices.counts()).toEqual({
        total: 2,
        byStatus: { online: 2 },
        byHealth: { degraded: 2 },
        byHealthReason: { 'high-temperature': 2, 'disk-nearly-full': 1 },
      });
    });

    it('loads the live states it stored, with the latest telemetry document', async () => {
      await enroll('cam-1');
      const state = {
        ...initialLiveState('cam-1', T),
        status: 'online' as const,
        bootIds: ['b1', 'b2'],
        telemetryBootId: 'b2',
        telemetrySeq: 9,
        telemetryAt: T + 5,
        healthReasons: ['telemetry-stale'],
      };
      await store.ingest.commit({ messages: [], deadLetters: [], devices: [{ state, telemetry: { seq: 9 } }] });
      const loaded = await store.devices.loadLiveState('cam-1');
      expect(loaded).toEqual({ ...state, telemetry: { seq: 9 } });
      expect(await store.devices.loadLiveStates()).toEqual([loaded]);
      expect((await store.devices.get('cam-1'))?.bootId).toBe('b2');
    });
  });

  describe('device credentials', () => {
    const begin = (id: string, secretHashNext: string, deadline: number, now = T) =>
      store.credentials.beginRotation({ id, secretHashNext, deadline, now });

    it('reads the current hash with no rotation pending, and nothing for an unknown or revoked device', async () => {
      await enroll('cam-1');
      expect(await store.credentials.get('cam-1')).toEqual({
        secretHash: 'hash-cam-1',
        secretHashNext: null,
        secretNextDeadline: null,
      });
      expect(await store.credentials.get('cam-nobody')).toBeNull();
      await store.devices.revoke('cam-1', T + 1);
      expect(await store.credentials.get('cam-1')).toBeNull();
      expect(await begin('cam-1', 'n', T + 9)).toBeNull();
      expect(await begin('cam-x', 'n', T + 9)).toBeNull();
    });

    it('begins a rotation beside the current hash, replaces a pending one, and promotes only the pending hash once', async () => {
      await enroll('cam-1');
      const begun = await begin('cam-1', 'n1', T + 100);
      expect(begun).toEqual({ secretHash: 'hash-cam-1', secretHashNext: 'n1', secretNextDeadline: T + 100 });
      // Before its deadline a pending rotation is replaced, and the current hash stays.
      const again = await begin('cam-1', 'n2', T + 200, T + 1);
      expect(again).toEqual({ secretHash: 'hash-cam-1', secretHashNext: 'n2', secretNextDeadline: T + 200 });
      expect(await store.credentials.promote('cam-1', 'n1')).toBe(false);
      expect(await store.credentials.get('cam-1')).toEqual(again);
      expect(await store.credentials.promote('cam-1', 'n2')).toBe(true);
      expect(await store.credentials.promote('cam-1', 'n2')).toBe(false);
      expect(await store.credentials.get('cam-1')).toEqual({
        secretHash: 'n2',
        secretHashNext: null,
        secretNextDeadline: null,
      });
      // The devices repository reads the promoted hash too.
      expect(await store.devices.secretHash('cam-1')).toBe('n2');
    });

    it('promotes an expired pending hash in the statement that begins the next rotation', async () => {
      await enroll('cam-1');
      await begin('cam-1', 'n1', T + 100);
      // At the deadline the old hash no longer works: n1 is the only valid one, so it becomes current.
      const next = await begin('cam-1', 'n2', T + 300, T + 100);
      expect(next).toEqual({ secretHash: 'n1', secretHashNext: 'n2', secretNextDeadline: T + 300 });
    });

    it('forgets a pending rotation when a revoked id is enrolled again', async () => {
      await enroll('cam-1');
      await begin('cam-1', 'n1', T + 100);
      await store.devices.revoke('cam-1', T + 1);
      expect(await store.credentials.promote('cam-1', 'n1')).toBe(false);
      await store.devices.enroll({ id: 'cam-1', labels: {}, secretHash: 'fresh', now: T + 2 });
      expect(await store.credentials.get('cam-1')).toEqual({
        secretHash: 'fresh',
        secretHashNext: null,
        secretNextDeadline: null,
      });
    });
  });

  describe('ingest and messages', () => {
    it('stores each (device, msgId) once and reports which rows were new', async () => {
      await enroll('cam-1');
      const { inserted } = await store.ingest.commit({
        messages: [
          message('cam-1', 'm1', T),
          message('cam-1', 'm2', T + 1),
          message('cam-1', 'm1', T + 2),
          message('cam-2', 'm1', T),
        ],
        deadLetters: [],
        devices: [],
      });
      expect(inserted).toEqual([true, true, false, true]);
      const again = await store.ingest.commit({ messages: [message('cam-1', 'm2', T)], deadLetters: [], devices: [] });
      expect(again.inserted).toEqual([false]);
      expect(await store.messages.count('cam-1')).toBe(2);
      expect(await store.messages.count('cam-1', 'm1')).toBe(1);
    });

    it('never writes live state over a revoked device', async () => {
      await enroll('cam-1');
      await store.devices.revoke('cam-1', T);
      await store.ingest.commit({
        messages: [],
        deadLetters: [],
        devices: [{ state: { ...initialLiveState('cam-1', T), status: 'online', health: 'healthy' } }],
      });
      const counts = await store.devices.counts();
      expect(counts.total).toBe(0);
      expect(await store.devices.loadLiveState('cam-1')).toBeNull();
    });

    it('lists a device history newest first by receipt (received time, seq, id), by channel, with a keyset', async () => {
      await store.ingest.commit({
        messages: [
          message('cam-1', 'a', T + 1),
          message('cam-1', 'b', T + 3),
          message('cam-1', 'c', T + 3),
          message('cam-1', 'd', T + 2, 'events'),
          message('cam-2', 'e', T + 9),
        ],
        deadLetters: [],
        devices: [],
      });
      const all = await store.messages.list({ deviceId: 'cam-1', limit: 10 });
      expect(all.map((m) => m.msgId)).toEqual(['c', 'b', 'd', 'a']);
      const telemetry = await store.messages.list({ deviceId: 'cam-1', channel: 'telemetry', limit: 2 });
      expect(telemetry.map((m) => m.msgId)).toEqual(['c', 'b']);
      const last = telemetry[1]!;
      const rest = await store.messages.list({
        deviceId: 'cam-1',
        channel: 'telemetry',
        before: { receivedAt: last.receivedAt, seq: last.seq, id: last.id },
        limit: 10,
      });
      expect(rest.map((m) => m.msgId)).toEqual(['a']);
    });

    it('keeps the clockSkew flag of each row and orders a skewed ts by receipt, not by the device clock', async () => {
      await store.ingest.commit({
        messages: [
          { ...message('cam-1', 'future', 8.64e15), receivedAt: T + 1, clockSkew: true },
          { ...message('cam-1', 'past', Date.UTC(2019, 5, 1)), receivedAt: T + 2, clockSkew: true },
          { ...message('cam-1', 'plain', T + 3), clockSkew: false },
          { ...message('cam-1', 'unset', T + 4) },
        ],
        deadLetters: [],
        devices: [],
      });
      const rows = await store.messages.list({ deviceId: 'cam-1', limit: 10 });
      expect(rows.map((row) => [row.msgId, row.clockSkew, row.deviceTs])).toEqual([
        ['unset', false, T + 4],
        ['plain', false, T + 3],
        ['past', true, Date.UTC(2019, 5, 1)],
        ['future', true, 8.64e15],
      ]);
    });

    it('prunes the oldest rows received before a cutoff, at most a chunk at a time', async () => {
      await store.ingest.commit({
        messages: Array.from({ length: 10 }, (_, i) => ({ ...message('cam-1', `m${i}`, T), receivedAt: T + i })),
        deadLetters: [],
        devices: [],
      });
      expect(await store.messages.pruneOlderThan(T + 6, 4)).toBe(4);
      expect(await store.messages.pruneOlderThan(T + 6, 4)).toBe(2);
      expect(await store.messages.pruneOlderThan(T + 6, 4)).toBe(0);
      expect(await store.messages.count('cam-1')).toBe(4);
    });
  });

  describe('dead letters', () => {
    it('lists newest first, filters by device and reason, and pages by id', async () => {
      const letter = (deviceId: string | null, reason: string, receivedAt: number) => ({
        receivedAt,
        deviceId,
        topic: 'fleet/v1/devices/x/telemetry',
        reason,
        detail: 'd',
        payloadSize: 3,
        payloadExcerpt: 'YWJj',
      });
      await store.ingest.commit({
        messages: [],
        deadLetters: [
          letter('cam-1', 'invalid_json', T),
          letter('cam-1', 'invalid_schema', T + 1),
          letter(null, 'invalid_json', T + 2),
        ],
        devices: [],
      });
      const all = await store.deadLetters.list({ limit: 10 });
      expect(all.map((l) => l.reason)).toEqual(['invalid_json', 'invalid_schema', 'invalid_json']);
      expect(all[0]!.deviceId).toBeNull();
      expect((await store.deadLetters.list({ limit: 10, deviceId: 'cam-1' })).length).toBe(2);
      expect((await store.deadLetters.list({ limit: 10, reason: 'invalid_json' })).length).toBe(2);
      expect((await store.deadLetters.list({ limit: 10, beforeId: all[1]!.id })).map((l) => l.reason)).toEqual([
        'invalid_json',
      ]);
      expect(await store.deadLetters.pruneOlderThan(T + 2, 100)).toBe(2);
    });
  });

  describe('api tokens', () => {
    it('creates, finds by hash, lists, revokes, and replaces the bootstrap token', async () => {
      const created = await store.apiTokens.create({
        id: 't1',
        name: 'ops',
        role: 'operator',
        tokenHash: 'h1',
        now: T,
      });
      expect(created).toEqual({
        id: 't1',
        name: 'ops',
        role: 'operator',
        bootstrap: false,
        createdAt: T,
        revokedAt: null,
      });
      expect(await store.apiTokens.findByHash('h1')).toEqual({ ...created, tokenHash: 'h1' });
      expect(await store.apiTokens.findByHash('nope')).toBeNull();
      await store.apiTokens.replaceBootstrap({ id: 'b1', name: 'bootstrap', role: 'admin', tokenHash: 'hb1', now: T });
      expect(await store.apiTokens.activeAdminCount()).toBe(1);
      await store.apiTokens.replaceBootstrap({
        id: 'b2',
        name: 'bootstrap',
        role: 'admin',
        tokenHash: 'hb2',
        now: T + 1,
      });
      expect(await store.apiTokens.activeAdminCount()).toBe(1);
      expect(await store.apiTokens.findByHash('hb1')).toBeNull();
      expect((await store.apiTokens.findByHash('hb2'))?.bootstrap).toBe(true);
      // The same secret configured again keeps working.
      await store.apiTokens.replaceBootstrap({
        id: 'b3',
        name: 'bootstrap',
        role: 'admin',
        tokenHash: 'hb2',
        now: T + 2,
      });
      expect((await store.apiTokens.findByHash('hb2'))?.id).toBe('b3');
      expect(await store.apiTokens.revoke('t1', T + 3)).toBe(true);
      expect(await store.apiTokens.revoke('t1', T + 4)).toBe(false);
      expect(await store.apiTokens.findByHash('h1')).toBeNull();
      const listed = await store.apiTokens.list();
      // b2's row gave way to b3 (same secret); b1 stays, revoked, as history.
      expect(listed.map((t) => t.id).sort()).toEqual(['b1', 'b3', 't1']);
      expect(listed.find((t) => t.id === 'b1')?.revokedAt).toBe(T + 1);
      expect(JSON.stringify(listed)).not.toContain('hb');
    });
  });
  describe('device snapshots', () => {
    it('reads active devices by id (in chunks) and by labels, with reported and desired state', async () => {
      await enroll('cam-a', { site: 'north', hardware: 'rpi5' });
      await enroll('cam-b', { site: 'south' });
      await enroll('cam-c', { site: 'north' });
      await store.devices.revoke('cam-c', T);
      await store.ingest.commit({
        messages: [],
        deadLetters: [],
        devices: [{ state: { ...initialLiveState('cam-a', T), status: 'online' }, reported: { agentVersion: '1' } }],
      });
      await store.devices.updateDesired('cam-b', () => ({ version: 3, issuedAt: T }));
      const byId = await store.devices.snapshots({ ids: ['cam-b', 'cam-a', 'cam-c', 'nope'] });
      expect(byId.sort((a, b) => a.id.localeCompare(b.id))).toEqual([
        {
          id: 'cam-a',
          labels: { site: 'north', hardware: 'rpi5' },
          status: 'online',
          reported: { agentVersion: '1' },
          desired: null,
        },
        {
          id: 'cam-b',
          labels: { site: 'south' },
          status: 'unknown',
          reported: null,
          desired: { version: 3, issuedAt: T },
        },
      ]);
      const many = Array.from({ length: 2500 }, (_, i) => `x-${i}`);
      expect((await store.devices.snapshots({ ids: [...many, 'cam-a'] })).map((d) => d.id)).toEqual(['cam-a']);
      expect((await store.devices.snapshots({ labels: [['site', 'north']] })).map((d) => d.id)).toEqual(['cam-a']);
      expect((await store.devices.snapshots({ labels: [] })).map((d) => d.id)).toEqual(['cam-a', 'cam-b']);
    });
  });

  describe('telemetry samples', () => {
    it('extracts the gate fields of telemetry received within a range, whatever the device clock says', async () => {
      const body = (sha: string | null, frames: number, shadow = false) =>
        JSON.stringify({
          msgId: 'x',
          intervalS: 10,
          pipeline:
            sha === null
              ? undefined
              : {
                  windowS: 10,
                  framesProcessed: frames,
                  inferenceErrors: 2,
                  latencyMs: { inference: { count: 5, p50: 10, p95: 21.5, p99: 30, max: 31 } },
                  detectionsPer1000: { car: 1500, person: 250 },
                  confidenceHistogram: Array.from({ length: 20 }, (_, i) => i),
                  model: { id: 'det@1.0.0', name: 'det', version: '1.0.0', sha256: sha },
                },
          shadow: shadow
            ? {
                candidate: { id: 'det@2.0.0', name: 'det', version: '2.0.0', sha256: 'b'.repeat(64) },
                framesCompared: 40,
                precision: 0.9,
                recall: null,
                candidateLatencyMs: { count: 40, p50: 12, p95: 25, p99: 30, max: 40 },
              }
            : undefined,
        });
      const row = (msgId: string, receivedAt: number, text: string, channel: NewMessage['channel'] = 'telemetry') => ({
        ...message('cam-1', msgId, 0, channel),
        receivedAt,
        body: text,
      });
      await store.ingest.commit({
        messages: [
          row('before', T - 1, body('a'.repeat(64), 100)),
          row('first', T, body('a'.repeat(64), 100, true)),
          row('plain', T + 500, body(null, 0)),
          row('event', T + 600, '{"type":"model.update"}', 'events'),
          row('last', T + 1000, body('c'.repeat(64), 7)),
          row('after', T + 1001, body('a'.repeat(64), 100)),
        ],
        deadLetters: [],
        devices: [],
      });
      const samples = await store.messages.telemetrySamples({ from: T, to: T + 1000 });
      expect(samples.sort((a, b) => a.receivedAt - b.receivedAt)).toEqual([
        {
          deviceId: 'cam-1',
          receivedAt: T,
          modelSha256: 'a'.repeat(64),
          frames: 100,
          errors: 2,
          windowS: 10,
          latencyP95: 21.5,
          detectionsPer1000: { car: 1500, person: 250 },
          confidence: Array.from({ length: 20 }, (_, i) => i),
          shadow: {
            candidateSha256: 'b'.repeat(64),
            compared: 40,
            precision: 0.9,
            recall: null,
            candidateLatencyP95: 25,
          },
        },
        {
          deviceId: 'cam-1',
          receivedAt: T + 500,
          modelSha256: null,
          frames: 0,
          errors: 0,
          windowS: 0,
          latencyP95: null,
          detectionsPer1000: {},
          confidence: [],
          shadow: null,
        },
        expect.objectContaining({ receivedAt: T + 1000, modelSha256: 'c'.repeat(64), frames: 7 }),
      ]);
    });
  });

  const model = (version: string, overrides: Partial<ModelRecord> = {}): ModelRecord => ({
    id: `det@${version}`,
    name: 'det',
    version,
    sha256: version.replace(/\D/g, '').padEnd(64, 'a'),
    sizeBytes: 1234,
    releaseCounter: 1,
    adapter: 'yolo',
    keyId: 'abcdef0123456789',
    issuedAt: T,
    expiresAt: T + 1e9,
    signed: '{"release":{},"signature":"x"}',
    manifest: { name: 'det', version, adapter: 'yolo', input: { layout: 'nchw' } },
    createdAt: T,
    uploadedBy: 'tok1',
    ...overrides,
  });

  describe('models', () => {
    it('stores a version once, returns the existing row on a second create, and lists by name with paging', async () => {
      const first = await store.models.create(model('1.0.0'));
      expect(first).toEqual({ created: true, model: model('1.0.0') });
      const again = await store.models.create(model('1.0.0', { sha256: 'f'.repeat(64), createdAt: T + 5 }));
      expect(again).toEqual({ created: false, model: model('1.0.0') });
      await store.models.create(model('2.0.0'));
      await store.models.create({ ...model('1.0.0'), id: 'cls@1.0.0', name: 'cls' });
      expect(await store.models.get('det@2.0.0')).toEqual(model('2.0.0'));
      expect(await store.models.get('det@9.9.9')).toBeNull();
      const ids = async (query: Parameters<Store['models']['list']>[0]) =>
        (await store.models.list(query)).map((m) => m.id);
      expect(await ids({ limit: 10 })).toEqual(['cls@1.0.0', 'det@1.0.0', 'det@2.0.0']);
      expect(await ids({ limit: 10, name: 'det' })).toEqual(['det@1.0.0', 'det@2.0.0']);
      expect(await ids({ limit: 1, afterId: 'cls@1.0.0' })).toEqual(['det@1.0.0']);
    });
  });

  describe('rollouts', () => {
    const rollout = (id: string, overrides: Partial<RolloutRecord> = {}): RolloutRecord => ({
      id,
      modelId: 'det@2.0.0',
      spec: { modelId: 'det@2.0.0', stages: [{ name: 'canary', kind: 'canary' }] },
      status: 'running',
      stageIndex: 0,
      stageStartedAt: T,
      failingWindows: 0,
      lastEvaluatedAt: null,
      cohorts: { canary: ['cam-1'], control: ['cam-2'], order: ['cam-1', 'cam-2'] },
      reason: null,
      version: 1,
      createdAt: T,
      updatedAt: T,
      createdBy: 'tok1',
      ...overrides,
    });
    const assignment = (rolloutId: string, deviceId: string, state: string): AssignmentRecord => ({
      rolloutId,
      deviceId,
      mode: 'active',
      stageIndex: 0,
      state,
      previous: { id: 'det@1.0.0', name: 'det', version: '1.0.0', sha256: 'a'.repeat(64) },
      assignedAt: T,
      updatedAt: T,
      reason: null,
    });
    const created = (id: string) => ({ rolloutId: id, at: T, type: 'created', stage: null, data: { by: 'test' } });

    beforeEach(async () => {
      if (!store) return;
      await store.models.create(model('2.0.0'));
    });

    it('creates with its first event, lists newest first with filters and a keyset', async () => {
      await store.rollouts.create(rollout('r1'), created('r1'));
      await store.rollouts.create(rollout('r2', { createdAt: T + 1, status: 'completed' }), created('r2'));
      await store.rollouts.create(rollout('r3', { createdAt: T + 1 }), created('r3'));
      expect(await store.rollouts.get('r1')).toEqual(rollout('r1'));
      expect(await store.rollouts.get('nope')).toBeNull();
      const ids = async (query: Parameters<Store['rollouts']['list']>[0]) =>
        (await store.rollouts.list(query)).map((r) => r.id);
      expect(await ids({ limit: 10 })).toEqual(['r3', 'r2', 'r1']);
      expect(await ids({ limit: 10, status: 'running' })).toEqual(['r3', 'r1']);
      expect(await ids({ limit: 10, modelId: 'det@1.0.0' })).toEqual([]);
      expect(await ids({ limit: 10, before: { createdAt: T + 1, id: 'r3' } })).toEqual(['r2', 'r1']);
      expect((await store.rollouts.listEvents({ rolloutId: 'r1', limit: 10 })).map((e) => e.data)).toEqual([
        { by: 'test' },
      ]);
    });

    it('updates only at the expected version, appending events in the same transaction', async () => {
      await store.rollouts.create(rollout('r1'), created('r1'));
      const updated = await store.rollouts.update('r1', 1, { stageIndex: 1, stageStartedAt: T + 10 }, T + 10, [
        { rolloutId: 'r1', at: T + 10, type: 'advanced', stage: 'canary', data: { to: 1 } },
      ]);
      expect(updated).toMatchObject({ stageIndex: 1, stageStartedAt: T + 10, version: 2, updatedAt: T + 10 });
      const stale = await store.rollouts.update('r1', 1, { status: 'paused' }, T + 11, [
        { rolloutId: 'r1', at: T + 11, type: 'paused', stage: null, data: {} },
      ]);
      expect(stale).toBeNull();
      expect((await store.rollouts.get('r1'))?.status).toBe('running');
      const events = await store.rollouts.listEvents({ rolloutId: 'r1', limit: 10 });
      expect(events.map((e) => e.type)).toEqual(['created', 'advanced']);
      expect(await store.rollouts.lastEvent('r1', 'advanced')).toMatchObject({ type: 'advanced', data: { to: 1 } });
      expect(await store.rollouts.lastEvent('r1', 'verdict')).toBeNull();
      expect((await store.rollouts.listEvents({ rolloutId: 'r1', afterId: events[0]!.id, limit: 10 })).length).toBe(1);
      expect((await store.rollouts.listEvents({ rolloutId: 'r1', type: 'created', limit: 10 })).length).toBe(1);
    });

    it('upserts assignments, changes their states, counts them and finds what a device may download', async () => {
      await store.rollouts.create(rollout('r1'), created('r1'));
      await store.rollouts.putAssignments([
        assignment('r1', 'cam-1', 'assigned'),
        assignment('r1', 'cam-2', 'assigned'),
      ]);
      await store.rollouts.putAssignments([
        { ...assignment('r1', 'cam-2', 'assigned'), mode: 'shadow', stageIndex: 1 },
      ]);
      await store.rollouts.setAssignmentStates(
        'r1',
        [{ deviceId: 'cam-1', state: 'failed', reason: 'bad_signature' }],
        T + 5,
      );
      const rows = await store.rollouts.assignments('r1');
      expect(rows.sort((a, b) => a.deviceId.localeCompare(b.deviceId))).toEqual([
        { ...assignment('r1', 'cam-1', 'failed'), reason: 'bad_signature', updatedAt: T + 5 },
        { ...assignment('r1', 'cam-2', 'assigned'), mode: 'shadow', stageIndex: 1 },
      ]);
      expect(await store.rollouts.assignmentCounts('r1')).toEqual({ failed: 1, assigned: 1 });
      expect(
        (await store.rollouts.listAssignments({ rolloutId: 'r1', afterDeviceId: 'cam-1', limit: 10 })).map(
          (a) => a.deviceId,
        ),
      ).toEqual(['cam-2']);
      expect((await store.rollouts.listAssignments({ rolloutId: 'r1', state: 'failed', limit: 10 })).length).toBe(1);
      expect(await store.rollouts.assignedModelIds('cam-2')).toEqual(['det@2.0.0']);
      expect(await store.rollouts.assignedModelIds('cam-1')).toEqual([]);
    });

    it('lists as work the running and paused rollouts and the rolled-back ones with devices not yet home', async () => {
      await store.rollouts.create(rollout('run'), created('run'));
      await store.rollouts.create(rollout('pause', { status: 'paused' }), created('pause'));
      await store.rollouts.create(rollout('done', { status: 'completed' }), created('done'));
      await store.rollouts.create(rollout('back', { status: 'rolled_back' }), created('back'));
      await store.rollouts.create(rollout('home', { status: 'aborted' }), created('home'));
      await store.rollouts.putAssignments([
        assignment('back', 'cam-1', 'reverting'),
        assignment('home', 'cam-1', 'rolled_back'),
        assignment('done', 'cam-1', 'active'),
      ]);
      expect((await store.rollouts.listWork()).map((r) => r.id).sort()).toEqual(['back', 'pause', 'run']);
      await store.rollouts.setAssignmentStates('back', [{ deviceId: 'cam-1', state: 'rolled_back', reason: null }], T);
      expect((await store.rollouts.listWork()).map((r) => r.id).sort()).toEqual(['pause', 'run']);
    });
  });
  describe('samples', () => {
    const sha = (n: number) => n.toString(16).padStart(64, '0');
    const sample = (id: string, overrides: Partial<SampleRecord> = {}): SampleRecord => ({
      id,
      deviceId: 'cam-1',
      site: 'north',
      labels: { site: 'north', 'zone.a': 'x' },
      modelId: 'det@1.0.0',
      modelSha256: sha(99),
      strategy: 'near-threshold',
      reason: '2 detections near 0.5',
      tags: ['unsure'],
      predictions: [{ box: [1, 2, 30, 40], score: 0.51, classId: 0, label: 'text' }],
      frameTs: T,
      bootId: 'bootaaaa',
      seq: 1,
      imageSha256: sha(Number.parseInt(id.replace(/\D/g, '') || '0', 10) + 1),
      bytes: 1000,
      width: 64,
      height: 48,
      thumbnailSha256: null,
      receivedAt: T,
      ...overrides,
    });
    /** Dataset rows straight in SQL (the dataset repository is another aggregate's). */
    const addToDataset = async (datasetId: string, sampleId: string, annotations: unknown) => {
      const json = annotations === null ? null : JSON.stringify(annotations);
      const statements = [
        sql`INSERT INTO datasets (id, name, version, query, created_at) VALUES (${datasetId}, ${datasetId}, 1, '{}', ${T})
            ON CONFLICT DO NOTHING`,
        sql`INSERT INTO dataset_samples (dataset_id, sample_id, split, annotations) VALUES (${datasetId}, ${sampleId}, 'train', ${json})`,
      ];
      for (const statement of statements) {
        if (store.dialect === 'sqlite') (store as SqliteStore).db.run(statement);
        else await (store as PostgresStore).db.execute(statement);
      }
    };

    it('reads an uploading device in one lookup: the secret hash its credential is checked against and its labels, never a revoked one', async () => {
      await enroll('cam-up', { site: 'north', zone: 'a' });
      expect(await store.samples.uploaderOf('cam-up')).toEqual({
        id: 'cam-up',
        secretHash: await store.devices.secretHash('cam-up'),
        secretHashNext: null,
        secretNextDeadline: null,
        labels: { site: 'north', zone: 'a' },
      });
      await store.devices.patchLabels('cam-up', { zone: null, site: 'south' });
      expect((await store.samples.uploaderOf('cam-up'))?.labels).toEqual({ site: 'south' });
      expect(await store.samples.uploaderOf('cam-nobody')).toBeNull();
      await store.devices.revoke('cam-up', T + 1);
      expect(await store.samples.uploaderOf('cam-up')).toBeNull();
    });

    it('stores a sample once per device and image, returning the existing row on a repeat', async () => {
      const first = await store.samples.insert(sample('s1'));
      expect(first.created).toBe(true);
      const again = await store.samples.insert(sample('s1-again', { imageSha256: first.sample.imageSha256 }));
      expect(again).toMatchObject({ created: false, sample: { id: 's1' } });
      const otherDevice = await store.samples.insert(
        sample('s1-other', { deviceId: 'cam-2', imageSha256: first.sample.imageSha256 }),
      );
      expect(otherDevice.created).toBe(true);
      expect(await store.samples.get('s1')).toEqual(sample('s1'));
      expect(await store.samples.findByImage('cam-2', first.sample.imageSha256)).toMatchObject({ id: 's1-other' });
      expect(await store.samples.usage()).toEqual({ count: 2, bytes: 2000 });
    });

    it('stores a batch in one statement, each row once: repeats of a stored image or of one earlier in the batch return the existing row', async () => {
      await store.samples.insert(sample('s1'));
      const results = await store.samples.insertMany([
        sample('s2'),
        sample('s1-again', { imageSha256: sample('s1').imageSha256 }),
        sample('s3', { deviceId: 'cam-2' }),
        sample('s3-again', { deviceId: 'cam-2', imageSha256: sample('s3').imageSha256 }),
      ]);
      expect(results.map((r) => [r.created, r.sample.id])).toEqual([
        [true, 's2'],
        [false, 's1'],
        [true, 's3'],
        [false, 's3'],
      ]);
      expect(await store.samples.get('s3')).toEqual(sample('s3', { deviceId: 'cam-2' }));
      expect(await store.samples.usage()).toEqual({ count: 3, bytes: 3000 });
      expect(await store.samples.insertMany([])).toEqual([]);
      // One refused row refuses the statement: nothing of the batch is stored.
      await expect(
        store.samples.insertMany([sample('s4'), sample('s5', { strategy: null as unknown as string })]),
      ).rejects.toThrow();
      expect(await store.samples.get('s4')).toBeNull();
    });

    it('lists newest first with filters on device, site, labels, model, strategy, capture time and labels, and keyset paging', async () => {
      await store.samples.insert(sample('s1', { receivedAt: T + 1, frameTs: T + 1 }));
      await store.samples.insert(
        sample('s2', { receivedAt: T + 2, frameTs: T + 2, deviceId: 'cam-2', site: null, labels: {} }),
      );
      await store.samples.insert(
        sample('s3', { receivedAt: T + 3, frameTs: T + 3, strategy: 'random', modelId: null, modelSha256: null }),
      );
      await store.samples.insert(sample('s4', { receivedAt: T + 3, frameTs: T + 4 }));
      const ids = async (query: Partial<Parameters<Store['samples']['list']>[0]>) =>
        (await store.samples.list({ limit: 10, ...query })).map((s) => s.id);
      expect(await ids({})).toEqual(['s4', 's3', 's2', 's1']);
      expect(await ids({ deviceId: 'cam-2' })).toEqual(['s2']);
      expect(await ids({ site: 'north' })).toEqual(['s4', 's3', 's1']);
      expect(
        await ids({
          labels: [
            ['zone.a', 'x'],
            ['site', 'north'],
          ],
        }),
      ).toEqual(['s4', 's3', 's1']);
      expect(await ids({ labels: [['site', 'south']] })).toEqual([]);
      expect(await ids({ modelId: 'det@1.0.0', strategy: 'near-threshold' })).toEqual(['s4', 's2', 's1']);
      expect(await ids({ modelSha256: sha(99), from: T + 2, to: T + 3 })).toEqual(['s2']);
      expect(await ids({ before: { receivedAt: T + 3, id: 's4' }, limit: 2 })).toEqual(['s3', 's2']);
      await addToDataset('d1', 's1', [{ bbox: [1, 1, 2, 2], category: 'text' }]);
      await addToDataset('d1', 's2', null);
      expect(await ids({ hasLabels: true })).toEqual(['s1']);
      expect(await ids({ hasLabels: false })).toEqual(['s4', 's3', 's2']);
    });

    it('offers the oldest samples no dataset references for pruning, and deletes only unreferenced ones unless memberships go too', async () => {
      await store.samples.insert(sample('s1', { receivedAt: T + 1 }));
      await store.samples.insert(sample('s2', { receivedAt: T + 2 }));
      await store.samples.insert(sample('s3', { receivedAt: T + 3 }));
      await addToDataset('d1', 's1', null);
      expect((await store.samples.oldestUnreferenced({ limit: 10 })).map((s) => s.id)).toEqual(['s2', 's3']);
      expect((await store.samples.oldestUnreferenced({ before: T + 3, limit: 10 })).map((s) => s.id)).toEqual(['s2']);
      const guarded = await store.samples.deleteIds(['s1', 's2']);
      expect(guarded.deleted.map((s) => s.id)).toEqual(['s2']);
      expect(await store.samples.blobInUse(sample('s2').imageSha256)).toBe(false);
      expect(await store.samples.blobInUse(sample('s1').imageSha256)).toBe(true);
      const forced = await store.samples.deleteIds(['s1'], { withMemberships: true });
      expect(forced).toMatchObject({ deleted: [{ id: 's1', bytes: 1000 }], memberships: 1 });
      expect(await store.samples.idsOfDevice('cam-1')).toEqual(['s3']);
    });

    it('keeps one upload per device and image, advancing its offset only from the acknowledged one', async () => {
      const upload = {
        uploadId: 'u1',
        deviceId: 'cam-1',
        metadata: { a: 1 },
        imageSha256: sha(5),
        bytes: 100,
        offset: 0,
        createdAt: T,
        updatedAt: T,
      };
      expect((await store.samples.createUpload(upload)).created).toBe(true);
      const again = await store.samples.createUpload({ ...upload, uploadId: 'u2' });
      expect(again).toMatchObject({ created: false, upload: { uploadId: 'u1', metadata: { a: 1 } } });
      expect(await store.samples.advanceUpload('u1', 0, 40, T + 1)).toBe(true);
      expect(await store.samples.advanceUpload('u1', 0, 80, T + 2)).toBe(false);
      expect(await store.samples.getUpload('u1')).toMatchObject({ offset: 40, updatedAt: T + 1 });
      expect((await store.samples.staleUploads(T + 2, 10)).map((u) => u.uploadId)).toEqual(['u1']);
      expect(await store.samples.staleUploads(T + 1, 10)).toEqual([]);
      await store.samples.deleteUpload('u1');
      expect(await store.samples.getUpload('u1')).toBeNull();
      await store.samples.createUpload({ ...upload, uploadId: 'u3' });
      await store.samples.createUpload({ ...upload, uploadId: 'u4', deviceId: 'cam-2' });
      expect(await store.samples.deleteUploadsOfDevice('cam-1')).toEqual(['u3']);
      expect(await store.samples.getUpload('u4')).not.toBeNull();
    });

    describe('datasets', () => {
      const version = (name: string, n: number, overrides: Partial<DatasetRecord> = {}): DatasetRecord => ({
        id: `${name}@${n}`,
        name,
        version: n,
        parentId: null,
        recipe: { source: 'query', query: { strategy: 'near-threshold' }, splits: { train: 80, val: 10, test: 10 } },
        sampleCount: 2,
        createdAt: T + n,
        createdBy: 'tok1',
        ...overrides,
      });

      it('stores a version with its members, reads them back joined with their samples, page by page', async () => {
        for (const id of ['s1', 's2', 's3']) await store.samples.insert(sample(id));
        const boxes = [{ box: [1, 2, 3, 4], label: 'text' }];
        const members = [
          { sampleId: 's1', split: 'train', annotations: boxes },
          { sampleId: 's2', split: 'val', annotations: null },
          { sampleId: 's3', split: 'train', annotations: [] },
        ];
        expect(await store.datasets.create(version('hard', 1, { sampleCount: 3 }), members)).toBe('created');
        expect(await store.datasets.get('hard@1')).toEqual(version('hard', 1, { sampleCount: 3 }));
        expect(await store.datasets.latestVersion('hard')).toBe(1);
        expect(await store.datasets.latestVersion('other')).toBe(0);
        expect(await store.datasets.splitCounts('hard@1')).toEqual({ train: 2, val: 1 });
        const first = await store.datasets.members('hard@1', { limit: 2 });
        expect(first.map((m) => [m.sampleId, m.split, m.annotations])).toEqual([
          ['s1', 'train', boxes],
          ['s2', 'val', null],
        ]);
        expect(first[0]!.sample).toEqual(sample('s1'));
        const rest = await store.datasets.members('hard@1', { afterSampleId: 's2', limit: 2 });
        expect(rest.map((m) => [m.sampleId, m.annotations])).toEqual([['s3', []]]);
        expect(await store.datasets.existingSampleIds(['s1', 'nope', 's3'])).toEqual(new Set(['s1', 's3']));
      });

      it('refuses a taken version number, and stores nothing of a version whose members fail', async () => {
        await store.samples.insert(sample('s1'));
        const one = [{ sampleId: 's1', split: 'train', annotations: null }];
        expect(await store.datasets.create(version('hard', 1), one)).toBe('created');
        expect(await store.datasets.create(version('hard', 1, { id: 'hard@1b' }), one)).toBe('conflict');
        // The same sample twice breaks the membership key after the version row went in: all of it rolls back.
        expect(await store.datasets.create(version('hard', 2), [...one, ...one])).toBe('conflict');
        expect(await store.datasets.get('hard@2')).toBeNull();
        expect(await store.datasets.get('hard@1b')).toBeNull();
        expect(await store.datasets.latestVersion('hard')).toBe(1);
      });

      it('lists versions newest first, by name, with keyset paging', async () => {
        await store.datasets.create(version('a', 1), []);
        await store.datasets.create(version('b', 2), []);
        await store.datasets.create(version('a', 3), []);
        expect((await store.datasets.list({ limit: 10 })).map((d) => d.id)).toEqual(['a@3', 'b@2', 'a@1']);
        expect((await store.datasets.list({ name: 'a', limit: 10 })).map((d) => d.id)).toEqual(['a@3', 'a@1']);
        expect(
          (await store.datasets.list({ before: { createdAt: T + 3, id: 'a@3' }, limit: 1 })).map((d) => d.id),
        ).toEqual(['b@2']);
      });
    });
  });

  describe('evaluations', () => {
    const metrics = (map50: number) => ({ task: 'detection', images: 3, map: map50 / 2, map50, classes: [] });
    const evaluation = (id: string, overrides: Partial<EvaluationRecord> = {}): EvaluationRecord => ({
      id,
      modelId: 'det@1.0.0',
      modelSha256: 'e'.repeat(64),
      datasetId: 'labelled@2',
      metrics: metrics(0.5),
      baseline: null,
      evaluator: { tool: 'edgeloop-agent eval', version: '0.1.0', provider: 'cpu', host: null, durationMs: 12 },
      createdAt: T,
      createdBy: 'tok1',
      ...overrides,
    });

    it('stores reports as posted and lists them per model newest first, by dataset version and with a baseline only', async () => {
      await store.models.create(model('1.0.0'));
      await store.models.create(model('2.0.0'));
      const baseline = { modelId: 'det@2.0.0', sha256: 'a'.repeat(64), metrics: metrics(0.4) };
      await store.evaluations.insert(evaluation('ev1'));
      await store.evaluations.insert(evaluation('ev2', { createdAt: T + 10, baseline }));
      await store.evaluations.insert(evaluation('ev3', { createdAt: T + 20, datasetId: 'other@1' }));
      await store.evaluations.insert(evaluation('ev4', { createdAt: T + 30, modelId: 'det@2.0.0' }));
      const ids = async (query: Parameters<Store['evaluations']['list']>[0]) =>
        (await store.evaluations.list(query)).map((e) => e.id);
      expect(await ids({ modelId: 'det@1.0.0', limit: 10 })).toEqual(['ev3', 'ev2', 'ev1']);
      expect(await ids({ modelId: 'det@1.0.0', datasetId: 'labelled@2', limit: 10 })).toEqual(['ev2', 'ev1']);
      expect(await ids({ modelId: 'det@1.0.0', datasetId: 'labelled@2', withBaseline: true, limit: 10 })).toEqual([
        'ev2',
      ]);
      expect(await ids({ modelId: 'det@1.0.0', limit: 1 })).toEqual(['ev3']);
      const [stored] = await store.evaluations.list({ modelId: 'det@1.0.0', datasetId: 'labelled@2', limit: 1 });
      expect(stored).toEqual(evaluation('ev2', { createdAt: T + 10, baseline }));
      expect(await ids({ modelId: 'det@9.9.9', limit: 10 })).toEqual([]);
    });

    it('refuses a report of a model that is not registered', async () => {
      await expect(store.evaluations.insert(evaluation('ev1', { modelId: 'ghost@1.0.0' }))).rejects.toThrow();
    });
  });

  describe('sample policies', () => {
    it('stores one policy per selector whatever the key order, replaces it, and removes it', async () => {
      const policy = { strategies: [{ kind: 'random', share: 0.01 }], limits: { perMinute: 10 } };
      await store.samplePolicies.put({ selector: {}, policy, updatedAt: T, updatedBy: null });
      await store.samplePolicies.put({
        selector: { site: 'north', line: 'a' },
        policy: { strategies: [] },
        updatedAt: T + 1,
        updatedBy: 'tok1',
      });
      await store.samplePolicies.put({
        selector: { line: 'a', site: 'north' },
        policy,
        updatedAt: T + 2,
        updatedBy: 'tok2',
      });
      const listed = await store.samplePolicies.list();
      expect(listed).toHaveLength(2);
      expect(listed.find((r) => Object.keys(r.selector).length === 2)).toEqual({
        selector: { site: 'north', line: 'a' },
        policy,
        updatedAt: T + 2,
        updatedBy: 'tok2',
      });
      expect(await store.samplePolicies.remove({ site: 'north', line: 'a' })).toBe(true);
      expect(await store.samplePolicies.remove({ site: 'north', line: 'a' })).toBe(false);
      expect((await store.samplePolicies.list()).map((r) => r.selector)).toEqual([{}]);
    });
  });
});
