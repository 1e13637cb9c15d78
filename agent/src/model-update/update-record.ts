import { ModelRef, SignedModelRelease } from '@edgeloop/protocol';
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
 */

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
});
export type ManagerState = z.infer<typeof ManagerState>;
