import type { Clock, Timers } from '../../src/clock.ts';

/** A clock and timers that move only when the test says so. */
export function createManualTime(start = 1_700_000_000_000) {
  let now = start;
  let nextId = 1;
  const pending = new Map<number, { at: number; callback: () => void }>();
  const clock: Clock = { now: () => now };
  const timers: Timers = {
    setTimeout(callback, ms) {
      const id = nextId++;
      pending.set(id, { at: now + Math.max(0, ms), callback });
      return id;
    },
    clearTimeout(handle) {
      pending.delete(handle as number);
    },
  };
  return {
    clock,
    timers,
    /** Moves time forward, firing due timers in order (also those they schedule). */
    advance(ms: number): void {
      const target = now + ms;
      for (;;) {
        let nextTimer: [number, { at: number; callback: () => void }] | undefined;
        for (const entry of pending) {
          if (entry[1].at <= target && (nextTimer === undefined || entry[1].at < nextTimer[1].at)) nextTimer = entry;
        }
        if (!nextTimer) break;
        pending.delete(nextTimer[0]);
        now = Math.max(now, nextTimer[1].at);
        nextTimer[1].callback();
      }
      now = target;
    },
    get pendingTimers(): number {
      return pending.size;
    },
  };
}
