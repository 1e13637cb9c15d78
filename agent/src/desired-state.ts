import { closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import { type Desired, decode, type JsonObject, type Reported } from '@edgeloop/protocol';
import { type Logger, silentLogger } from './logger.ts';
import type { Publisher } from './publisher.ts';

/*
 * Desired state (device twin). The control plane publishes a retained Desired with an increasing
 * `version`; the agent applies each version once, in order:
 *   1. telemetryIntervalS (absent: back to the local config's interval),
 *   2. config (a free JSON object, reported back as applied),
 *   3. every registered applier, in registration order (the model manager plugs in here for
 *      `model`; parts nobody handles are left alone).
 * An applier that throws is counted and reported through `onApplyError` (the agent turns it into
 * an `agent.fault` event); the version still counts as applied so a bad desired cannot loop.
 * The last applied desired is persisted (temp file + fsync + rename) so a restart re-applies it
 * before the broker re-delivers the retained message, which is then ignored as not newer.
 * A Reported message follows every applied version and every connect (`report()`).
 */

export interface DesiredStore {
  load(): Desired | null;
  save(desired: Desired): void;
}

/** Keeps the last applied desired in one JSON file, written atomically. */
export function createFileDesiredStore(file: string, logger: Logger = silentLogger): DesiredStore {
  return {
    load() {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
          logger.warn({ err: error, file }, 'cannot read desired');
        return null;
      }
      const decoded = decode('desired', text);
      if (!decoded.ok) {
        logger.warn({ file, error: decoded.error }, 'stored desired state is invalid; ignored');
        return null;
      }
      return decoded.value;
    },
    save(desired) {
      writeFileAtomic(file, JSON.stringify(desired));
    },
  };
}

export function createMemoryDesiredStore(initial: Desired | null = null): DesiredStore {
  let stored = initial;
  return {
    load: () => stored,
    save(desired) {
      stored = desired;
    },
  };
}

/** Temp file + fsync + rename + fsync of the directory: the file is either old or new. */
export function writeFileAtomic(file: string, text: string, options: { readonly mode?: number } = {}): void {
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true });
  const temp = `${file}.tmp`;
  const fd = openSync(temp, 'w', options.mode ?? 0o666);
  try {
    // A temp file left by a crash keeps its old mode: set it (a secret's 0600) before writing.
    if (options.mode !== undefined) fchmodSync(fd, options.mode);
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, file);
  let dirFd: number | undefined;
  try {
    dirFd = openSync(dir, 'r');
    fsyncSync(dirFd);
  } catch {
    // best effort on filesystems that refuse a directory fsync
  } finally {
    if (dirFd !== undefined) closeSync(dirFd);
  }
}

export type DesiredApplier = (
  desired: Desired,
  context: { readonly previous: Desired | null; readonly signal: AbortSignal },
) => void | Promise<void>;

/** Parts of Reported other modules fill in (model state, execution providers). */
export type ReportedExtras = Partial<Pick<Reported, 'model' | 'providers'>>;

export type DesiredStateStats = {
  readonly appliedVersion: number;
  readonly applied: number;
  readonly ignored: number;
  readonly applierErrors: number;
  readonly reports: number;
};

export interface DesiredState {
  /** Re-applies the persisted desired state, if any. */
  start(): Promise<void>;
  /** Applies a desired message if its version is newer than the last applied. Never rejects. */
  handle(desired: Desired): Promise<void>;
  registerApplier(name: string, applier: DesiredApplier): void;
  addReportSource(source: () => ReportedExtras): void;
  /** Publishes a Reported message now. */
  report(): void;
  readonly appliedVersion: number;
  readonly current: Desired | null;
  stats(): DesiredStateStats;
  stop(): void;
}

export type DesiredStateDeps = {
  readonly store: DesiredStore;
  readonly publisher: Publisher;
  readonly agentVersion: string;
  readonly hardware: Reported['hardware'];
  readonly telemetry: { setIntervalS(seconds: number): void; readonly intervalS: number };
  /** The local config's telemetry interval, used when desired has none. */
  readonly defaultTelemetryIntervalS: () => number;
  readonly onApplyError?: (applier: string, desired: Desired, error: unknown) => void;
  readonly logger?: Logger;
};

export function createDesiredState(deps: DesiredStateDeps): DesiredState {
  return new DesiredStateMachine(deps);
}

class DesiredStateMachine implements DesiredState {
  readonly #deps: DesiredStateDeps;
  readonly #log: Logger;
  readonly #appliers: Array<{ name: string; apply: DesiredApplier }> = [];
  readonly #sources: Array<() => ReportedExtras> = [];
  /** Created on first use: most simulated devices never run an applier. */
  #controller: AbortController | null = null;
  #current: Desired | null = null;
  #appliedVersion = 0;
  #appliedConfig: JsonObject = {};
  #queue: Promise<void> = Promise.resolve();
  readonly #counters = { applied: 0, ignored: 0, applierErrors: 0, reports: 0 };

  constructor(deps: DesiredStateDeps) {
    this.#deps = deps;
    this.#log = deps.logger ? deps.logger.child({ component: 'desired' }) : silentLogger;
  }

  async #apply(desired: Desired, persist: boolean): Promise<void> {
    const deps = this.#deps;
    const previous = this.#current;
    deps.telemetry.setIntervalS(desired.telemetryIntervalS ?? deps.defaultTelemetryIntervalS());
    this.#appliedConfig = desired.config ?? {};
    for (const { name, apply } of this.#appliers) {
      this.#controller ??= new AbortController();
      try {
        await apply(desired, { previous, signal: this.#controller.signal });
      } catch (error) {
        this.#counters.applierErrors += 1;
        this.#log.error({ err: error, applier: name, version: desired.version }, 'desired applier failed');
        deps.onApplyError?.(name, desired, error);
      }
    }
    this.#current = desired;
    this.#appliedVersion = desired.version;
    this.#counters.applied += 1;
    if (persist) {
      try {
        deps.store.save(desired);
      } catch (error) {
        this.#log.error({ err: error }, 'cannot persist desired state');
      }
    }
  }

  #enqueue(work: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(work).catch((error: unknown) => {
      this.#log.error({ err: error }, 'desired state update failed');
    });
    this.#queue = next;
    return next;
  }

  start(): Promise<void> {
    return this.#enqueue(async () => {
      const stored = this.#deps.store.load();
      if (stored && stored.version > this.#appliedVersion) await this.#apply(stored, false);
    });
  }

  handle(desired: Desired): Promise<void> {
    return this.#enqueue(async () => {
      if (desired.version <= this.#appliedVersion && this.#current !== null) {
        this.#counters.ignored += 1;
        return;
      }
      await this.#apply(desired, true);
      this.report();
    });
  }

  registerApplier(name: string, applier: DesiredApplier): void {
    this.#appliers.push({ name, apply: applier });
  }

  addReportSource(source: () => ReportedExtras): void {
    this.#sources.push(source);
  }

  report(): void {
    let extras: ReportedExtras = {};
    for (const source of this.#sources) {
      try {
        extras = { ...extras, ...source() };
      } catch (error) {
        this.#log.error({ err: error }, 'report source failed');
      }
    }
    const deps = this.#deps;
    const result = deps.publisher.publish('reported', {
      agentVersion: deps.agentVersion,
      desiredVersion: this.#appliedVersion,
      telemetryIntervalS: deps.telemetry.intervalS,
      config: this.#appliedConfig,
      hardware: deps.hardware,
      ...extras,
    });
    if (result.ok) this.#counters.reports += 1;
    else this.#log.error({ error: result.error }, 'reported not published');
  }

  get appliedVersion(): number {
    return this.#appliedVersion;
  }

  get current(): Desired | null {
    return this.#current;
  }

  stats(): DesiredStateStats {
    return { appliedVersion: this.#appliedVersion, ...this.#counters };
  }

  stop(): void {
    this.#controller ??= new AbortController();
    this.#controller.abort();
  }
}
