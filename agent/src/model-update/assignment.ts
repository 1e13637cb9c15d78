import type { ModelAssignment, ModelRef } from '@edgeloop/protocol';
import { FINAL_STATES } from './transitions.ts';
import type { UpdateRecord } from './update-record.ts';

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
 *   its sha256            none                        any other                = target        -> already-active
 *   anything else         none                        any other                other           -> start
 *
 *   * same target: same sha256, rolloutId and signature (a refused or reverted update is not
 *     retried until the assignment changes; a committed one is done)
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
  /** A new update starts. */
  | { readonly kind: 'start' };

export type AssignmentInput = {
  readonly assignment: ModelAssignment | null | undefined;
  /** The update under way (its record), or null. */
  readonly running: UpdateRecord | null;
  /** The last update record persisted (the running one, or the last that ended). */
  readonly last: UpdateRecord | null;
  readonly active: ModelRef | null;
};

/** Same sha256, rolloutId and signed release. */
export function isSameTarget(record: UpdateRecord, assignment: ModelAssignment): boolean {
  return (
    record.target.sha256 === assignment.model.sha256 &&
    record.rolloutId === assignment.rolloutId &&
    record.signed.signature === assignment.signed.signature
  );
}

export function decideAssignment(input: AssignmentInput): AssignmentDecision {
  const { assignment, running, last, active } = input;
  if (assignment === undefined) return { kind: 'ignore' };
  if (assignment === null) return { kind: 'local' };
  if (running) {
    if (isSameTarget(running, assignment)) {
      if (running.mode === assignment.mode) return { kind: 'keep' };
      if (running.mode === 'shadow' && assignment.mode === 'active') return { kind: 'promote' };
    }
    return { kind: 'supersede' };
  }
  if (last && FINAL_STATES.has(last.state) && isSameTarget(last, assignment) && last.mode === assignment.mode) {
    return { kind: 'keep' };
  }
  if (active?.sha256 === assignment.model.sha256) return { kind: 'already-active' };
  return { kind: 'start' };
}
