/** Time as the agent sees it. Injected everywhere so tests and the simulator control it. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/** A timer handle: whatever `setTimeout` returns for the injected implementation. */
export type TimerHandle = unknown;

/** Timer functions, injected so tests and the simulator can drive time. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemClock: Clock = { now: () => Date.now() };

export const systemTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};
