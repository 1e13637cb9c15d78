/*
 * The model update as a transition table (after Mender's state machine): every state the update
 * can be in, the events that move it, and what a restart in each state means. The table is the
 * whole policy; the model manager only performs the work of each state and feeds events back.
 *
 *   notified -> downloading -> verifying -> loading -> warming -> [shadow] -> active -> committed
 *          \------(present)-----^                                                   \-> reverted
 *
 * `present`: the bytes are already on the device (a slot holds that sha256: a rollback to the
 * previous model, or a new signed release of old bytes), so nothing is downloaded; the bytes are
 * still verified against the release.
 * `reverted` ends every failed update: before the switch the previous model simply stays, after
 * it the previous slot is made active again. Both `committed` and `reverted` are final.
 *
 * Restarts (kill -9, power loss) are events too. Before the switch the work is redone (a download
 * resumes from the bytes on disk). During loading/warming a restart may mean the model crashed the
 * process, so it is retried at most `MAX_LOAD_ATTEMPTS` times (the loop guard) and then reverted.
 * A restart while `active` but not yet committed reverts: the health check never passed.
 */

export const UPDATE_STATES = [
  'notified',
  'downloading',
  'verifying',
  'loading',
  'warming',
  'shadow',
  'active',
  'committed',
  'reverted',
] as const;
export type UpdateState = (typeof UPDATE_STATES)[number];

export type UpdateEvent =
  | { readonly type: 'start' }
  | { readonly type: 'present' }
  | { readonly type: 'downloaded' }
  | { readonly type: 'verified' }
  | { readonly type: 'loaded' }
  | { readonly type: 'warmed'; readonly shadow: boolean }
  | { readonly type: 'promoted' }
  | { readonly type: 'healthy' }
  | { readonly type: 'failed'; readonly code: string; readonly reason: string }
  | { readonly type: 'cancelled'; readonly reason: string }
  | { readonly type: 'restarted' };

export type UpdateEventType = UpdateEvent['type'];

export const FINAL_STATES: ReadonlySet<UpdateState> = new Set(['committed', 'reverted']);

/** Loading/warming attempts across restarts before the loop guard reverts. */
export const MAX_LOAD_ATTEMPTS = 2;

type Row = Partial<Record<UpdateEventType, UpdateState>>;

/** state -> event -> next state. A missing entry means the event is ignored in that state. */
export const TRANSITIONS: Readonly<Record<UpdateState, Row>> = {
  notified: {
    start: 'downloading',
    present: 'verifying',
    failed: 'reverted',
    cancelled: 'reverted',
    restarted: 'notified',
  },
  downloading: { downloaded: 'verifying', failed: 'reverted', cancelled: 'reverted', restarted: 'downloading' },
  verifying: { verified: 'loading', failed: 'reverted', cancelled: 'reverted', restarted: 'verifying' },
  loading: { loaded: 'warming', failed: 'reverted', cancelled: 'reverted', restarted: 'loading' },
  warming: { warmed: 'active', failed: 'reverted', cancelled: 'reverted', restarted: 'loading' },
  shadow: { promoted: 'active', failed: 'reverted', cancelled: 'reverted', restarted: 'loading' },
  active: { healthy: 'committed', failed: 'reverted', cancelled: 'reverted', restarted: 'reverted' },
  committed: {},
  reverted: {},
};

export type UpdateProgress = {
  readonly state: UpdateState;
  /** Loading attempts so far (the loop guard). */
  readonly loadAttempts: number;
  readonly code: string | null;
  readonly reason: string | null;
};

/**
 * The next progress for an event, or null when the event does not apply in this state.
 * `warmed` goes to `shadow` when the assignment is a shadow one. A restart in loading/warming/
 * shadow counts an attempt; past the guard it reverts with code `crash_loop`.
 */
export function nextProgress(progress: UpdateProgress, event: UpdateEvent): UpdateProgress | null {
  let next = TRANSITIONS[progress.state][event.type];
  if (next === undefined) return null;
  if (event.type === 'warmed' && event.shadow) next = 'shadow';
  if (event.type === 'restarted') {
    if (progress.state === 'active') {
      return {
        state: 'reverted',
        loadAttempts: progress.loadAttempts,
        code: 'restarted_before_commit',
        reason: 'the agent restarted before the new model passed its health check',
      };
    }
    if (next === 'loading') {
      const attempts = progress.loadAttempts + 1;
      if (attempts >= MAX_LOAD_ATTEMPTS) {
        return {
          state: 'reverted',
          loadAttempts: attempts,
          code: 'crash_loop',
          reason: `the agent restarted ${attempts} times while loading the model`,
        };
      }
      return { ...progress, state: 'loading', loadAttempts: attempts };
    }
  }
  if (event.type === 'failed') return { ...progress, state: next, code: event.code, reason: event.reason };
  if (event.type === 'cancelled') return { ...progress, state: next, code: 'cancelled', reason: event.reason };
  return { ...progress, state: next };
}

/** Whether the new model is (or may be) the one serving frames in this state. */
export function isSwitched(state: UpdateState): boolean {
  return state === 'active' || state === 'committed';
}
