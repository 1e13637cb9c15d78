import { type Desired, fail, ok } from '@edgeloop/protocol';
import { and, asc, count, eq, inArray, isNotNull, isNull, type SQL, sql } from 'drizzle-orm';
import { querySiteCounts } from '../device-sites.ts';
import type { DeviceDetailRecord, DeviceRepository, DeviceSnapshot, FleetCounts } from '../repositories.ts';
import { chunk, freshRow, toLiveState, toRecord } from '../rows.ts';
import type { PostgresDb } from './database.ts';
import { devices } from './schema.ts';
import { postgresDialect } from './sql-dialect.ts';

const active = isNull(devices.revokedAt);

export function createPostgresDeviceRepository(db: PostgresDb): DeviceRepository {
  const byId = (id: string) => and(eq(devices.id, id), active);

  const getRow = async (id: string) => (await db.select().from(devices).where(byId(id)).limit(1))[0];

  return {
    async enroll({ id, labels, secretHash, now, authMethod, certFingerprint }) {
      return db.transaction(async (tx) => {
        const [existing] = await tx
          .select({ revokedAt: devices.revokedAt })
          .from(devices)
          .where(eq(devices.id, id))
          .for('update');
        if (existing && existing.revokedAt === null) return fail('conflict', `device ${id} is already enrolled`);
        const row = {
          ...freshRow(id, labels, secretHash, now),
          authMethod: authMethod ?? 'secret',
          certFingerprint: authMethod === 'cert' ? (certFingerprint ?? null) : null,
        };
        const [stored] = existing
          ? await tx.update(devices).set(row).where(eq(devices.id, id)).returning()
          : await tx.insert(devices).values(row).onConflictDoNothing().returning();
        if (!stored) return fail('conflict', `device ${id} is already enrolled`);
        return ok(toRecord(stored));
      });
    },

    async get(id) {
      const row = await getRow(id);
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
      for (const [key, value] of query.labels ?? []) conditions.push(sql`${devices.labels} ->> ${key} = ${value}`);
      if (query.model) {
        conditions.push(sql`${devices.reported} #>> '{model,active,name}' = ${query.model.name}`);
        if (query.model.version !== undefined) {
          conditions.push(sql`${devices.reported} #>> '{model,active,version}' = ${query.model.version}`);
        }
      }
      if (query.afterId !== undefined) conditions.push(sql`${devices.id} COLLATE "C" > ${query.afterId}`);
      const rows = await db
        .select()
        .from(devices)
        .where(and(...conditions))
        // Byte order, as SQLite compares: ids are ASCII, keyset paging must agree across dialects.
        .orderBy(asc(sql`${devices.id} COLLATE "C"`))
        .limit(query.limit);
      return rows.map(toRecord);
    },

    async patchLabels(id, patch) {
      return db.transaction(async (tx) => {
        const [row] = await tx.select().from(devices).where(byId(id)).for('update');
        if (!row) return null;
        const labels: Record<string, string> = { ...row.labels };
        for (const [key, value] of Object.entries(patch)) {
          if (value === null) delete labels[key];
          else labels[key] = value;
        }
        await tx.update(devices).set({ labels }).where(eq(devices.id, id));
        return toRecord({ ...row, labels });
      });
    },

    async revoke(id, now) {
      const revoked = await db
        .update(devices)
        .set({ revokedAt: now, status: 'offline', statusChangedAt: now, health: 'offline', healthReasons: ['revoked'] })
        .where(byId(id))
        .returning({ id: devices.id });
      return revoked.length > 0;
    },

    async secretHash(id) {
      const [row] = await db.select({ secretHash: devices.secretHash }).from(devices).where(byId(id));
      return row?.secretHash ?? null;
    },

    async certFingerprint(id) {
      const [row] = await db
        .select({ fingerprint: devices.certFingerprint })
        .from(devices)
        .where(and(byId(id), eq(devices.authMethod, 'cert')));
      return row?.fingerprint ?? null;
    },

    async updateDesired(id, update) {
      return db.transaction(async (tx) => {
        const [row] = await tx.select({ desired: devices.desired }).from(devices).where(byId(id)).for('update');
        if (!row) return null;
        const next = update((row.desired as Desired | null) ?? null);
        await tx.update(devices).set({ desired: next, desiredVersion: next.version }).where(eq(devices.id, id));
        return next;
      });
    },

    async listDesired() {
      const rows = await db
        .select({ id: devices.id, desired: devices.desired })
        .from(devices)
        .where(and(active, isNotNull(devices.desired)));
      return rows.map((row) => ({ id: row.id, desired: row.desired as Desired }));
    },

    async counts() {
      const byStatus: Record<string, number> = {};
      const byHealth: Record<string, number> = {};
      const byHealthReason: Record<string, number> = {};
      let total = 0;
      const statusRows = await db
        .select({ status: devices.status, health: devices.health, n: count() })
        .from(devices)
        .where(active)
        .groupBy(devices.status, devices.health);
      for (const row of statusRows) {
        total += row.n;
        byStatus[row.status] = (byStatus[row.status] ?? 0) + row.n;
        byHealth[row.health] = (byHealth[row.health] ?? 0) + row.n;
      }
      const reasons = await db.execute<{ reason: string; n: string }>(
        sql`SELECT reason, count(*) AS n FROM ${devices}, jsonb_array_elements_text(${devices.healthReasons}) AS reason
            WHERE ${devices.revokedAt} IS NULL GROUP BY reason`,
      );
      for (const row of reasons.rows) byHealthReason[row.reason] = Number(row.n);
      const counts: FleetCounts = { total, byStatus, byHealth, byHealthReason };
      return counts;
    },

    async sites(query) {
      return querySiteCounts(postgresDialect(db), sql` COLLATE "C"`, query);
    },

    async loadLiveStates() {
      return (await db.select().from(devices).where(active)).map(toLiveState);
    },

    async loadLiveState(id) {
      const row = await getRow(id);
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
      const rows: DeviceSnapshot[] = [];
      if ('ids' in query) {
        for (const ids of chunk(query.ids)) {
          const found = await db
            .select(columns)
            .from(devices)
            .where(and(active, inArray(devices.id, ids)));
          rows.push(...found.map(toSnapshot));
        }
        return rows;
      }
      const conditions: SQL[] = [active];
      for (const [key, value] of query.labels) conditions.push(sql`${devices.labels} ->> ${key} = ${value}`);
      const found = await db
        .select(columns)
        .from(devices)
        .where(and(...conditions))
        .orderBy(asc(sql`${devices.id} COLLATE "C"`));
      return found.map(toSnapshot);
    },
  };
}

function toSnapshot(row: {
  id: string;
  labels: Record<string, string>;
  status: string;
  reported: unknown;
  desired: unknown;
}): DeviceSnapshot {
  return {
    id: row.id,
    labels: row.labels,
    status: row.status as DeviceSnapshot['status'],
    reported: row.reported ?? null,
    desired: (row.desired as Desired | null) ?? null,
  };
}
