import { and, asc, count, desc, eq, exists, gt, inArray, lt, or, type SQL, sql } from 'drizzle-orm';
import type { RolloutRepository } from '../repositories.ts';
import {
  HOLDING_STATES,
  toAssignmentRecord,
  toRolloutEventRecord,
  toRolloutRecord,
  UNCONVERGED_STATES,
} from '../rows.ts';
import { rolloutDevices, rolloutEvents, rollouts } from '../schema.ts';
import type { SqliteDb } from './database.ts';

export function createSqliteRolloutRepository(db: SqliteDb): RolloutRepository {
  return {
    async create(rollout, event) {
      db.transaction((tx) => {
        tx.insert(rollouts).values(rollout).run();
        tx.insert(rolloutEvents).values(event).run();
      });
    },

    async get(id) {
      const row = db.select().from(rollouts).where(eq(rollouts.id, id)).get();
      return row ? toRolloutRecord(row) : null;
    },

    async list(query) {
      const conditions: (SQL | undefined)[] = [];
      if (query.status !== undefined) conditions.push(eq(rollouts.status, query.status));
      if (query.modelId !== undefined) conditions.push(eq(rollouts.modelId, query.modelId));
      if (query.before) {
        const { createdAt, id } = query.before;
        conditions.push(
          or(lt(rollouts.createdAt, createdAt), and(eq(rollouts.createdAt, createdAt), lt(rollouts.id, id))),
        );
      }
      return db
        .select()
        .from(rollouts)
        .where(and(...conditions))
        .orderBy(desc(rollouts.createdAt), desc(rollouts.id))
        .limit(query.limit)
        .all()
        .map(toRolloutRecord);
    },

    async listWork() {
      const unconverged = db
        .select({ one: sql`1` })
        .from(rolloutDevices)
        .where(and(eq(rolloutDevices.rolloutId, rollouts.id), inArray(rolloutDevices.state, [...UNCONVERGED_STATES])));
      return db
        .select()
        .from(rollouts)
        .where(
          or(
            inArray(rollouts.status, ['pending', 'running', 'paused']),
            and(inArray(rollouts.status, ['rolled_back', 'aborted']), exists(unconverged)),
          ),
        )
        .orderBy(asc(rollouts.createdAt), asc(rollouts.id))
        .all()
        .map(toRolloutRecord);
    },

    async update(id, expectedVersion, patch, now, events = []) {
      return db.transaction((tx) => {
        const row = tx
          .update(rollouts)
          .set({ ...patch, version: expectedVersion + 1, updatedAt: now })
          .where(and(eq(rollouts.id, id), eq(rollouts.version, expectedVersion)))
          .returning()
          .get();
        if (!row) return null;
        if (events.length > 0)
          tx.insert(rolloutEvents)
            .values([...events])
            .run();
        return toRolloutRecord(row);
      });
    },

    async assignments(rolloutId) {
      return db
        .select()
        .from(rolloutDevices)
        .where(eq(rolloutDevices.rolloutId, rolloutId))
        .all()
        .map(toAssignmentRecord);
    },

    async listAssignments(query) {
      const conditions: SQL[] = [eq(rolloutDevices.rolloutId, query.rolloutId)];
      if (query.state !== undefined) conditions.push(eq(rolloutDevices.state, query.state));
      if (query.afterDeviceId !== undefined) conditions.push(gt(rolloutDevices.deviceId, query.afterDeviceId));
      return db
        .select()
        .from(rolloutDevices)
        .where(and(...conditions))
        .orderBy(asc(rolloutDevices.deviceId))
        .limit(query.limit)
        .all()
        .map(toAssignmentRecord);
    },

    async putAssignments(rows) {
      if (rows.length === 0) return;
      db.transaction((tx) => {
        for (const row of rows) {
          tx.insert(rolloutDevices)
            .values(row)
            .onConflictDoUpdate({
              target: [rolloutDevices.rolloutId, rolloutDevices.deviceId],
              set: {
                mode: row.mode,
                stageIndex: row.stageIndex,
                state: row.state,
                previous: row.previous,
                assignedAt: row.assignedAt,
                updatedAt: row.updatedAt,
                reason: row.reason,
              },
            })
            .run();
        }
      });
    },

    async setAssignmentStates(rolloutId, changes, now) {
      if (changes.length === 0) return;
      db.transaction((tx) => {
        for (const change of changes) {
          tx.update(rolloutDevices)
            .set({ state: change.state, reason: change.reason, updatedAt: now })
            .where(and(eq(rolloutDevices.rolloutId, rolloutId), eq(rolloutDevices.deviceId, change.deviceId)))
            .run();
        }
      });
    },

    async assignmentCounts(rolloutId) {
      const rows = db
        .select({ state: rolloutDevices.state, n: count() })
        .from(rolloutDevices)
        .where(eq(rolloutDevices.rolloutId, rolloutId))
        .groupBy(rolloutDevices.state)
        .all();
      return Object.fromEntries(rows.map((row) => [row.state, row.n]));
    },

    async appendEvents(events) {
      if (events.length > 0)
        db.insert(rolloutEvents)
          .values([...events])
          .run();
    },

    async listEvents(query) {
      const conditions: SQL[] = [eq(rolloutEvents.rolloutId, query.rolloutId)];
      if (query.type !== undefined) conditions.push(eq(rolloutEvents.type, query.type));
      if (query.afterId !== undefined) conditions.push(gt(rolloutEvents.id, query.afterId));
      return db
        .select()
        .from(rolloutEvents)
        .where(and(...conditions))
        .orderBy(asc(rolloutEvents.id))
        .limit(query.limit)
        .all()
        .map(toRolloutEventRecord);
    },

    async lastEvent(rolloutId, type) {
      const row = db
        .select()
        .from(rolloutEvents)
        .where(and(eq(rolloutEvents.rolloutId, rolloutId), eq(rolloutEvents.type, type)))
        .orderBy(desc(rolloutEvents.id))
        .limit(1)
        .get();
      return row ? toRolloutEventRecord(row) : null;
    },

    async assignedModelIds(deviceId) {
      const rows = db
        .selectDistinct({ modelId: rollouts.modelId })
        .from(rolloutDevices)
        .innerJoin(rollouts, eq(rollouts.id, rolloutDevices.rolloutId))
        .where(and(eq(rolloutDevices.deviceId, deviceId), inArray(rolloutDevices.state, [...HOLDING_STATES])))
        .all();
      return rows.map((row) => row.modelId);
    },
  };
}
