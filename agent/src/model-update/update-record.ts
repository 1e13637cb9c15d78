import { ASSIGNMENT_IGNORED_REASONS, ModelRef, SignedModelRelease } from '@edgeloop/protocol';
import { z } from 'zod';
import { SLOT_NAMES } from './slots.ts';
import { UPDATE_STATES } from './transitions.ts';

/*
 * What the model manager persists (`<dataDir>/models/update.json` on a device, memory in the
 * simulator), rewritten atomically at every transition:
 *
 *   record    the update under way or the last one that ended (its final state stays until the
 *             next update, so a restart knows what was refused and does not retry it)
 *   previous  the model that ran before the last committed switch: what a rollback returns to
 *   replacedBy  the rolloutId of that switch (the rollback of that rollout may go back to `previous`)
 *   finished  the last FINISHED_KEPT rollout assignments that ended (committed or reverted): one of
 *             them arriving again is a replay, ignored (assignment.ts)
 *   ignored   the last assignment ignored as expired or replayed, reported in Reported.model.ignored;
 *             the same one arriving again (a retained redelivery, a restart) is not reported twice
 */

/** How many ended rollout assignments the agent remembers, to recognise a replay. */
export const FINISHED_KEPT = 32;

/** A rollout assignment that ended on this device (the last record of it). */
export const FinishedAssignment = z.object({
  rolloutId: z.string().max(64),
  sha256: z.string().max(64),
  mode: z.enum(['active', 'shadow']),
  state: z.enum(['committed', 'reverted']),
});
export type FinishedAssignment = z.infer<typeof FinishedAssignment>;

/** The last assignment the agent refused to act on, with what identifies it. */
export const IgnoredAssignment = z.object({
  reason: z.enum(ASSIGNMENT_IGNORED_REASONS),
  rolloutId: z.string().max(64).nullable(),
  target: ModelRef,
  mode: z.enum(['active', 'shadow']),
  signature: z.string().max(512),
  expiresAt: z.int().min(0).nullable(),
  /** Device clock when it was ignored. */
  at: z.int().min(0),
});
export type IgnoredAssignment = z.infer<typeof IgnoredAssignment>;

export const SlotNameField = z.enum(SLOT_NAMES);

export const UpdateRecord = z.object({
  rolloutId: z.string().max(64).nullable(),
  mode: z.enum(['active', 'shadow']),
  target: ModelRef,
  /** Download URL as the assignment gave it (a path resolves against the control plane URL). */
  url: z.string().max(2048),
  signed: SignedModelRelease,
  state: z.enum(UPDATE_STATES),
  loadAttempts: z.int().min(0),
  code: z.string().max(64).nullable(),
  reason: z.string().max(1024).nullable(),
  /** The slot holding the target's bytes once installed (or found there). */
  slot: SlotNameField.nullable(),
  /** What ran when the update started, and from which slot (null: the locally configured model). */
  previous: z.object({ ref: ModelRef.nullable(), slot: SlotNameField.nullable() }),
  /** True when the anti-rollback counter check was skipped: a rollback to the model this rollout replaced. */
  rollback: z.boolean().default(false),
  startedAt: z.int().min(0),
  updatedAt: z.int().min(0),
});
export type UpdateRecord = z.infer<typeof UpdateRecord>;

export const ManagerState = z.object({
  record: UpdateRecord.nullable(),
  previous: ModelRef.nullable(),
  replacedBy: z.string().max(64).nullable().default(null),
  /** Absent in state files written before replay detection: nothing remembered. */
  finished: z.array(FinishedAssignment).max(FINISHED_KEPT).optional(),
  ignored: IgnoredAssignment.nullable().optional(),
});
export type ManagerState = z.infer<typeof ManagerState>;
