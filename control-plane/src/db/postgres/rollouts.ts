import { and, asc, count, desc, eq, exists, gt, inArray, lt, or, type SQL, sql } from 'drizzle-orm';
import type { RolloutRepository } from '../repositories.ts';
import {
  HOLDING_STATES,
  toAssignmentRecord,
  toRolloutEventRecord,
  toRolloutRecord,
  UNCONVERGED_STATES,
} from '../rows.ts';
import type { PostgresDb } from './database.ts';
import { rolloutDevices, rolloutEvents, rollouts } from './schema.ts';

export function createPostgresRolloutRepository(db: PostgresDb): RolloutRepository {
  return {
    async create(rollout, event) {
      await db.transaction(async (tx) => {
        await tx.insert(rollouts).values(rollout);
        await tx.insert(rolloutEvents).values(event);
      });
    },

    async get(id) {
      const [row] = await db.select().from(rollouts).where(eq(rollouts.id, id));
      return row ? toRolloutRecord(row) : null;
    },

    async list(query) {
      const conditions: (SQL | undefined)[] = [];
      if (query.status !== undefined) conditions.push(eq(rollouts.status, query.status));
      if (query.modelId !== undefined) conditions.push(eq(rollouts.modelId, query.modelId));
      if (query.before) {
        const { createdAt, id } = query.before;
        conditions.push(
          or(
            lt(rollouts.createdAt, createdAt),
            and(eq(rollouts.createdAt, createdAt), sql`${rollouts.id} COLLATE "C" < ${id}`),
          ),
        );
      }
      const rows = await db
        .select()
        .from(rollouts)
        .where(and(...conditions))
        .orderBy(desc(rollouts.createdAt), desc(sql`${rollouts.id} COLLATE "C"`))
        .limit(query.limit);
      return rows.map(toRolloutRecord);
    },

    async listWork() {
      const unconverged = db
        .select({ one: sql`1` })
        .from(rolloutDevices)
        .where(and(eq(rolloutDevices.rolloutId, rollouts.id), inArray(rolloutDevices.state, [...UNCONVERGED_STATES])));
      const rows = await db
        .select()
        .from(rollouts)
        .where(
          or(
            inArray(rollouts.status, ['pending', 'running', 'paused']),
            and(inArray(rollouts.status, ['rolled_back', 'aborted']), exists(unconverged)),
          ),
        )
        .orderBy(asc(rollouts.createdAt), asc(rollouts.id));
      return rows.map(toRolloutRecord);
    },

    async update(id, expectedVersion, patch, now, events = []) {
      return db.transaction(async (tx) => {
        const [row] = await tx
          .update(rollouts)
          .set({ ...patch, version: expectedVersion + 1, updatedAt: now })
          .where(and(eq(rollouts.id, id), eq(rollouts.version, expectedVersion)))
          .returning();
        if (!row) return null;
        if (events.length > 0) await tx.insert(rolloutEvents).values([...events]);
        return toRolloutRecord(row);
      });
    },

    async assignments(rolloutId) {
      const rows = await db.select().from(rolloutDevices).where(eq(rolloutDevices.rolloutId, rolloutId));
      return rows.map(toAssignmentRecord);
    },

    async listAssignments(query) {
      const conditions: SQL[] = [eq(rolloutDevices.rolloutId, query.rolloutId)];
      if (query.state !== undefined) conditions.push(eq(rolloutDevices.state, query.state));
      if (query.afterDeviceId !== undefined) {
        conditions.push(sql`${rolloutDevices.deviceId} COLLATE "C" > ${query.afterDeviceId}`);
      }
      const rows = await db
        .select()
        .from(rolloutDevices)
        .where(and(...conditions))
        .orderBy(asc(sql`${rolloutDevices.deviceId} COLLATE "C"`))
        .limit(query.limit);
      return rows.map(toAssignmentRecord);
    },

    async putAssignments(rows) {
      if (rows.length === 0) return;
      await db
        .insert(rolloutDevices)
        .values([...rows])
        .onConflictDoUpdate({
          target: [rolloutDevices.rolloutId, rolloutDevices.deviceId],
          set: {
            mode: sql`excluded.mode`,
            stageIndex: sql`excluded.stage_index`,
            state: sql`excluded.state`,
            previous: sql`excluded.previous`,
            assignedAt: sql`excluded.assigned_at`,
            updatedAt: sql`excluded.updated_at`,
            reason: sql`excluded.reason`,
          },
        });
    },

    async setAssignmentStates(rolloutId, changes, now) {
      if (changes.length === 0) return;
      await db.transaction(async (tx) => {
        for (const change of changes) {
          await tx
            .update(rolloutDevices)
            .set({ state: change.state, reason: change.reason, updatedAt: now })
            .where(and(eq(rolloutDevices.rolloutId, rolloutId), eq(rolloutDevices.deviceId, change.deviceId)));
        }
      });
    },

    async assignmentCounts(rolloutId) {
      const rows = await db
        .select({ state: rolloutDevices.state, n: count() })
        .from(rolloutDevices)
        .where(eq(rolloutDevices.rolloutId, rolloutId))
        .groupBy(rolloutDevices.state);
      return Object.fromEntries(rows.map((row) => [row.state, row.n]));
    },

    async appendEvents(events) {
      if (events.length > 0) await db.insert(rolloutEvents).values([...events]);
    },

    async listEvents(query) {
      const conditions: SQL[] = [eq(rolloutEvents.rolloutId, query.rolloutId)];
      if (query.type !== undefined) conditions.push(eq(rolloutEvents.type, query.type));
      if (query.afterId !== undefined) conditions.push(gt(rolloutEvents.id, query.afterId));
      const rows = await db
        .select()
        .from(rolloutEvents)
        .where(and(...conditions))
        .orderBy(asc(rolloutEvents.id))
        .limit(query.limit);
      return rows.map(toRolloutEventRecord);
    },

    async lastEvent(rolloutId, type) {
      const [row] = await db
        .select()
        .from(rolloutEvents)
        .where(and(eq(rolloutEvents.rolloutId, rolloutId), eq(rolloutEvents.type, type)))
        .orderBy(desc(rolloutEvents.id))
        .limit(1);
      return row ? toRolloutEventRecord(row) : null;
    },

    async assignedModelIds(deviceId) {
      const rows = await db
        .selectDistinct({ modelId: rollouts.modelId })
        .from(rolloutDevices)
        .innerJoin(rollouts, eq(rollouts.id, rolloutDevices.rolloutId))
        .where(and(eq(rolloutDevices.deviceId, deviceId), inArray(rolloutDevices.state, [...HOLDING_STATES])));
      return rows.map((row) => row.modelId);
    },
  };
}
