import { and, eq, inArray, lt, or, type SQL, sql } from 'drizzle-orm';
import type { RolloutRepository } from './repositories.ts';
import {
  chunk,
  HOLDING_STATES,
  toAssignmentRecord,
  toRolloutEventRecord,
  toRolloutRecord,
  UNCONVERGED_STATES,
} from './rows.ts';
import { changesOf, rowsOf, type SqlDialect } from './sql-dialect.ts';
import { insertRows, rowReader, setColumns, setExcluded } from './sql-row.ts';

/*
 * The rollout aggregate, written once for both dialects over SqlDialect: rollouts (optimistic
 * versions), their per-device assignments and their event log. Ids page in byte order
 * (SqlDialect.byteOrder), so a cursor means the same row in both dialects.
 */

/** Assignment rows per upsert statement: 9 parameters each stays under every dialect's limit. */
const ASSIGNMENT_CHUNK = 500;

export function createRolloutRepository(dialect: SqlDialect): RolloutRepository {
  const { rollouts, rolloutDevices, rolloutEvents } = dialect.tables;
  const readRollout = rowReader(rollouts);
  const readAssignment = rowReader(rolloutDevices);
  const readEvent = rowReader(rolloutEvents);
  const rolloutOf = (row: Record<string, unknown>) => toRolloutRecord(readRollout(row));
  const assignmentOf = (row: Record<string, unknown>) => toAssignmentRecord(readAssignment(row));
  const eventOf = (row: Record<string, unknown>) => toRolloutEventRecord(readEvent(row));
  const where = (conditions: readonly (SQL | undefined)[]) => and(sql`1 = 1`, ...conditions)!;

  return {
    async create(rollout, event) {
      await dialect.batch([insertRows(rollouts, [rollout]), insertRows(rolloutEvents, [event])]);
    },

    async get(id) {
      const [row] = await dialect.all(sql`SELECT * FROM ${rollouts} WHERE ${eq(rollouts.id, id)}`);
      return row ? rolloutOf(row) : null;
    },

    async list(query) {
      const id = dialect.byteOrder(rollouts.id);
      const conditions: (SQL | undefined)[] = [];
      if (query.status !== undefined) conditions.push(eq(rollouts.status, query.status));
      if (query.modelId !== undefined) conditions.push(eq(rollouts.modelId, query.modelId));
      if (query.before) {
        const before = query.before;
        conditions.push(
          or(
            lt(rollouts.createdAt, before.createdAt),
            and(eq(rollouts.createdAt, before.createdAt), sql`${id} < ${before.id}`),
          ),
        );
      }
      const rows = await dialect.all(
        sql`SELECT * FROM ${rollouts} WHERE ${where(conditions)}
            ORDER BY ${rollouts.createdAt} DESC, ${id} DESC LIMIT ${query.limit}`,
      );
      return rows.map(rolloutOf);
    },

    async listWork() {
      const unconverged = sql`SELECT 1 FROM ${rolloutDevices}
        WHERE ${and(eq(rolloutDevices.rolloutId, rollouts.id), inArray(rolloutDevices.state, [...UNCONVERGED_STATES]))}`;
      const rows = await dialect.all(
        sql`SELECT * FROM ${rollouts}
            WHERE ${or(
              inArray(rollouts.status, ['pending', 'running', 'paused']),
              and(inArray(rollouts.status, ['rolled_back', 'aborted']), sql`EXISTS (${unconverged})`),
            )}
            ORDER BY ${rollouts.createdAt} ASC, ${rollouts.id} ASC`,
      );
      return rows.map(rolloutOf);
    },

    async update(id, expectedVersion, patch, now, events = []) {
      const set = setColumns(rollouts, { ...patch, version: expectedVersion + 1, updatedAt: now });
      return dialect.transaction(function* () {
        const [row] = yield* rowsOf(
          sql`UPDATE ${rollouts} SET ${set}
              WHERE ${and(eq(rollouts.id, id), eq(rollouts.version, expectedVersion))} RETURNING *`,
        );
        if (!row) return null;
        if (events.length > 0) yield* changesOf(insertRows(rolloutEvents, events));
        return rolloutOf(row);
      });
    },

    async assignments(rolloutId) {
      const rows = await dialect.all(
        sql`SELECT * FROM ${rolloutDevices} WHERE ${eq(rolloutDevices.rolloutId, rolloutId)}`,
      );
      return rows.map(assignmentOf);
    },

    async listAssignments(query) {
      const deviceId = dialect.byteOrder(rolloutDevices.deviceId);
      const conditions: SQL[] = [eq(rolloutDevices.rolloutId, query.rolloutId)];
      if (query.state !== undefined) conditions.push(eq(rolloutDevices.state, query.state));
      if (query.afterDeviceId !== undefined) conditions.push(sql`${deviceId} > ${query.afterDeviceId}`);
      const rows = await dialect.all(
        sql`SELECT * FROM ${rolloutDevices} WHERE ${where(conditions)} ORDER BY ${deviceId} ASC LIMIT ${query.limit}`,
      );
      return rows.map(assignmentOf);
    },

    async putAssignments(rows) {
      if (rows.length === 0) return;
      const replace = setExcluded(rolloutDevices, [
        'mode',
        'stageIndex',
        'state',
        'previous',
        'assignedAt',
        'updatedAt',
        'reason',
      ]);
      await dialect.batch(
        chunk(rows, ASSIGNMENT_CHUNK).map(
          (part) =>
            sql`${insertRows(rolloutDevices, part)} ON CONFLICT (rollout_id, device_id) DO UPDATE SET ${replace}`,
        ),
      );
    },

    async setAssignmentStates(rolloutId, changes, now) {
      if (changes.length === 0) return;
      await dialect.batch(
        changes.map(
          (change) =>
            sql`UPDATE ${rolloutDevices} SET ${setColumns(rolloutDevices, { state: change.state, reason: change.reason, updatedAt: now })}
                WHERE ${and(eq(rolloutDevices.rolloutId, rolloutId), eq(rolloutDevices.deviceId, change.deviceId))}`,
        ),
      );
    },

    async assignmentCounts(rolloutId) {
      const rows = await dialect.all(
        sql`SELECT ${rolloutDevices.state} AS state, count(*) AS n FROM ${rolloutDevices}
            WHERE ${eq(rolloutDevices.rolloutId, rolloutId)} GROUP BY ${rolloutDevices.state}`,
      );
      return Object.fromEntries(rows.map((row) => [String(row.state), Number(row.n)]));
    },

    async appendEvents(events) {
      if (events.length > 0) await dialect.run(insertRows(rolloutEvents, events));
    },

    async listEvents(query) {
      const conditions: SQL[] = [eq(rolloutEvents.rolloutId, query.rolloutId)];
      if (query.type !== undefined) conditions.push(eq(rolloutEvents.type, query.type));
      if (query.afterId !== undefined) conditions.push(sql`${rolloutEvents.id} > ${query.afterId}`);
      const rows = await dialect.all(
        sql`SELECT * FROM ${rolloutEvents} WHERE ${where(conditions)} ORDER BY ${rolloutEvents.id} ASC LIMIT ${query.limit}`,
      );
      return rows.map(eventOf);
    },

    async lastEvent(rolloutId, type) {
      const [row] = await dialect.all(
        sql`SELECT * FROM ${rolloutEvents}
            WHERE ${and(eq(rolloutEvents.rolloutId, rolloutId), eq(rolloutEvents.type, type))}
            ORDER BY ${rolloutEvents.id} DESC LIMIT 1`,
      );
      return row ? eventOf(row) : null;
    },

    async assignedModelIds(deviceId) {
      const rows = await dialect.all(
        sql`SELECT DISTINCT ${rollouts.modelId} AS model_id FROM ${rolloutDevices}
            INNER JOIN ${rollouts} ON ${eq(rollouts.id, rolloutDevices.rolloutId)}
            WHERE ${and(eq(rolloutDevices.deviceId, deviceId), inArray(rolloutDevices.state, [...HOLDING_STATES]))}`,
      );
      return rows.map((row) => String(row.model_id));
    },
  };
}
