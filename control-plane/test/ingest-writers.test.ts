import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DeviceToCloudChannel, encode, messageId, topicFor } from '@edgeloop/protocol';
import fc from 'fast-check';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceGate } from '../../test-services.ts';
import { loadConfig } from '../src/config.ts';
import { createPostgresStore } from '../src/db/postgres/store.ts';
import type { DeviceLiveState, Store } from '../src/db/repositories.ts';
import { createSqliteStore } from '../src/db/sqlite/store.ts';
import { WILL_SEQ } from '../src/device-state.ts';
import { createEventBus } from '../src/events.ts';
import { createIngestWriter, type IngestWriter } from '../src/ingest.ts';
import { createMetricsRegistry, type MetricsRegistry } from '../src/metrics.ts';
import { SYSTEM } from './harness.ts';
import { scratchDatabase } from './postgres-service.ts';

const postgres = serviceGate('postgres');

/*
 * Two ingest writers (two replicas) on one database, each with its own in-memory live state:
 * PostgreSQL (two stores on one scratch database) and SQLite (two connections on one file). The
 * messages of the same devices go to either writer, out of order. Whatever each writer believed,
 * the stored row must be the newest by the ordering rules of device-state.ts: a stale status
 * after a newer one, a replay of an older boot after a new birth, telemetry whose seq goes back,
 * none of them may overwrite what another writer stored.
 */

type Pair = { readonly stores: readonly [Store, Store]; close(): Promise<void> };

type Setup = { readonly name: string; readonly skip: string | null; open(): Promise<Pair> };

const sqliteTwoConnections: Setup = {
  name: 'sqlite (two connections on one file)',
  skip: null,
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'edgeloop-writers-'));
    const first = createSqliteStore({ dataDir: dir });
    const second = createSqliteStore({ dataDir: dir });
    return {
      stores: [first, second],
      async close() {
        await first.close();
        await second.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

const postgresTwoStores: Setup = {
  name: 'postgres (two stores on one database)',
  skip: postgres.run ? null : `PostgreSQL is not reachable at ${postgres.url}: ${postgres.unreachable}`,
  async open() {
    const database = scratchDatabase('edgeloop_writers');
    await database.create();
    const first = await createPostgresStore({ url: database.url, maxConnections: 4 });
    const second = await createPostgresStore({ url: database.url, maxConnections: 4 });
    return {
      stores: [first, second],
      async close() {
        await first.close();
        await second.close();
        await database.drop();
      },
    };
  },
};

const T = Date.UTC(2026, 11, 4);
const BOOT_1 = 'bootfirst1';
const BOOT_2 = 'bootsecond';

/** Device rows a writer folded again because the other writer had changed them. */
const registries = new Map<IngestWriter, MetricsRegistry>();
function reconciled(writer: IngestWriter): number {
  const text = registries.get(writer)?.render() ?? '';
  return Number(/^edgeloop_ingest_reconciled_total (\d+)$/m.exec(text)?.[1] ?? 0);
}

function createWriter(store: Store): IngestWriter {
  const config = loadConfig();
  const clock = { now: () => Date.now() };
  const metrics = createMetricsRegistry();
  const writer = createIngestWriter({
    store: {
      commit: (batch) => store.ingest.commit(batch),
      loadLiveStates: store.devices.loadLiveStates,
      loadLiveState: store.devices.loadLiveState,
    },
    bus: createEventBus({ clock }),
    metrics,
    clock,
    // Small batches: the two writers' commits interleave.
    config: { ...config.ingest, batchSize: 3 },
    health: config.health,
    logger: pino({ level: 'silent' }),
    isConnected: () => true,
  });
  registries.set(writer, metrics);
  return writer;
}

type Message =
  | { readonly channel: 'telemetry'; readonly bootId: string; readonly seq: number }
  | { readonly channel: 'reported'; readonly bootId: string; readonly seq: number }
  | {
      readonly channel: 'status';
      readonly bootId: string;
      readonly seq: number;
      readonly session: number;
      readonly kind: 'birth' | 'shutdown' | 'will';
    };

/** The payload of a message; telemetry carries its seq as cpuC, reported as desiredVersion. */
function payloadOf(message: Message): string {
  const envelope = {
    msgId: messageId(message.bootId, message.seq),
    bootId: message.bootId,
    seq: message.seq,
    ts: Date.now(),
  };
  switch (message.channel) {
    case 'telemetry':
      return encode('telemetry', {
        ...envelope,
        intervalS: 10,
        system: { ...SYSTEM, temperatures: { cpuC: message.seq, gpuC: null } },
      });
    case 'reported':
      return encode('reported', {
        ...envelope,
        agentVersion: '1.0.0',
        desiredVersion: message.seq,
        telemetryIntervalS: 10,
      });
    case 'status':
      if (message.kind === 'will') {
        // The broker publishes the will outside the sequence (seq 0); its msgId is still unique.
        return encode('status', {
          ...envelope,
          msgId: `${message.bootId}-will-${message.seq}`,
          seq: 0,
          state: 'offline',
          reason: 'connection-lost',
          session: message.session,
        });
      }
      return encode('status', {
        ...envelope,
        state: message.kind === 'birth' ? 'online' : 'offline',
        reason: message.kind,
        session: message.session,
      });
  }
}

/** Offers one message to a writer; resolves once it is committed and acked. */
function offer(writer: IngestWriter, deviceId: string, message: Message): Promise<void> {
  const channel: DeviceToCloudChannel = message.channel;
  const will = message.channel === 'status' && message.kind === 'will';
  return new Promise((resolve, reject) => {
    writer.offer(
      {
        deviceId,
        channel,
        topic: topicFor(deviceId, channel),
        payload: Buffer.from(payloadOf(message)),
        qos: 1,
        will,
        liveSession: !will,
      },
      (error) => (error ? reject(error) : resolve()),
    );
  });
}

const telemetry = (bootId: string, seq: number): Message => ({ channel: 'telemetry', bootId, seq });
const reported = (bootId: string, seq: number): Message => ({ channel: 'reported', bootId, seq });
const status = (bootId: string, seq: number, session: number, kind: 'birth' | 'shutdown' | 'will'): Message => ({
  channel: 'status',
  bootId,
  seq,
  session,
  kind,
});

/** The ordering fields of a live state (what "newest" is about). */
function orderOf(state: DeviceLiveState | null | undefined) {
  if (!state) return null;
  return {
    status: state.status,
    statusBootId: state.statusBootId,
    statusSession: state.statusSession,
    statusSeq: state.statusSeq,
    bootIds: state.bootIds,
    telemetryBootId: state.telemetryBootId,
    telemetrySeq: state.telemetrySeq,
    reportedBootId: state.reportedBootId,
    reportedSeq: state.reportedSeq,
  };
}

describe.each([sqliteTwoConnections, postgresTwoStores])('two ingest writers on one database: $name', (setup) => {
  let pair: Pair | null = null;
  let writers: [IngestWriter, IngestWriter];
  let enrolled = 0;

  beforeAll(async () => {
    if (setup.skip) return;
    pair = await setup.open();
    writers = [createWriter(pair.stores[0]), createWriter(pair.stores[1])];
    await Promise.all(writers.map((writer) => writer.start()));
  }, 30_000);

  afterAll(async () => {
    if (!pair) return;
    await Promise.all(writers.map((writer) => writer.stop()));
    await pair.close();
  });

  /** A fresh device, known to both writers. */
  const enroll = async (): Promise<string> => {
    if (!pair) throw new Error('no stores');
    const id = `cam-w${++enrolled}`;
    const result = await pair.stores[0].devices.enroll({ id, labels: {}, secretHash: 'x', now: T });
    if (!result.ok) throw new Error(result.error.message);
    for (const writer of writers) writer.addDevice(id, T);
    return id;
  };

  const stored = async (id: string) => {
    if (!pair) throw new Error('no stores');
    return pair.stores[0].devices.loadLiveState(id);
  };

  it.skipIf(setup.skip)(
    'keeps the newest state when each writer gets messages older than what the other stored',
    async () => {
      const [a, b] = writers;
      const id = await enroll();
      await offer(a, id, status(BOOT_1, 1, 1, 'birth'));
      // b has never seen the device's boot; a has never seen telemetry: seq 3 after 5 must not win.
      await offer(b, id, telemetry(BOOT_1, 5));
      await offer(a, id, telemetry(BOOT_1, 3));
      let row = await stored(id);
      expect(orderOf(row)).toMatchObject({ telemetryBootId: BOOT_1, telemetrySeq: 5, status: 'online' });
      expect(row?.telemetry).toMatchObject({ system: { temperatures: { cpuC: 5 } } });

      // A reconnect through b, then the will of the first connection arrives late at a.
      await offer(b, id, status(BOOT_1, 10, 2, 'birth'));
      await offer(a, id, status(BOOT_1, 0, 1, 'will'));
      expect(orderOf(await stored(id))).toMatchObject({ status: 'online', statusSession: 2, statusSeq: 10 });

      // A reboot through a; b still believes in the first boot and gets its outbox replay.
      await offer(a, id, status(BOOT_2, 1, 1, 'birth'));
      await offer(b, id, telemetry(BOOT_1, 50));
      await offer(b, id, reported(BOOT_1, 51));
      await offer(b, id, status(BOOT_1, 52, 3, 'birth'));
      row = await stored(id);
      expect(orderOf(row)).toEqual({
        status: 'online',
        statusBootId: BOOT_2,
        statusSession: 1,
        statusSeq: 1,
        bootIds: [BOOT_1, BOOT_2],
        telemetryBootId: BOOT_1,
        telemetrySeq: 5,
        reportedBootId: null,
        reportedSeq: null,
      });
      // b learnt the new boot from the row: the new boot's telemetry applies there.
      await offer(b, id, telemetry(BOOT_2, 2));
      await offer(a, id, reported(BOOT_2, 4));
      await offer(b, id, reported(BOOT_2, 3));
      row = await stored(id);
      expect(orderOf(row)).toMatchObject({
        telemetryBootId: BOOT_2,
        telemetrySeq: 2,
        reportedBootId: BOOT_2,
        reportedSeq: 4,
      });
      // Each writer's memory is what it last wrote or read under its commit.
      expect(orderOf(b.liveState(id))).toEqual(orderOf(row));
      expect(reconciled(a)).toBeGreaterThan(0);
      expect(reconciled(b)).toBeGreaterThan(0);
    },
  );

  it.skipIf(setup.skip)(
    "makes a boot's telemetry and reported stored before its birth the latest once the birth lands",
    async () => {
      const [a, b] = writers;
      const id = await enroll();
      await offer(a, id, status(BOOT_1, 1, 1, 'birth'));
      await offer(a, id, telemetry(BOOT_1, 2));
      // The second boot's birth is held elsewhere (a replica killed before acking it): b stores the
      // boot's later messages first, out of order, and none of them may become current (rule 2).
      for (const message of [telemetry(BOOT_2, 3), telemetry(BOOT_2, 7), reported(BOOT_2, 6)]) {
        await offer(b, id, message);
      }
      await offer(a, id, telemetry(BOOT_2, 5));
      await offer(a, id, reported(BOOT_2, 4));
      let row = await stored(id);
      expect(orderOf(row)).toMatchObject({
        bootIds: [BOOT_1],
        telemetryBootId: BOOT_1,
        telemetrySeq: 2,
        reportedBootId: null,
        reportedSeq: null,
      });
      expect(row?.telemetry).toMatchObject({ system: { temperatures: { cpuC: 2 } } });

      await offer(a, id, status(BOOT_2, 1, 1, 'birth'));
      row = await stored(id);
      expect(orderOf(row)).toEqual({
        status: 'online',
        statusBootId: BOOT_2,
        statusSession: 1,
        statusSeq: 1,
        bootIds: [BOOT_1, BOOT_2],
        telemetryBootId: BOOT_2,
        telemetrySeq: 7,
        reportedBootId: BOOT_2,
        reportedSeq: 6,
      });
      expect(row?.telemetry).toMatchObject({ system: { temperatures: { cpuC: 7 } } });
      expect((await pair?.stores[0].devices.get(id))?.reported).toMatchObject({ desiredVersion: 6 });
      // The writer that committed the birth knows what it stored.
      expect(orderOf(a.liveState(id))).toEqual(orderOf(row));

      // Later messages of the boot follow rule 4 on top: an older seq does not go back.
      await offer(b, id, telemetry(BOOT_2, 6));
      await offer(b, id, telemetry(BOOT_2, 9));
      expect(orderOf(await stored(id))).toMatchObject({ telemetryBootId: BOOT_2, telemetrySeq: 9 });
    },
  );

  it.skipIf(setup.skip)(
    "one writer: a boot's telemetry that arrived before its birth becomes the latest with the birth",
    async () => {
      const [a] = writers;
      const id = await enroll();
      await offer(a, id, status(BOOT_1, 1, 1, 'birth'));
      await offer(a, id, telemetry(BOOT_1, 2));
      await offer(a, id, telemetry(BOOT_2, 3));
      expect(orderOf(await stored(id))).toMatchObject({ telemetryBootId: BOOT_1, telemetrySeq: 2 });
      await offer(a, id, status(BOOT_2, 1, 1, 'birth'));
      const row = await stored(id);
      expect(orderOf(row)).toMatchObject({ bootIds: [BOOT_1, BOOT_2], telemetryBootId: BOOT_2, telemetrySeq: 3 });
      expect(row?.telemetry).toMatchObject({ system: { temperatures: { cpuC: 3 } } });
    },
  );

  it.skipIf(setup.skip)(
    'folds nothing again while one writer alone writes a device: its rows read back as written',
    async () => {
      const [a] = writers;
      const id = await enroll();
      const before = reconciled(a);
      await offer(a, id, status(BOOT_1, 1, 1, 'birth'));
      await offer(a, id, telemetry(BOOT_1, 2));
      await offer(a, id, reported(BOOT_1, 3));
      await offer(a, id, status(BOOT_1, 0, 1, 'will'));
      await offer(a, id, status(BOOT_1, 4, 2, 'birth'));
      expect(orderOf(await stored(id))).toMatchObject({
        status: 'online',
        statusSession: 2,
        telemetrySeq: 2,
        reportedSeq: 3,
      });
      expect(reconciled(a)).toBe(before);
    },
  );

  it.skipIf(setup.skip)(
    'stores the newest by (bootId, session, seq) for every device, whichever writer gets which message, in any order',
    async () => {
      const item = fc.record({
        device: fc.integer({ min: 0, max: 1 }),
        writer: fc.integer({ min: 0, max: 1 }),
        oldBoot: fc.boolean(),
        message: fc.oneof(
          fc.constant({ channel: 'telemetry' as const }),
          fc.constant({ channel: 'reported' as const }),
          fc.record({
            channel: fc.constant('status' as const),
            session: fc.integer({ min: 1, max: 3 }),
            kind: fc.constantFrom('birth' as const, 'shutdown' as const, 'will' as const),
          }),
        ),
      });
      await fc.assert(
        fc.asyncProperty(
          fc.array(item, { minLength: 1, maxLength: 16 }),
          fc.integer({ min: 0, max: 1 }),
          async (items, rebootWriter) => {
            const devices = [await enroll(), await enroll()];
            // Every device boots through writer 0, then reboots through either: one writer's memory
            // may still hold the first boot as current.
            for (const id of devices) await offer(writers[0], id, status(BOOT_1, 1, 1, 'birth'));
            for (const id of devices)
              await offer(writers[rebootWriter] as IngestWriter, id, status(BOOT_2, 1, 1, 'birth'));
            // All at once: the writers' batches commit concurrently; seqs are unique per device.
            const sent = items.map((entry, index) => {
              const bootId = entry.oldBoot ? BOOT_1 : BOOT_2;
              const seq = index + 2;
              const message: Message =
                entry.message.channel === 'status'
                  ? status(bootId, seq, entry.message.session, entry.message.kind)
                  : { channel: entry.message.channel, bootId, seq };
              return { id: devices[entry.device] as string, message, writer: writers[entry.writer] as IngestWriter };
            });
            await Promise.all(sent.map(({ writer, id, message }) => offer(writer, id, message)));

            for (const id of devices) {
              // The model: only the current boot (the second) changes state; per channel the greatest
              // seq; status by (session, seq) with a will last in its session.
              const current = sent.filter((s) => s.id === id && s.message.bootId === BOOT_2).map((s) => s.message);
              const maxSeq = (channel: 'telemetry' | 'reported') =>
                Math.max(0, ...current.filter((m) => m.channel === channel).map((m) => m.seq)) || null;
              let newest = { session: 1, seq: 1, state: 'online' };
              for (const m of current) {
                if (m.channel !== 'status') continue;
                const seq = m.kind === 'will' ? WILL_SEQ : m.seq;
                if (m.session > newest.session || (m.session === newest.session && seq > newest.seq)) {
                  newest = { session: m.session, seq, state: m.kind === 'birth' ? 'online' : 'offline' };
                }
              }
              const telemetrySeq = maxSeq('telemetry');
              const reportedSeq = maxSeq('reported');
              expect(orderOf(await stored(id))).toEqual({
                status: newest.state,
                statusBootId: BOOT_2,
                statusSession: newest.session,
                statusSeq: newest.seq,
                bootIds: [BOOT_1, BOOT_2],
                telemetryBootId: telemetrySeq === null ? null : BOOT_2,
                telemetrySeq,
                reportedBootId: reportedSeq === null ? null : BOOT_2,
                reportedSeq,
              });
            }
          },
        ),
        { numRuns: 25 },
      );
    },
    120_000,
  );
});
