import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { SampleLimits, SampleStrategyKind } from '@edgeloop/protocol';
import { type DurableWrite, writeDurably } from './durable-write.ts';

/*
 * Capture limits: counts per rolling minute and hour, counts and encoded bytes per UTC day, for
 * the device (key '*') and per strategy. Counters live in one JSON file written atomically (temp +
 * fsync + rename) at every committed sample, so a restart, a crash or a reboot loop never resets
 * the day's budget.
 *
 * Two steps, because bytes are known only after encoding (off the hot path):
 *   admit()  in the vision loop: judged on counts (committed + reserved); reserves a slot.
 *   commit() in the encode worker: judged on bytes; records, or refuses ('budget'); then
 *   flush()  writes the counters (async I/O, fsync) before the sample goes to the spool, so a
 *            sample in the spool is always counted.
 *   release() when a reserved sample is lost before commit (queue full, encode failed).
 * A reservation is never persisted: a sample lost in a crash before commit never reached the spool.
 */

export type LimitVerdict = 'ok' | 'rate' | 'budget';

type Counter = { day: string; count: number; bytes: number; recent: number[]; reserved: number };

export type BudgetLeft = { readonly today: number | null; readonly bytesToday: number | null };

export interface Budget {
  admit(limits: SampleLimits, strategyLimits: SampleLimits | undefined, kind: SampleStrategyKind): LimitVerdict;
  release(kind: SampleStrategyKind): void;
  commit(
    limits: SampleLimits,
    strategyLimits: SampleLimits | undefined,
    kind: SampleStrategyKind,
    bytes: number,
  ): LimitVerdict;
  /** Persists the counters (atomically); resolves once they are on disk. */
  flush(): Promise<void>;
  /** What the device-wide daily caps still allow. */
  left(limits: SampleLimits): BudgetLeft;
  /** Committed counts of today, device-wide and per strategy (tests, stats). */
  today(): Readonly<Record<string, { count: number; bytes: number }>>;
}

export type BudgetDeps = {
  /** The counters file; null keeps them in memory (tests of selection, the simulator). */
  readonly file: string | null;
  readonly clock: { now(): number };
  readonly onPersistError?: (error: unknown) => void;
  /** How the counters file reaches the disk (default: writeDurably in this process, with fsync). */
  readonly write?: DurableWrite;
};

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DEVICE = '*';

export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export function createBudget(deps: BudgetDeps): Budget {
  const counters = new Map<string, Counter>();
  for (const [key, saved] of Object.entries(readCounters(deps.file))) {
    counters.set(key, { ...saved, reserved: 0 });
  }

  function counter(key: string, now: number): Counter {
    let c = counters.get(key);
    const day = utcDay(now);
    if (!c) {
      c = { day, count: 0, bytes: 0, recent: [], reserved: 0 };
      counters.set(key, c);
    } else if (c.day !== day) {
      c.day = day;
      c.count = 0;
      c.bytes = 0;
    }
    // Keep an hour of capture times; older ones never count again.
    let drop = 0;
    while (drop < c.recent.length && (c.recent[drop] as number) <= now - HOUR) drop++;
    if (drop > 0) c.recent.splice(0, drop);
    return c;
  }

  function countsVerdict(c: Counter, limits: SampleLimits | undefined, now: number): LimitVerdict {
    if (!limits) return 'ok';
    if (limits.perDay !== undefined && c.count + c.reserved >= limits.perDay) return 'budget';
    if (limits.bytesPerDay !== undefined && c.bytes >= limits.bytesPerDay) return 'budget';
    if (limits.perHour !== undefined && c.recent.length + c.reserved >= limits.perHour) return 'rate';
    if (limits.perMinute !== undefined) {
      let inMinute = c.reserved;
      for (let i = c.recent.length - 1; i >= 0 && (c.recent[i] as number) > now - MINUTE; i--) inMinute++;
      if (inMinute >= limits.perMinute) return 'rate';
    }
    return 'ok';
  }

  let writing: Promise<void> = Promise.resolve();
  if (deps.file !== null) mkdirSync(path.dirname(deps.file), { recursive: true });

  /** Temp file + fsync + rename + directory fsync, one write at a time. */
  function flush(): Promise<void> {
    const file = deps.file;
    if (file === null) return Promise.resolve();
    const out: Record<string, Omit<Counter, 'reserved'>> = {};
    for (const [key, c] of counters) out[key] = { day: c.day, count: c.count, bytes: c.bytes, recent: [...c.recent] };
    const text = JSON.stringify({ version: 1, counters: out });
    writing = writing.then(async () => {
      try {
        await (deps.write ?? writeDurably)(`${file}.tmp`, file, Buffer.from(text, 'utf8'), true);
      } catch (error) {
        deps.onPersistError?.(error);
      }
    });
    return writing;
  }

  return {
    admit(limits, strategyLimits, kind) {
      const now = deps.clock.now();
      const device = counter(DEVICE, now);
      const own = counter(kind, now);
      const verdict = countsVerdict(device, limits, now);
      if (verdict !== 'ok') return verdict;
      const ownVerdict = countsVerdict(own, strategyLimits, now);
      if (ownVerdict !== 'ok') return ownVerdict;
      device.reserved++;
      own.reserved++;
      return 'ok';
    },
    release(kind) {
      const device = counters.get(DEVICE);
      const own = counters.get(kind);
      if (device && device.reserved > 0) device.reserved--;
      if (own && own.reserved > 0) own.reserved--;
    },
    commit(limits, strategyLimits, kind, bytes) {
      this.release(kind);
      const now = deps.clock.now();
      const device = counter(DEVICE, now);
      const own = counter(kind, now);
      if (limits.bytesPerDay !== undefined && device.bytes + bytes > limits.bytesPerDay) return 'budget';
      if (strategyLimits?.bytesPerDay !== undefined && own.bytes + bytes > strategyLimits.bytesPerDay) return 'budget';
      for (const c of [device, own]) {
        c.count++;
        c.bytes += bytes;
        c.recent.push(now);
      }
      return 'ok';
    },
    flush,
    left(limits) {
      const c = counter(DEVICE, deps.clock.now());
      return {
        today: limits.perDay === undefined ? null : Math.max(0, limits.perDay - c.count),
        bytesToday: limits.bytesPerDay === undefined ? null : Math.max(0, limits.bytesPerDay - c.bytes),
      };
    },
    today() {
      const now = deps.clock.now();
      const out: Record<string, { count: number; bytes: number }> = {};
      for (const key of counters.keys()) {
        const c = counter(key, now);
        out[key] = { count: c.count, bytes: c.bytes };
      }
      return out;
    },
  };
}

function readCounters(file: string | null): Record<string, Omit<Counter, 'reserved'>> {
  if (file === null) return {};
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  try {
    const parsed = JSON.parse(text) as { counters?: Record<string, Partial<Counter>> };
    const out: Record<string, Omit<Counter, 'reserved'>> = {};
    for (const [key, c] of Object.entries(parsed.counters ?? {})) {
      if (typeof c?.day !== 'string') continue;
      out[key] = {
        day: c.day,
        count: Number(c.count) || 0,
        bytes: Number(c.bytes) || 0,
        recent: Array.isArray(c.recent) ? c.recent.filter((t): t is number => typeof t === 'number') : [],
      };
    }
    return out;
  } catch {
    // The file is written atomically, so this is damage from outside; start the day afresh.
    return {};
  }
}
