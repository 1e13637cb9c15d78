import type { AssignmentIgnoredReason, ModelAssignment, ModelRef } from '@edgeloop/protocol';
import { FINAL_STATES } from './transitions.ts';
import type { FinishedAssignment, UpdateRecord } from './update-record.ts';

/*
 * The assignment policy of the model manager as one pure function: given what desired state
 * names, the update under way, the last update that ended and the model serving frames, what
 * the manager does. The manager performs the decision; after `supersede` (the running update
 * makes way) it decides again, since finishing that update may have changed the active model.
 *
 *   desired.model         running update              last ended update        active sha256   -> decision
 *   undefined             any                         any                      any             -> ignore
 *   null                  any                         any                      any             -> local
 *   same target*, mode    same target, same mode      -                        any             -> keep
 *   same target, active   same target, shadow         -                        any             -> promote
 *   anything else         another one                 -                        any             -> supersede
 *   same target, mode     none                        same target, same mode   any             -> keep
 *   expiresAt < now       any other                   any other                any             -> refuse (assignment-expired)
 *   a finished rollout's  any other                   any other                any             -> refuse (assignment-replayed)
 *   its sha256            none                        any other                = target        -> already-active
 *   anything else         none                        any other                other           -> start
 *
 *   * same target: same sha256, rolloutId and signature (a refused or reverted update is not
 *     retried until the assignment changes; a committed one is done)
 *
 * The two refusals come after the `keep` rows: a stale copy of the update under way, or of the one
 * that just ended, changes nothing and is not worth a report. Any other assignment whose
 * expiresAt has passed on the device clock (a stale retained message, a replay, a control plane
 * down for longer than the TTL) is refused: no download, no switch, no cancel of what runs. So is
 * a rollout assignment (rolloutId, sha256, mode) that already ended on this device, committed or
 * reverted, among the last ones remembered (`finished`): a rollout never assigns the same thing
 * twice, so it can only be a replay. An older desired version never reaches this far: the desired
 * state applies versions in order (desired-state.ts). A direct assignment (rolloutId null) is
 * never a replay: an operator may name the same model again.
 */

export type AssignmentDecision =
  /** undefined: models are left alone. */
  | { readonly kind: 'ignore' }
  /** null: back to the locally configured model (the running update, if any, is cancelled). */
  | { readonly kind: 'local' }
  /** The update under way, or the one that ended, is this very assignment: nothing to do. */
  | { readonly kind: 'keep' }
  /** The running shadow update of this target becomes an active one. */
  | { readonly kind: 'promote' }
  /** The running update makes way (cancelled, or let finish once switched); then decide again. */
  | { readonly kind: 'supersede' }
  /** The target's bytes already serve frames: the update ends at once, committed/already_active. */
  | { readonly kind: 'already-active' }
  /** Expired or replayed: nothing is done; the manager reports it (Reported.model.ignored). */
  | { readonly kind: 'refuse'; readonly reason: AssignmentIgnoredReason }
  /** A new update starts. */
  | { readonly kind: 'start' };

export type AssignmentInput = {
  readonly assignment: ModelAssignment | null | undefined;
  /** The update under way (its record), or null. */
  readonly running: UpdateRecord | null;
  /** The last update record persisted (the running one, or the last that ended). */
  readonly last: UpdateRecord | null;
  readonly active: ModelRef | null;
  /** The device clock (epoch ms), against the assignment's expiresAt. */
  readonly now: number;
  /** Rollout assignments that ended on this device (update-record.ts `finished`). */
  readonly finished?: readonly FinishedAssignment[];
};

/** Whether this rollout assignment already ended on the device: a second arrival is a replay. */
export function isFinished(finished: readonly FinishedAssignment[], assignment: ModelAssignment): boolean {
  const { rolloutId } = assignment;
  if (rolloutId === null) return false;
  return finished.some(
    (entry) =>
      entry.rolloutId === rolloutId && entry.sha256 === assignment.model.sha256 && entry.mode === assignment.mode,
  );
}

/** Same sha256, rolloutId and signed release. */
export function isSameTarget(record: UpdateRecord, assignment: ModelAssignment): boolean {
  return (
    record.target.sha256 === assignment.model.sha256 &&
    record.rolloutId === assignment.rolloutId &&
    record.signed.signature === assignment.signed.signature
  );
}

export function decideAssignment(input: AssignmentInput): AssignmentDecision {
  const { assignment, running, last, active, now } = input;
  if (assignment === undefined) return { kind: 'ignore' };
  if (assignment === null) return { kind: 'local' };
  if (running && isSameTarget(running, assignment) && running.mode === assignment.mode) return { kind: 'keep' };
  if (
    !running &&
    last &&
    FINAL_STATES.has(last.state) &&
    isSameTarget(last, assignment) &&
    last.mode === assignment.mode
  ) {
    return { kind: 'keep' };
  }
  if (assignment.expiresAt !== undefined && assignment.expiresAt < now) {
    return { kind: 'refuse', reason: 'assignment-expired' };
  }
  if (isFinished(input.finished ?? [], assignment)) return { kind: 'refuse', reason: 'assignment-replayed' };
  if (running) {
    if (isSameTarget(running, assignment) && running.mode === 'shadow' && assignment.mode === 'active') {
      return { kind: 'promote' };
    }
    return { kind: 'supersede' };
  }
  if (active?.sha256 === assignment.model.sha256) return { kind: 'already-active' };
  return { kind: 'start' };
}
