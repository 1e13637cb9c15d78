/*
 * Time as the control plane sees it: wall-clock milliseconds (Clock) and repeating timers
 * (Timers). Both come through deps, so tests drive them; these are the one definition of each.
 */

export type Clock = { now(): number };

export const systemClock: Clock = { now: () => Date.now() };

export type Timers = {
  setInterval(callback: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
};

/** Real intervals, unref'd: a timer alone never keeps the process alive. */
export const systemTimers: Timers = {
  setInterval: (callback, ms) => {
    const handle = setInterval(callback, ms);
    handle.unref();
    return handle;
  },
  clearInterval: (handle) => clearInterval(handle as ReturnType<typeof setInterval>),
};
