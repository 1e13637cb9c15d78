import type { DeviceView, ServerEvent } from '@edgeloop/protocol';

/*
 * Live updates: one event stream for the whole console, its events handed to subscribers in
 * batches, at most one batch per animation frame, so a burst of thousands of events costs one
 * render per frame instead of one per event.
 */

export type Schedule = (run: () => void) => void;

/** Collects items and flushes them all at the next scheduled turn (one pending turn at most). */
export function createFrameBatcher<T>(flush: (items: T[]) => void, schedule: Schedule) {
  let queue: T[] = [];
  let pending = false;
  return {
    push(item: T) {
      queue.push(item);
      if (pending) return;
      pending = true;
      schedule(() => {
        pending = false;
        const items = queue;
        queue = [];
        if (items.length > 0) flush(items);
      });
    },
    get size() {
      return queue.length;
    },
  };
}

export type EventHub = {
  subscribe(listener: (batch: readonly ServerEvent[]) => void): () => void;
  /** Connection state, for the header: connecting, live, or retrying after a failure. */
  readonly state: () => 'connecting' | 'live' | 'retrying' | 'stopped';
  onState(listener: () => void): () => void;
  stop(): void;
};

/**
 * Keeps one event stream open (reopening it after a failure with a growing pause) and hands its
 * events out in per-frame batches.
 */
export function createEventHub(deps: {
  readonly open: (signal: AbortSignal, onOpen: () => void) => AsyncGenerator<ServerEvent, void, undefined>;
  readonly schedule: Schedule;
  readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
}): EventHub {
  const listeners = new Set<(batch: readonly ServerEvent[]) => void>();
  const stateListeners = new Set<() => void>();
  const controller = new AbortController();
  let state: 'connecting' | 'live' | 'retrying' | 'stopped' = 'connecting';
  const setState = (next: typeof state) => {
    if (state === next) return;
    state = next;
    for (const listener of stateListeners) listener();
  };
  const batcher = createFrameBatcher<ServerEvent>((batch) => {
    for (const listener of listeners) listener(batch);
  }, deps.schedule);

  const run = async () => {
    let pauseMs = 500;
    while (!controller.signal.aborted) {
      try {
        setState('connecting');
        const opened = () => {
          setState('live');
          pauseMs = 500;
        };
        for await (const event of deps.open(controller.signal, opened)) batcher.push(event);
      } catch {
        // Reopened below; the pages refetch what they show when the stream comes back.
      }
      if (controller.signal.aborted) break;
      setState('retrying');
      await deps.sleep(pauseMs, controller.signal);
      pauseMs = Math.min(pauseMs * 2, 15_000);
    }
    setState('stopped');
  };
  void run();

  return {
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    state: () => state,
    onState(listener) {
      stateListeners.add(listener);
      return () => stateListeners.delete(listener);
    },
    stop() {
      controller.abort();
    },
  };
}

/** What a batch of events changes in device rows, by device id (later events win). */
export type DevicePatch = Partial<Pick<DeviceView, 'status' | 'health' | 'healthReasons' | 'lastSeen'>>;

export function devicePatches(batch: readonly ServerEvent[]): Map<string, DevicePatch> {
  const patches = new Map<string, DevicePatch>();
  for (const event of batch) {
    const deviceId = event.data.deviceId;
    if (typeof deviceId !== 'string') continue;
    const patch = patches.get(deviceId) ?? {};
    if (event.type === 'device.online') Object.assign(patch, { status: 'online', lastSeen: event.at });
    else if (event.type === 'device.offline') Object.assign(patch, { status: 'offline' });
    else if (event.type === 'device.health') {
      const health = event.data.health;
      const reasons = event.data.reasons;
      if (health === 'healthy' || health === 'degraded' || health === 'offline' || health === 'unknown') {
        patch.health = health;
      }
      if (Array.isArray(reasons)) patch.healthReasons = reasons.filter((r): r is string => typeof r === 'string');
    } else continue;
    patches.set(deviceId, patch);
  }
  return patches;
}

/** The rows with the patches applied; the same array when nothing on it changed. */
export function applyDevicePatches(rows: DeviceView[], patches: ReadonlyMap<string, DevicePatch>): DeviceView[] {
  let changed = false;
  const next = rows.map((row) => {
    const patch = patches.get(row.id);
    if (!patch) return row;
    changed = true;
    return { ...row, ...patch };
  });
  return changed ? next : rows;
}

/** Whether a batch changes what the fleet counts show (enrolment, status, health). */
export function touchesFleet(batch: readonly ServerEvent[]): boolean {
  return batch.some((event) =>
    ['device.enrolled', 'device.revoked', 'device.online', 'device.offline', 'device.health'].includes(event.type),
  );
}

/** The page's clock and timer, bound (a bare `setTimeout` called as a method throws Illegal invocation). */
export const pageTimers = {
  now: () => Date.now(),
  setTimeout: (fn: () => void, ms: number): unknown => setTimeout(fn, ms),
};

/** Calls `run` at most once per `intervalMs`, trailing: the last request inside a pause still runs. */
export function createThrottle(
  run: () => void,
  intervalMs: number,
  timers: {
    now(): number;
    setTimeout(fn: () => void, ms: number): unknown;
  },
) {
  let last = Number.NEGATIVE_INFINITY;
  let timer: unknown = null;
  return () => {
    if (timer !== null) return;
    const wait = last + intervalMs - timers.now();
    if (wait <= 0) {
      last = timers.now();
      run();
      return;
    }
    timer = timers.setTimeout(() => {
      timer = null;
      last = timers.now();
      run();
    }, wait);
  };
}
