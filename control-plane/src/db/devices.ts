import { type Desired, fail, ok } from '@edgeloop/protocol';
import { and, eq, inArray, isNotNull, isNull, type SQL, sql } from 'drizzle-orm';
import { querySiteCounts } from './device-sites.ts';
import type { DeviceDetailRecord, DeviceRepository, DeviceSnapshot, FleetCounts } from './repositories.ts';
import { chunk, type DeviceRow, freshRow, toLiveState, toRecord } from './rows.ts';
import { changesOf, rowsOf, type SqlDialect } from './sql-dialect.ts';
import { insertRows, rowReader, setColumns } from './sql-row.ts';

/*
 * The device aggregate, written once for both dialects over SqlDialect: enrollment, labels,
 * credentials, desired state, the fleet counts and the snapshots the rollout engine reads. The live
 * state columns are written by the ingest writer (sqlite/ingest.ts, postgres/ingest.ts); this reads
 * them back.
 */

/** Labels after a patch: a null value removes its key, any other sets it. */
export function mergeLabels(
  labels: Readonly<Record<string, string>>,
  patch: Readonly<Record<string, string | null>>,
): Record<string, string> {
  const merged: Record<string, string> = { ...labels };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete merged[key];
    else merged[key] = value;
  }
  return merged;
}

/** Status rows (status, health, n) and health reason rows (reason, n) folded into the fleet counts. */
export function foldCounts(
  statusRows: readonly { readonly status: string; readonly health: string; readonly n: number }[],
  reasonRows: readonly { readonly reason: string; readonly n: number }[],
): FleetCounts {
  const byStatus: Record<string, number> = {};
  const byHealth: Record<string, number> = {};
  const byHealthReason: Record<string, number> = {};
  let total = 0;
  for (const row of statusRows) {
    total += row.n;
    byStatus[row.status] = (byStatus[row.status] ?? 0) + row.n;
    byHealth[row.health] = (byHealth[row.health] ?? 0) + row.n;
  }
  for (const row of reasonRows) byHealthReason[row.reason] = row.n;
  return { total, byStatus, byHealth, byHealthReason };
}

/** The columns a snapshot reads. */
const SNAPSHOT = ['id', 'labels', 'status', 'reported', 'desired'] as const;

function toSnapshot(row: Pick<DeviceRow, (typeof SNAPSHOT)[number]>): DeviceSnapshot {
  return {
    id: row.id,
    labels: row.labels,
    status: row.status as DeviceSnapshot['status'],
    reported: row.reported ?? null,
    desired: (row.desired as Desired | null) ?? null,
  };
}

export function createDeviceRepository(dialect: SqlDialect): DeviceRepository {
  const { devices } = dialect.tables;
  const active = isNull(devices.revokedAt);
  const byId = (id: string) => and(eq(devices.id, id), active)!;
  const toRow = rowReader(devices);
  const idOrder = dialect.byteOrder(devices.id);

  /** Rows of active devices; `columns` names the ones to read (the others are absent from the rows). */
  const select = async (
    where: SQL,
    tail: SQL = sql``,
    columns?: readonly (keyof DeviceRow)[],
  ): Promise<DeviceRow[]> => {
    const list = columns
      ? sql.join(
          columns.map((key) => devices[key]),
          sql`, `,
        )
      : sql`*`;
    return (await dialect.all(sql`SELECT ${list} FROM ${devices} WHERE ${where}${tail}`)).map(toRow);
  };
  const getRow = async (id: string): Promise<DeviceRow | undefined> => (await select(byId(id)))[0];
  const labelConditions = (labels: readonly (readonly [string, string])[]) =>
    labels.map(([key, value]) => sql`${dialect.jsonText(devices.labels, key)} = ${value}`);

  return {
    async enroll({ id, labels, secretHash, now, authMethod, certFingerprint }) {
      const row = {
        ...freshRow(id, labels, secretHash, now),
        authMethod: authMethod ?? 'secret',
        certFingerprint: authMethod === 'cert' ? (certFingerprint ?? null) : null,
      };
      return dialect.transaction(function* () {
        const [existing] = yield* rowsOf(sql`SELECT * FROM ${devices} WHERE ${eq(devices.id, id)}${dialect.forUpdate}`);
        if (existing && toRow(existing).revokedAt === null) return fail('conflict', `device ${id} is already enrolled`);
        // Two first enrollments of one id at once: the one whose insert loses finds nothing inserted.
        const [stored] = existing
          ? yield* rowsOf(
              sql`UPDATE ${devices} SET ${setColumns(devices, row)} WHERE ${eq(devices.id, id)} RETURNING *`,
            )
          : yield* rowsOf(sql`${insertRows(devices, [row])} ON CONFLICT (id) DO NOTHING RETURNING *`);
        if (!stored) return fail('conflict', `device ${id} is already enrolled`);
        return ok(toRecord(toRow(stored)));
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
      const conditions: SQL[] = [active, ...labelConditions(query.labels ?? [])];
      if (query.status) conditions.push(eq(devices.status, query.status));
      if (query.health) conditions.push(eq(devices.health, query.health));
      if (query.model) {
        const model = (key: string) => dialect.jsonText(devices.reported, 'model', 'active', key);
        conditions.push(sql`${model('name')} = ${query.model.name}`);
        if (query.model.version !== undefined) conditions.push(sql`${model('version')} = ${query.model.version}`);
      }
      if (query.afterId !== undefined) conditions.push(sql`${idOrder} > ${query.afterId}`);
      const rows = await select(and(...conditions)!, sql` ORDER BY ${idOrder} ASC LIMIT ${query.limit}`);
      return rows.map(toRecord);
    },

    async patchLabels(id, patch) {
      return dialect.transaction(function* () {
        const [found] = yield* rowsOf(sql`SELECT * FROM ${devices} WHERE ${byId(id)}${dialect.forUpdate}`);
        if (!found) return null;
        const row = toRow(found);
        const labels = mergeLabels(row.labels, patch);
        yield* changesOf(sql`UPDATE ${devices} SET ${setColumns(devices, { labels })} WHERE ${eq(devices.id, id)}`);
        return toRecord({ ...row, labels });
      });
    },

    async revoke(id, now) {
      const revoked = { revokedAt: now, status: 'offline', statusChangedAt: now, health: 'offline' };
      const changed = await dialect.run(
        sql`UPDATE ${devices} SET ${setColumns(devices, { ...revoked, healthReasons: ['revoked'] })} WHERE ${byId(id)}`,
      );
      return changed > 0;
    },

    async secretHash(id) {
      const [row] = await select(byId(id), sql``, ['secretHash']);
      return row?.secretHash ?? null;
    },

    async certFingerprint(id) {
      const [row] = await select(and(byId(id), eq(devices.authMethod, 'cert'))!, sql``, ['certFingerprint']);
      return row?.certFingerprint ?? null;
    },

    async updateDesired(id, update) {
      return dialect.transaction(function* () {
        const [found] = yield* rowsOf(sql`SELECT * FROM ${devices} WHERE ${byId(id)}${dialect.forUpdate}`);
        if (!found) return null;
        const next = update((toRow(found).desired as Desired | null) ?? null);
        yield* changesOf(
          sql`UPDATE ${devices} SET ${setColumns(devices, { desired: next, desiredVersion: next.version })}
              WHERE ${eq(devices.id, id)}`,
        );
        return next;
      });
    },

    async listDesired() {
      const rows = await select(and(active, isNotNull(devices.desired))!, sql``, ['id', 'desired']);
      return rows.map((row) => ({ id: row.id, desired: row.desired as Desired }));
    },

    async counts() {
      const statusRows = await dialect.all(
        sql`SELECT ${devices.status} AS status, ${devices.health} AS health, count(*) AS n FROM ${devices}
            WHERE ${active} GROUP BY ${devices.status}, ${devices.health}`,
      );
      const reasonRows = await dialect.all(
        sql`SELECT j.value AS reason, count(*) AS n FROM ${devices}, ${dialect.jsonElements(devices.healthReasons, 'j')}
            WHERE ${active} GROUP BY j.value`,
      );
      return foldCounts(
        statusRows.map((row) => ({ status: String(row.status), health: String(row.health), n: Number(row.n) })),
        reasonRows.map((row) => ({ reason: String(row.reason), n: Number(row.n) })),
      );
    },

    async sites(query) {
      return querySiteCounts(dialect, query);
    },

    async loadLiveStates() {
      return (await select(active)).map(toLiveState);
    },

    async loadLiveState(id) {
      const row = await getRow(id);
      return row ? toLiveState(row) : null;
    },

    async snapshots(query) {
      if ('ids' in query) {
        const rows: DeviceSnapshot[] = [];
        for (const ids of chunk(query.ids)) {
          rows.push(...(await select(and(active, inArray(devices.id, ids))!, sql``, SNAPSHOT)).map(toSnapshot));
        }
        return rows;
      }
      const where = and(active, ...labelConditions(query.labels))!;
      const rows = await select(where, sql` ORDER BY ${idOrder} ASC`, SNAPSHOT);
      return rows.map(toSnapshot);
    },
  };
}
