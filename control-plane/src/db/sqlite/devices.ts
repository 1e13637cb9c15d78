import { type Desired, fail, ok } from '@edgeloop/protocol';
import { and, asc, count, eq, gt, inArray, isNotNull, isNull, type SQL, sql } from 'drizzle-orm';
import { querySiteCounts } from '../device-sites.ts';
import type { DeviceDetailRecord, DeviceRepository, DeviceSnapshot, FleetCounts } from '../repositories.ts';
import { chunk, type DeviceRow, freshRow, toLiveState, toRecord } from '../rows.ts';
import { devices } from '../schema.ts';
import type { SqliteDb } from './database.ts';
import { sqliteDialect } from './sql-dialect.ts';

const active = isNull(devices.revokedAt);

export function createSqliteDeviceRepository(db: SqliteDb): DeviceRepository {
  const byId = (id: string) => and(eq(devices.id, id), active);

  const getRow = (id: string): DeviceRow | undefined => db.select().from(devices).where(byId(id)).get();

  return {
    async enroll({ id, labels, secretHash, now, authMethod, certFingerprint }) {
      return db.transaction((tx) => {
        const existing = tx.select({ revokedAt: devices.revokedAt }).from(devices).where(eq(devices.id, id)).get();
        if (existing && existing.revokedAt === null) return fail('conflict', `device ${id} is already enrolled`);
        const row = {
          ...freshRow(id, labels, secretHash, now),
          authMethod: authMethod ?? 'secret',
          certFingerprint: authMethod === 'cert' ? (certFingerprint ?? null) : null,
        };
        if (existing) {
          tx.update(devices).set(row).where(eq(devices.id, id)).run();
        } else {
          tx.insert(devices).values(row).run();
        }
        return ok(toRecord(tx.select().from(devices).where(eq(devices.id, id)).get()!));
      });
    },

    async get(id) {
      const row = getRow(id);
      if (!row) return null;
      const detail: DeviceDetailRecord = {
        ...toRecord(row),
        telemetry: row.telemetry ?? null,
        telemetryAt: row.telemetryAt,
        reported: row.reported ?? null,
        reportedAt: row.reportedAt,
        desired: (row.desired as Desired | null) ?? null,
      };
      return detail;
    },

    async list(query) {
      const conditions: SQL[] = [active];
      if (query.status) conditions.push(eq(devices.status, query.status));
      if (query.health) conditions.push(eq(devices.health, query.health));
      for (const [key, value] of query.labels ?? []) {
        // Label keys match LABEL_KEY_PATTERN (no quotes), and both parts are bound parameters.
        conditions.push(sql`json_extract(${devices.labels}, ${`$."${key}"`}) = ${value}`);
      }
      if (query.model) {
        conditions.push(sql`json_extract(${devices.reported}, '$.model.active.name') = ${query.model.name}`);
        if (query.model.version !== undefined) {
          conditions.push(sql`json_extract(${devices.reported}, '$.model.active.version') = ${query.model.version}`);
        }
      }
      if (query.afterId !== undefined) conditions.push(gt(devices.id, query.afterId));
      const rows = db
        .select()
        .from(devices)
        .where(and(...conditions))
        .orderBy(asc(devices.id))
        .limit(query.limit)
        .all();
      return rows.map(toRecord);
    },

    async patchLabels(id, patch) {
      return db.transaction((tx) => {
        const row = tx.select().from(devices).where(byId(id)).get();
        if (!row) return null;
        const labels: Record<string, string> = { ...row.labels };
        for (const [key, value] of Object.entries(patch)) {
          if (value === null) delete labels[key];
          else labels[key] = value;
        }
        tx.update(devices).set({ labels }).where(eq(devices.id, id)).run();
        return toRecord({ ...row, labels });
      });
    },

    async revoke(id, now) {
      const result = db
        .update(devices)
        .set({ revokedAt: now, status: 'offline', statusChangedAt: now, health: 'offline', healthReasons: ['revoked'] })
        .where(byId(id))
        .run();
      return result.changes > 0;
    },

    async secretHash(id) {
      const row = db.select({ secretHash: devices.secretHash }).from(devices).where(byId(id)).get();
      return row?.secretHash ?? null;
    },

    async certFingerprint(id) {
      const row = db
        .select({ fingerprint: devices.certFingerprint })
        .from(devices)
        .where(and(byId(id), eq(devices.authMethod, 'cert')))
        .get();
      return row?.fingerprint ?? null;
    },

    async updateDesired(id, update) {
      return db.transaction((tx) => {
        const row = tx.select({ desired: devices.desired }).from(devices).where(byId(id)).get();
        if (!row) return null;
        const next = update((row.desired as Desired | null) ?? null);
        tx.update(devices).set({ desired: next, desiredVersion: next.version }).where(eq(devices.id, id)).run();
        return next;
      });
    },

    async listDesired() {
      const rows = db
        .select({ id: devices.id, desired: devices.desired })
        .from(devices)
        .where(and(active, isNotNull(devices.desired)))
        .all();
      return rows.map((row) => ({ id: row.id, desired: row.desired as Desired }));
    },

    async counts() {
      const byStatus: Record<string, number> = {};
      const byHealth: Record<string, number> = {};
      const byHealthReason: Record<string, number> = {};
      let total = 0;
      const statusRows = db
        .select({ status: devices.status, health: devices.health, n: count() })
        .from(devices)
        .where(active)
        .groupBy(devices.status, devices.health)
        .all();
      for (const row of statusRows) {
        total += row.n;
        byStatus[row.status] = (byStatus[row.status] ?? 0) + row.n;
        byHealth[row.health] = (byHealth[row.health] ?? 0) + row.n;
      }
      const reasonRows = db.all<{ reason: string; n: number }>(
        sql`SELECT j.value AS reason, count(*) AS n FROM ${devices}, json_each(${devices.healthReasons}) AS j
            WHERE ${devices.revokedAt} IS NULL GROUP BY j.value`,
      );
      for (const row of reasonRows) byHealthReason[row.reason] = row.n;
      const counts: FleetCounts = { total, byStatus, byHealth, byHealthReason };
      return counts;
    },

    async sites(query) {
      return querySiteCounts(sqliteDialect(db), sql``, query);
    },

    async loadLiveStates() {
      return db.select().from(devices).where(active).all().map(toLiveState);
    },

    async loadLiveState(id) {
      const row = getRow(id);
      return row ? toLiveState(row) : null;
    },

    async snapshots(query) {
      const columns = {
        id: devices.id,
        labels: devices.labels,
        status: devices.status,
        reported: devices.reported,
        desired: devices.desired,
      };
      let rows: Parameters<typeof toSnapshot>[0][];
      if ('ids' in query) {
        rows = chunk(query.ids).flatMap((ids) =>
          db
            .select(columns)
            .from(devices)
            .where(and(active, inArray(devices.id, ids)))
            .all(),
        );
      } else {
        const conditions: SQL[] = [active];
        for (const [key, value] of query.labels) {
          conditions.push(sql`json_extract(${devices.labels}, ${`$."${key}"`}) = ${value}`);
        }
        rows = db
          .select(columns)
          .from(devices)
          .where(and(...conditions))
          .orderBy(asc(devices.id))
          .all();
      }
      return rows.map(toSnapshot);
    },
  };
}

function toSnapshot(row: {
  id: unknown;
  labels: unknown;
  status: unknown;
  reported: unknown;
  desired: unknown;
}): DeviceSnapshot {
  return {
    id: row.id as string,
    labels: row.labels as Record<string, string>,
    status: row.status as DeviceSnapshot['status'],
    reported: row.reported ?? null,
    desired: (row.desired as Desired | null) ?? null,
  };
}
