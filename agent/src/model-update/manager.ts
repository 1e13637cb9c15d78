import type { TrustedKey, VerifyErrorCode } from '@edgeloop/firmware-images/verify';
import { verifyRelease } from '@edgeloop/firmware-images/verify';
import type {
  AssignmentIgnoredReason,
  JsonObject,
  ModelAssignment,
  ModelRef,
  Reported,
  Result,
  SignedModelRelease,
} from '@edgeloop/protocol';
import { type Clock, systemClock, systemTimers, type Timers } from '../clock.ts';
import { type Logger, silentLogger } from '../logger.ts';
import { decideAssignment } from './assignment.ts';
import { downloadWithRetry, type RetryPolicy } from './download.ts';
import type { ModelHandle, ModelRuntime } from './runtime.ts';
import type { ByteFacts, ModelStorage } from './storage.ts';
import { FINAL_STATES, nextProgress, type UpdateEvent } from './transitions.ts';
import { FINISHED_KEPT, type IgnoredAssignment, type ManagerState, type UpdateRecord } from './update-record.ts';

/*
 * The agent's model manager: turns `desired.model` into a model running on the device, through
 * the transition table of transitions.ts, persisting the update record (storage.saveState) at
 * every transition so that kill -9 at any instant resumes or returns to a consistent model.
 *
 *   notified    the release is checked before any byte moves (signature, key, expiry, hardware,
 *               anti-rollback); bytes already in a slot skip the download (`present`)
 *   downloading resumable (Range) download capped at release.sizeBytes, HTTP Basic device
 *               credential (sent only to the control plane's origin), retried with capped backoff
 *   verifying   the full verifyRelease with the bytes' size and sha256
 *   loading     the bytes go into the INACTIVE slot; the runtime loads a session beside the active one
 *   warming     an explicit warm-up inference
 *   shadow      (mode 'shadow') runs beside the active model on sampled frames until promoted
 *   active      the slot table and the runtime switch; the health check watches the new model
 *   committed   the release counter is recorded (anti-rollback); the old model is released
 *   reverted    every failure: before the switch the old model simply stays; after it the old
 *               slot and model come back (locally, no network needed)
 *
 * Desired semantics (apply; the policy is the pure decideAssignment of assignment.ts):
 *   undefined                     models are left alone
 *   null                          back to the locally configured model (config vision.model) if
 *                                 another one runs; the update record is cleared
 *   same target as the update under way (rolloutId, sha256, signature)
 *                                 nothing, except shadow -> active on the same target: promotion
 *   same (rolloutId, sha256, signature, mode) as the last update that ended
 *                                 nothing: a refused or reverted update is not retried until the
 *                                 assignment changes; a committed one is done
 *   sha256 already active         no switch: the update ends at once as `committed` with code
 *                                 `already_active` (reported with this rolloutId and target)
 *   anything else                 the update under way (if any) is cancelled (abort signal,
 *                                 reverted with code `cancelled`) and a new one starts
 *   expired (expiresAt before the device clock) or replayed (a rollout assignment that already
 *   ended here)                   ignored: nothing downloads, switches or is cancelled. It is
 *                                 persisted as `ignored`, reported in Reported.model.ignored and
 *                                 announced by one `model.assignment-ignored` event; the same
 *                                 assignment again (a redelivery, a restart) is not announced twice
 *
 * Anti-rollback: verifyRelease refuses a release counter below the highest committed for the
 * model name, and an equal counter unless it is the same bytes. One exception, the rollback of a
 * rollout: the last committed switch persists the model it replaced (`previous`) and its rolloutId
 * (`replacedBy`); an assignment whose rolloutId is non-null and equals `replacedBy`, naming the
 * sha256 of `previous`, skips the counter check (every other check still runs: signature, key,
 * expiry, hardware, size, hash; the bytes still in the other slot are reused). Refused updates in
 * between do not change `previous`/`replacedBy`; the next committed switch does. Any other way
 * back to old bytes is a NEW signed release of them with a higher counter; its bytes are reused
 * from a slot when the sha256 matches.
 *
 * Every transition is one log line (logTransition: started, refused, switched, committed,
 * reverted, cancelled at info/warn; the steps between at debug) and a `model.update` event (rolloutId set) with data { state, from, target,
 * mode, code, reason, loadAttempts, ... } and is followed by `onChange` (the agent re-publishes
 * Reported, whose model.update.reason reads `<code>: <reason>`).
 *
 * For the simulator: runtime and storage are deps (runtime.ts, storage.ts); use
 * createMemoryModelStorage() and a runtime that plays models. The manager is a class so an idle
 * device costs a few small objects.
 */

export type ModelManagerOptions = {
  readonly download: RetryPolicy;
};

export const DEFAULT_MODEL_MANAGER_OPTIONS: ModelManagerOptions = {
  download: { initialDelayMs: 1000, maxDelayMs: 60_000, maxAttempts: null },
};

/** What the manager publishes (the agent's emitEvent takes it as is). */
export type ModelManagerEvent = {
  readonly type: 'model.update' | 'model.assignment-ignored' | 'agent.fault';
  readonly severity: 'info' | 'warning' | 'error';
  readonly message: string;
  readonly rolloutId?: string;
  readonly data: JsonObject;
};

export type ModelManagerDeps = {
  readonly runtime: ModelRuntime;
  readonly storage: ModelStorage;
  readonly trustedKeys: readonly TrustedKey[];
  /** The device's hardware profile, checked against the release's hardware lists. */
  readonly hardwareProfile: string;
  /** Base URL that assignment paths resolve against; device credentials go to this origin only. */
  readonly controlPlaneUrl?: string | undefined;
  /** HTTP Basic credential for downloads: the device id and its MQTT password. */
  readonly credentials?: { readonly username: string; readonly password: string } | undefined;
  readonly emit: (event: ModelManagerEvent) => void;
  /** After every transition (the agent publishes Reported). */
  readonly onChange?: (() => void) | undefined;
  readonly options?: Partial<ModelManagerOptions> | undefined;
  readonly clock?: Clock | undefined;
  readonly timers?: Timers | undefined;
  readonly random?: (() => number) | undefined;
  readonly fetch?: typeof fetch | undefined;
  readonly logger?: Logger | undefined;
};

export type ReportedModel = NonNullable<Reported['model']>;

export type ModelManagerStats = {
  readonly started: number;
  readonly committed: number;
  readonly reverted: number;
  readonly cancelled: number;
  readonly downloadRetries: number;
  readonly bytesDownloaded: number;
};

export interface ModelManager {
  /** Recovers after a restart (the `restarted` event), brings up the active slot's model, resumes work. */
  start(): Promise<void>;
  /** The desired-state applier: returns once the assignment is accepted, not when the update ends. */
  apply(assignment: ModelAssignment | null | undefined): Promise<void>;
  /** Reported.model. */
  report(): ReportedModel;
  /** The update under way or the last one that ended. */
  record(): UpdateRecord | null;
  /** Resolves when no update is running (tests, the simulator). */
  idle(): Promise<void>;
  /** Stops work without ending the update: it resumes after the next start. */
  stop(): Promise<void>;
  stats(): ModelManagerStats;
}

/** A failure of one update step, with the code it is reported under. */
export class ModelUpdateError extends Error {
  readonly code: string;
  readonly data: JsonObject | undefined;
  constructor(code: string, message: string, data?: JsonObject) {
    super(message);
    this.name = 'ModelUpdateError';
    this.code = code;
    this.data = data;
  }
}

/**
 * The code of an update that ended `committed` without a switch: the assignment named the sha256
 * of the model already running (a re-release of the same bytes, a rollback to what never left).
 */
export const ALREADY_ACTIVE = 'already_active';

/** Download and verification failures after which the bytes held are worthless. */
const DISCARD_CODES: ReadonlySet<string> = new Set(['hash_mismatch', 'size_mismatch', 'size_exceeded']);

type Job = {
  record: UpdateRecord;
  readonly controller: AbortController;
  done: Promise<void>;
  candidate: ModelHandle | null;
  previousHandle: ModelHandle | null;
  switched: boolean;
  promote: (() => void) | null;
  cancelReason: string | null;
};

/** The finished list with this ended rollout update added (newest last, at most FINISHED_KEPT). */
function finishedWith(
  finished: NonNullable<ManagerState['finished']>,
  record: UpdateRecord,
): NonNullable<ManagerState['finished']> {
  if (record.rolloutId === null || (record.state !== 'committed' && record.state !== 'reverted')) return finished;
  const entry = { rolloutId: record.rolloutId, sha256: record.target.sha256, mode: record.mode, state: record.state };
  const rest = finished.filter(
    (other) => !(other.rolloutId === entry.rolloutId && other.sha256 === entry.sha256 && other.mode === entry.mode),
  );
  return [...rest, entry].slice(-FINISHED_KEPT);
}

export function createModelManager(deps: ModelManagerDeps): ModelManager {
  return new Manager(deps);
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[a-z][a-z0-9_]*$/.test(code) ? code.slice(0, 64) : 'internal_error';
}

function errorMessage(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).slice(0, 1024);
}

function describeBasic(credentials: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`, 'utf8').toString('base64')}`;
}

/**
 * One log line per transition an operator needs to see on the device itself: started, refused
 * (with its code), switched, committed, reverted (with its reason), cancelled. The steps in
 * between are debug lines. Updates are rare, so this is never per-frame noise.
 */
export function logTransition(log: Logger, record: UpdateRecord, from: string | null): void {
  const fields = {
    rolloutId: record.rolloutId,
    target: record.target.id,
    sha256: record.target.sha256,
    from,
    state: record.state,
    ...(record.code ? { code: record.code } : {}),
    ...(record.reason ? { reason: record.reason } : {}),
  };
  switch (record.state) {
    case 'notified':
      if (from === null) log.info({ ...fields, mode: record.mode }, 'model update started');
      else log.debug(fields, 'model update resumed');
      return;
    case 'active':
      log.info({ ...fields, previous: record.previous.ref?.id ?? null }, 'model switched');
      return;
    case 'committed':
      if (record.code === ALREADY_ACTIVE) log.info(fields, 'model update not needed: the same bytes already run');
      else log.info(fields, 'model update committed');
      return;
    case 'reverted':
      if (record.code === 'cancelled') log.info(fields, 'model update cancelled');
      else if (from === 'active') log.warn(fields, 'model update reverted: the previous model runs again');
      else if (from === 'notified' || from === 'verifying') log.warn(fields, 'model update refused');
      else log.warn(fields, 'model update failed before the switch: the running model stays');
      return;
    default:
      log.debug(fields, `model update ${record.state}`);
  }
}

class Manager implements ModelManager {
  readonly #deps: ModelManagerDeps;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #download: RetryPolicy;
  #state: ManagerState = { record: null, previous: null, replacedBy: null };
  #job: Job | null = null;
  #queue: Promise<void> = Promise.resolve();
  #stopping: AbortController | null = null;
  readonly #counters = { started: 0, committed: 0, reverted: 0, cancelled: 0, downloadRetries: 0, bytesDownloaded: 0 };

  constructor(deps: ModelManagerDeps) {
    this.#deps = deps;
    this.#log = deps.logger ? deps.logger.child({ component: 'model-manager' }) : silentLogger;
    this.#clock = deps.clock ?? systemClock;
    this.#timers = deps.timers ?? systemTimers;
    this.#download = deps.options?.download ?? DEFAULT_MODEL_MANAGER_OPTIONS.download;
  }

  #enqueue(work: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(work).catch((error: unknown) => {
      this.#log.error({ err: error }, 'model manager step failed');
    });
    this.#queue = next;
    return next;
  }

  start(): Promise<void> {
    return this.#enqueue(() => this.#start());
  }

  async #start(): Promise<void> {
    this.#stopping = null;
    const storage = this.#deps.storage;
    this.#state = storage.loadState() ?? { record: null, previous: null, replacedBy: null };
    const record = this.#state.record;
    let resume: UpdateRecord | null = null;
    if (record && !FINAL_STATES.has(record.state)) {
      const next = nextProgress(record, { type: 'restarted' });
      if (next) {
        // The switch happened but the health check never passed: the old slot comes back, unless
        // nothing ran before it (then the new model keeps running rather than none).
        const keptRunning = next.state === 'reverted' && record.state === 'active' && record.previous.ref === null;
        if (next.state === 'reverted' && record.state === 'active' && !keptRunning) {
          storage.activate(record.previous.slot);
        }
        const updated = this.#save({ ...record, ...next, updatedAt: this.#clock.now() });
        this.#emitTransition(updated, record.state, { restarted: true, ...(keptRunning ? { keptRunning } : {}) });
        if (next.state === 'reverted') this.#counters.reverted++;
        else resume = updated;
      }
    } else if (record?.state === 'committed' && record.code !== ALREADY_ACTIVE) {
      // A commit cut short between the record and the counter: finish it (idempotent).
      const release = record.signed.release;
      storage.recordCommit(release.name, release.releaseCounter, release.sha256);
    }
    await this.#bringUp();
    if (resume) this.#startJob(resume, true);
    this.#deps.onChange?.();
  }

  /** Loads the active slot's model (falling back to the other slot, then the local model). */
  async #bringUp(): Promise<void> {
    const { storage, runtime } = this.#deps;
    const table = storage.readTable();
    if (table.active === null) return;
    const other = table.active === 'a' ? 'b' : 'a';
    for (const slot of [table.active, other] as const) {
      const entry = table.slots[slot];
      if (!entry) continue;
      if (runtime.active()?.sha256 === entry.ref.sha256) return;
      try {
        const handle = await runtime.load({
          ref: entry.ref,
          manifest: entry.manifest,
          location: storage.locate(slot),
          signal: new AbortController().signal,
        });
        const previous = await runtime.activate(handle);
        if (previous) await runtime.release(previous);
        if (slot !== table.active) storage.activate(slot);
        return;
      } catch (error) {
        this.#deps.emit({
          type: 'agent.fault',
          severity: 'error',
          message: `model in slot ${slot} (${entry.ref.id}) does not load: ${errorMessage(error)}`.slice(0, 2048),
          data: { slot, model: entry.ref, code: errorCode(error) },
        });
      }
    }
    // Neither slot loads: the locally configured model (the runtime starts it) is all there is.
    storage.activate(null);
  }

  apply(assignment: ModelAssignment | null | undefined): Promise<void> {
    return this.#enqueue(() => this.#apply(assignment));
  }

  async #apply(assignment: ModelAssignment | null | undefined): Promise<void> {
    if (this.#stopping) return;
    for (;;) {
      const job = this.#job;
      const active = this.#deps.runtime.active();
      const decision = decideAssignment({
        assignment,
        running: job?.record ?? null,
        last: this.#state.record,
        active,
        now: this.#clock.now(),
        finished: this.#state.finished ?? [],
      });
      switch (decision.kind) {
        case 'ignore':
        case 'keep':
          return;
        case 'refuse':
          if (assignment) this.#refuse(assignment, decision.reason);
          return;
        case 'local':
          if (job) await this.#cancel(job, 'desired model is null');
          await this.#returnToLocal();
          return;
        case 'promote':
          if (job) this.#promote(job);
          return;
        case 'supersede':
          if (!job || !assignment) return;
          await this.#supersede(job, assignment);
          continue;
        case 'already-active':
          if (assignment && active) this.#alreadyActive(assignment, active);
          return;
        case 'start':
          if (assignment) this.#startNew(assignment);
          return;
      }
    }
  }

  /**
   * An expired or replayed assignment: nothing changes but `ignored`, which is persisted and
   * reported. Only a different assignment (or another reason) is announced again.
   */
  #refuse(assignment: ModelAssignment, reason: AssignmentIgnoredReason): void {
    const previous = this.#state.ignored;
    const same =
      previous &&
      previous.reason === reason &&
      previous.rolloutId === assignment.rolloutId &&
      previous.target.sha256 === assignment.model.sha256 &&
      previous.mode === assignment.mode &&
      previous.signature === assignment.signed.signature &&
      previous.expiresAt === (assignment.expiresAt ?? null);
    if (same) return;
    const ignored: IgnoredAssignment = {
      reason,
      rolloutId: assignment.rolloutId,
      target: assignment.model,
      mode: assignment.mode,
      signature: assignment.signed.signature,
      expiresAt: assignment.expiresAt ?? null,
      at: this.#clock.now(),
    };
    this.#state = { ...this.#state, ignored };
    this.#deps.storage.saveState(this.#state);
    const why =
      reason === 'assignment-expired'
        ? `it expired at ${new Date(assignment.expiresAt ?? 0).toISOString()} (device clock ${new Date(ignored.at).toISOString()})`
        : `rollout ${assignment.rolloutId} already ended for ${assignment.model.id} on this device`;
    this.#log.warn(
      { reason, rolloutId: assignment.rolloutId, target: assignment.model.id, expiresAt: ignored.expiresAt },
      'model assignment ignored',
    );
    this.#deps.emit({
      type: 'model.assignment-ignored',
      severity: 'warning',
      message: `assignment of ${assignment.model.id} ignored: ${why}`.slice(0, 2048),
      ...(assignment.rolloutId !== null ? { rolloutId: assignment.rolloutId } : {}),
      data: {
        reason,
        target: assignment.model,
        mode: assignment.mode,
        expiresAt: ignored.expiresAt,
        at: ignored.at,
      },
    });
    this.#deps.onChange?.();
  }

  #startNew(assignment: ModelAssignment): void {
    const now = this.#clock.now();
    const table = this.#deps.storage.readTable();
    const record: UpdateRecord = {
      rolloutId: assignment.rolloutId,
      mode: assignment.mode,
      target: assignment.model,
      url: assignment.url,
      signed: assignment.signed,
      state: 'notified',
      loadAttempts: 0,
      code: null,
      reason: null,
      slot: null,
      previous: { ref: this.#deps.runtime.active(), slot: table.active },
      rollback: this.#isRollback(assignment),
      startedAt: now,
      updatedAt: now,
    };
    this.#startJob(record, false);
  }

  /**
   * The assignment names the bytes that already serve frames: nothing switches, and the update
   * ends at once as `committed` with code `already_active`, so the control plane sees this
   * rollout's target reached without a fake switch. The anti-rollback counter and `previous`
   * are left as they are (no commit happened).
   */
  #alreadyActive(assignment: ModelAssignment, active: ModelRef): void {
    const now = this.#clock.now();
    const slot = this.#deps.storage.readTable().active;
    const record = this.#save({
      rolloutId: assignment.rolloutId,
      mode: assignment.mode,
      target: assignment.model,
      url: assignment.url,
      signed: assignment.signed,
      state: 'committed',
      loadAttempts: 0,
      code: ALREADY_ACTIVE,
      reason:
        assignment.model.id === active.id
          ? `${active.id} is already the active model: nothing to switch`
          : `${assignment.model.id} has the bytes of the active model ${active.id} (sha256 ${active.sha256.slice(0, 12)}): nothing to switch`,
      slot,
      previous: { ref: active, slot },
      rollback: false,
      startedAt: now,
      updatedAt: now,
    });
    this.#emitTransition(record, null, {});
    this.#deps.onChange?.();
  }

  /** The one exception to the counter check: the rollback of the rollout that replaced this model. */
  #isRollback(assignment: ModelAssignment): boolean {
    const { previous, replacedBy } = this.#state;
    return (
      assignment.rolloutId !== null &&
      replacedBy === assignment.rolloutId &&
      previous !== null &&
      previous.sha256 === assignment.model.sha256
    );
  }

  #promote(job: Job): void {
    job.record = this.#save({ ...job.record, mode: 'active', updatedAt: this.#clock.now() });
    job.promote?.();
  }

  /**
   * Makes way for a newer assignment. Before the switch the running update is cancelled (nothing
   * changed yet). Once it has switched, cancelling would undo the switch; that is wrong when the
   * switch was itself a rollback (the device would go back to the bad model it was rolling back
   * from) and wasteful otherwise, so the health check is let finish (commit or local revert) and
   * the newer assignment starts from whatever model that leaves running.
   */
  async #supersede(job: Job, assignment: ModelAssignment): Promise<void> {
    if (job.switched && job.record.state === 'active') {
      await job.done;
      return;
    }
    await this.#cancel(job, `replaced by ${assignment.model.id} (rollout ${assignment.rolloutId ?? 'none'})`);
  }

  async #cancel(job: Job, reason: string): Promise<void> {
    job.cancelReason = reason;
    job.controller.abort();
    await job.done;
  }

  async #returnToLocal(): Promise<void> {
    const { storage, runtime } = this.#deps;
    if (storage.readTable().active === null) return;
    const signal = this.#stopping?.signal ?? new AbortController().signal;
    const from = runtime.active();
    let local: ModelHandle | null;
    try {
      local = await runtime.loadLocal(signal);
      if (local) await runtime.warm(local, signal);
    } catch (error) {
      this.#deps.emit({
        type: 'agent.fault',
        severity: 'error',
        message: `desired model is null but the local model does not load: ${errorMessage(error)}`,
        data: { code: errorCode(error) },
      });
      return;
    }
    if (!local) {
      this.#log.warn('desired model is null and no local model is configured: the slot model keeps running');
      return;
    }
    const previous = await runtime.activate(local);
    storage.activate(null);
    this.#state = { ...this.#state, record: null, previous: from, replacedBy: null, ignored: null };
    storage.saveState(this.#state);
    if (previous) await runtime.release(previous);
    this.#log.info({ target: local.ref.id, from: from?.id ?? null }, 'back to the locally configured model');
    this.#deps.emit({
      type: 'model.update',
      severity: 'info',
      message: `back to the locally configured model ${local.ref.id}`,
      data: {
        state: 'committed',
        from: from ? 'active' : null,
        target: local.ref,
        mode: 'active',
        code: 'local_model',
        reason: 'desired model is null: the locally configured model runs',
        previous: from,
      },
    });
    this.#deps.onChange?.();
  }

  #startJob(record: UpdateRecord, resumed: boolean): void {
    const job: Job = {
      record,
      controller: new AbortController(),
      done: Promise.resolve(),
      candidate: null,
      previousHandle: null,
      switched: false,
      promote: null,
      cancelReason: null,
    };
    this.#job = job;
    this.#counters.started++;
    if (!resumed) {
      job.record = this.#save(record);
      this.#emitTransition(job.record, null, {});
      this.#deps.onChange?.();
    }
    job.done = this.#run(job)
      .catch((error: unknown) => this.#log.error({ err: error }, 'model update crashed'))
      .finally(() => {
        if (this.#job === job) this.#job = null;
      });
  }

  #save(record: UpdateRecord, commit?: Pick<ManagerState, 'previous' | 'replacedBy'>): UpdateRecord {
    const fresh = record.state === 'notified' || record.code === ALREADY_ACTIVE;
    this.#state = {
      ...this.#state,
      ...commit,
      record,
      // A new update (or the end of one) supersedes the last ignored assignment.
      ...(fresh ? { ignored: null } : {}),
      ...(FINAL_STATES.has(record.state) ? { finished: finishedWith(this.#state.finished ?? [], record) } : {}),
    };
    this.#deps.storage.saveState(this.#state);
    return record;
  }

  #emitTransition(record: UpdateRecord, from: string | null, data: JsonObject): void {
    logTransition(this.#log, record, from);
    const reverted = record.state === 'reverted';
    this.#deps.emit({
      type: 'model.update',
      severity: reverted && record.code !== 'cancelled' ? 'warning' : 'info',
      message: `${record.target.id}: ${from ?? 'new'} -> ${record.state}${record.code ? ` (${record.code})` : ''}`,
      ...(record.rolloutId !== null ? { rolloutId: record.rolloutId } : {}),
      data: {
        state: record.state,
        from,
        target: record.target,
        mode: record.mode,
        code: record.code,
        reason: record.reason,
        loadAttempts: record.loadAttempts,
        ...data,
      },
    });
  }

  /** Applies one table event to the job: persist, event, report. */
  #advance(job: Job, event: UpdateEvent, patch: Partial<UpdateRecord> = {}, data: JsonObject = {}): void {
    const from = job.record.state;
    const next = nextProgress(job.record, event);
    if (!next) throw new Error(`model update: event ${event.type} does not apply in state ${from}`);
    // nextProgress returns the whole record it was given, so the patch goes last.
    const record = { ...job.record, ...next, ...patch, updatedAt: this.#clock.now() };
    job.record = this.#save(
      record,
      event.type === 'healthy' ? { previous: record.previous.ref, replacedBy: record.rolloutId } : undefined,
    );
    this.#emitTransition(record, from, data);
    this.#deps.onChange?.();
  }

  async #run(job: Job): Promise<void> {
    const signal = job.controller.signal;
    try {
      while (!FINAL_STATES.has(job.record.state)) {
        signal.throwIfAborted();
        switch (job.record.state) {
          case 'notified':
            await this.#notified(job);
            break;
          case 'downloading':
            await this.#downloading(job, signal);
            break;
          case 'verifying':
            await this.#verifying(job, signal);
            break;
          case 'loading':
            await this.#loading(job, signal);
            break;
          case 'warming':
            await this.#warming(job, signal);
            break;
          case 'shadow':
            await this.#shadow(job, signal);
            break;
          case 'active':
            await this.#active(job, signal);
            break;
        }
      }
    } catch (error) {
      if (signal.aborted && job.cancelReason === null) {
        // The agent is stopping: the update resumes after the next start.
        await this.#park(job);
        return;
      }
      const event: UpdateEvent = signal.aborted
        ? { type: 'cancelled', reason: job.cancelReason ?? 'cancelled' }
        : { type: 'failed', code: errorCode(error), reason: errorMessage(error) };
      const undone = await this.#undo(job);
      if (event.type === 'failed' && DISCARD_CODES.has(event.code)) this.#deps.storage.discardDownloads();
      const data = error instanceof ModelUpdateError && error.data ? error.data : {};
      this.#advance(job, event, {}, { ...data, ...undone });
      if (event.type === 'cancelled') this.#counters.cancelled++;
      this.#counters.reverted++;
    }
  }

  /** Stopping mid-update: free what was loaded; the persisted state says where to resume. */
  async #park(job: Job): Promise<void> {
    const runtime = this.#deps.runtime;
    if (job.record.state === 'shadow') runtime.stopShadow();
    if (job.candidate && !job.switched) await runtime.release(job.candidate).catch(() => {});
  }

  /**
   * Puts back what the update changed: the shadow, the switch, the loaded candidate. When the
   * switch cannot be undone because nothing ran before it (no previous model, no local model),
   * the new model keeps running rather than none, and the event says so (`keptRunning`).
   */
  async #undo(job: Job): Promise<JsonObject> {
    const { runtime, storage } = this.#deps;
    if (job.record.state === 'shadow') runtime.stopShadow();
    if (job.record.state === 'active') {
      if (job.switched) {
        const previous = job.previousHandle ?? (await this.#loadPrevious(job).catch(() => null));
        if (!previous) {
          storage.activate(job.record.slot);
          job.candidate = null;
          return { keptRunning: true };
        }
        storage.activate(job.record.previous.slot);
        const replaced = await runtime.activate(previous);
        if (replaced && replaced !== previous) await runtime.release(replaced).catch(() => {});
        job.candidate = null;
      } else {
        storage.activate(job.record.previous.slot);
      }
    }
    if (job.candidate) await runtime.release(job.candidate).catch(() => {});
    job.candidate = null;
    return {};
  }

  async #loadPrevious(job: Job): Promise<ModelHandle | null> {
    const { runtime, storage } = this.#deps;
    const slot = job.record.previous.slot;
    const signal = new AbortController().signal;
    if (slot === null) return runtime.loadLocal(signal);
    const entry = storage.readTable().slots[slot];
    if (!entry) return null;
    return runtime.load({ ref: entry.ref, manifest: entry.manifest, location: storage.locate(slot), signal });
  }

  #check(record: UpdateRecord, facts?: ByteFacts): Result<SignedModelRelease, VerifyErrorCode> {
    const release = record.signed.release;
    const highest = record.rollback ? undefined : this.#deps.storage.readTable().highest[release.name];
    return verifyRelease(record.signed, {
      trustedKeys: this.#deps.trustedKeys,
      now: this.#clock.now(),
      hardwareProfile: this.#deps.hardwareProfile,
      ...(highest ? { highestReleaseCounter: highest.counter, highestReleaseSha256: highest.sha256 } : {}),
      ...(facts ? { fileSize: facts.sizeBytes, fileSha256: facts.sha256 } : {}),
    });
  }

  async #notified(job: Job): Promise<void> {
    const { record } = job;
    const release = record.signed.release;
    if (
      release.sha256 !== record.target.sha256 ||
      release.name !== record.target.name ||
      release.version !== record.target.version
    ) {
      throw new ModelUpdateError(
        'assignment_mismatch',
        `the assignment names ${record.target.id} (${record.target.sha256}) but its release is ` +
          `${release.name}@${release.version} (${release.sha256})`,
      );
    }
    const checked = this.#check(record);
    if (!checked.ok) throw new ModelUpdateError(checked.error.code, checked.error.message);
    const storage = this.#deps.storage;
    const slot = storage.findSlot(release.sha256);
    if (slot !== null) {
      this.#advance(job, { type: 'present' }, { slot }, { slot, rollback: record.rollback });
      return;
    }
    storage.discardDownloads(release.sha256);
    this.#advance(job, { type: 'start' });
  }

  #resolveUrl(url: string): { url: string; headers: Record<string, string> } {
    const base = this.#deps.controlPlaneUrl;
    let resolved: URL;
    try {
      resolved = base ? new URL(url, base) : new URL(url);
    } catch {
      throw new ModelUpdateError(
        'bad_url',
        base ? `cannot resolve ${url} against ${base}` : `${url} is not absolute and no controlPlaneUrl is configured`,
      );
    }
    if (resolved.protocol !== 'http:' && resolved.protocol !== 'https:') {
      throw new ModelUpdateError('bad_url', `${resolved.protocol} downloads are not supported`);
    }
    const credentials = this.#deps.credentials;
    const headers: Record<string, string> = {};
    if (credentials && base && new URL(base).origin === resolved.origin) {
      headers.authorization = describeBasic(credentials);
    }
    return { url: resolved.toString(), headers };
  }

  async #downloading(job: Job, signal: AbortSignal): Promise<void> {
    const release = job.record.signed.release;
    const { url, headers } = this.#resolveUrl(job.record.url);
    const target = this.#deps.storage.openDownload(release.sha256);
    let result: Awaited<ReturnType<typeof downloadWithRetry>>;
    try {
      result = await downloadWithRetry(
        {
          url,
          target,
          expectedSize: release.sizeBytes,
          headers,
          signal,
          ...(this.#deps.fetch ? { fetch: this.#deps.fetch } : {}),
        },
        {
          policy: this.#download,
          timers: this.#timers,
          ...(this.#deps.random ? { random: this.#deps.random } : {}),
          onRetry: (attempt, error, delayMs) => {
            this.#counters.downloadRetries++;
            this.#log.warn({ attempt, code: error.code, reason: error.message, delayMs }, 'model download retrying');
          },
        },
      );
    } finally {
      target.close();
    }
    if (!result.ok) {
      signal.throwIfAborted();
      throw new ModelUpdateError(result.error.code, result.error.message);
    }
    this.#counters.bytesDownloaded += result.value.bytes - result.value.firstResumedFrom;
    this.#advance(
      job,
      { type: 'downloaded' },
      {},
      { bytes: result.value.bytes, resumedFrom: result.value.firstResumedFrom, attempts: result.value.attempts },
    );
  }

  async #verifying(job: Job, signal: AbortSignal): Promise<void> {
    const { record } = job;
    const storage = this.#deps.storage;
    const sha256 = record.signed.release.sha256;
    const facts = record.slot
      ? await storage.slotFacts(record.slot, signal)
      : await storage.downloadFacts(sha256, signal);
    signal.throwIfAborted();
    if (!facts) throw new ModelUpdateError('download_missing', `no bytes of ${sha256} to verify`);
    const checked = this.#check(record, facts);
    if (!checked.ok) throw new ModelUpdateError(checked.error.code, checked.error.message);
    this.#advance(job, { type: 'verified' });
  }

  async #loading(job: Job, signal: AbortSignal): Promise<void> {
    const { storage, runtime } = this.#deps;
    const { record } = job;
    const release = record.signed.release;
    const entry = {
      ref: record.target,
      manifest: release.manifest,
      releaseCounter: release.releaseCounter,
      installedAt: this.#clock.now(),
    };
    let slot = record.slot ?? storage.findSlot(release.sha256);
    const table = storage.readTable();
    if (slot === null) {
      slot = storage.inactiveSlot();
      await storage.install(slot, entry, signal);
    } else if (slot !== table.active) {
      const held = table.slots[slot];
      if (held && (held.releaseCounter !== entry.releaseCounter || held.ref.id !== entry.ref.id)) {
        // A new release of bytes already held: the slot now says what this release says.
        storage.describe(slot, entry);
      }
    }
    if (record.slot !== slot) job.record = this.#save({ ...record, slot });
    signal.throwIfAborted();
    job.candidate = await runtime.load({
      ref: record.target,
      manifest: release.manifest,
      location: storage.locate(slot),
      signal,
    });
    if (signal.aborted) {
      await runtime.release(job.candidate);
      job.candidate = null;
      signal.throwIfAborted();
    }
    this.#advance(job, { type: 'loaded' }, {}, { slot });
  }

  async #warming(job: Job, signal: AbortSignal): Promise<void> {
    if (!job.candidate) throw new ModelUpdateError('internal_error', 'warming without a loaded model');
    const started = this.#clock.now();
    await this.#deps.runtime.warm(job.candidate, signal);
    signal.throwIfAborted();
    const shadow = job.record.mode === 'shadow';
    this.#advance(job, { type: 'warmed', shadow }, shadow ? {} : this.#switchPatch(), {
      warmupMs: this.#clock.now() - started,
    });
  }

  /** What the record must hold before the switch: where to return to. */
  #switchPatch(): Partial<UpdateRecord> {
    return { previous: { ref: this.#deps.runtime.active(), slot: this.#deps.storage.readTable().active } };
  }

  async #shadow(job: Job, signal: AbortSignal): Promise<void> {
    const runtime = this.#deps.runtime;
    if (!job.candidate) throw new ModelUpdateError('internal_error', 'shadow without a loaded model');
    runtime.startShadow(job.candidate);
    this.#deps.onChange?.();
    if (job.record.mode === 'shadow') {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(signal.reason);
        job.promote = () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
        signal.addEventListener('abort', onAbort, { once: true });
        if (signal.aborted) onAbort();
      });
    }
    job.promote = null;
    runtime.stopShadow();
    this.#advance(job, { type: 'promoted' }, this.#switchPatch());
  }

  async #active(job: Job, signal: AbortSignal): Promise<void> {
    const { storage, runtime } = this.#deps;
    const { record } = job;
    const candidate = job.candidate;
    if (!candidate || record.slot === null) throw new ModelUpdateError('internal_error', 'active without a model');
    // The record says `active` (persisted) before anything switches: a restart from here reverts.
    storage.activate(record.slot);
    job.switched = true;
    job.previousHandle = await runtime.activate(candidate);
    this.#deps.onChange?.();
    const verdict = await runtime.healthCheck({
      model: candidate,
      previous: job.previousHandle,
      manifest: record.signed.release.manifest,
      signal,
    });
    signal.throwIfAborted();
    const health: JsonObject = { ...verdict.observation, budgetMs: verdict.budgetMs };
    if (!verdict.ok) throw new ModelUpdateError(verdict.code, verdict.reason, { health });
    const release = record.signed.release;
    this.#advance(job, { type: 'healthy' }, {}, { health });
    storage.recordCommit(release.name, release.releaseCounter, release.sha256);
    this.#counters.committed++;
    const previous = job.previousHandle;
    job.previousHandle = null;
    job.candidate = null;
    if (previous && previous !== candidate) await runtime.release(previous).catch(() => {});
    this.#deps.onChange?.();
  }

  report(): ReportedModel {
    const { runtime, storage } = this.#deps;
    const record = this.#state.record;
    const active = runtime.active();
    const name = active?.name ?? record?.target.name;
    const highest = name === undefined ? undefined : storage.readTable().highest[name]?.counter;
    const reason = record?.code ? `${record.code}: ${record.reason ?? ''}` : record?.reason;
    return {
      active,
      previous: this.#state.previous,
      shadow: runtime.shadow(),
      update: record
        ? {
            rolloutId: record.rolloutId,
            target: record.target,
            state: record.state,
            ...(record.code ? { code: record.code.slice(0, 64) } : {}),
            ...(reason ? { reason: reason.slice(0, 1024) } : {}),
          }
        : null,
      ...(this.#state.ignored
        ? {
            ignored: {
              reason: this.#state.ignored.reason,
              rolloutId: this.#state.ignored.rolloutId,
              target: this.#state.ignored.target,
              at: this.#state.ignored.at,
            },
          }
        : {}),
      ...(highest !== undefined ? { highestReleaseCounter: highest } : {}),
    };
  }

  record(): UpdateRecord | null {
    return this.#state.record;
  }

  async idle(): Promise<void> {
    for (;;) {
      await this.#queue;
      const job = this.#job;
      if (!job) return;
      await job.done;
    }
  }

  async stop(): Promise<void> {
    this.#stopping ??= new AbortController();
    this.#stopping.abort();
    const job = this.#job;
    if (job) {
      job.controller.abort();
      await job.done;
    }
    await this.#queue;
  }

  stats(): ModelManagerStats {
    return { ...this.#counters };
  }
}
