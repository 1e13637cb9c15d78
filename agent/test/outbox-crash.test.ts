import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openFileOutbox, readOutboxDir } from '../src/outbox-file.ts';

const writer = fileURLToPath(new URL('./fixtures/outbox-writer.ts', import.meta.url));
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-crash-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

type Steps = { P: Set<string>; A: Set<string>; B: Set<string>; K: Set<string> };

/** Runs the writer until it reported `appends` appends, then SIGKILLs it. */
function runAndKill(appends: number, mode: 'backlog' | 'churn'): Promise<Steps> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', writer, dir, mode], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const steps: Steps = { P: new Set(), A: new Set(), B: new Set(), K: new Set() };
    let buffered = '';
    let stderr = '';
    let killed = false;
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const [kind, id] = line.split(' ') as [keyof Steps, string];
        steps[kind].add(id);
      }
      if (!killed && steps.A.size >= appends) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    // 'close', not 'exit': only then has every line the writer printed before dying been read.
    child.on('close', (code, signal) => {
      if (signal === 'SIGKILL') resolve(steps);
      else reject(new Error(`writer exited with ${code}: ${stderr}`));
    });
  });
}

const number = (id: string) => Number(id.split('-')[1]);

describe('outbox under kill -9', () => {
  it.each([
    ['a growing backlog', 'backlog', 900],
    ['constant compaction', 'churn', 300],
  ] as const)(
    'keeps every appended and unacknowledged message, in order, and none of the acknowledged, with %s',
    async (_name, mode, minimum) => {
      const steps = await runAndKill(1500, mode);
      const { entries, recovery } = readOutboxDir(dir);
      const stored = entries.map((entry) => entry.msgId);
      const storedSet = new Set(stored);

      // Appended, and no ack even started: must be there.
      const mustHave = [...steps.A].filter((id) => !steps.B.has(id));
      expect(mustHave.length).toBeGreaterThan(minimum);
      for (const id of mustHave) expect(storedSet.has(id), id).toBe(true);
      // Acked: must be gone.
      for (const id of steps.K) expect(storedSet.has(id), id).toBe(false);
      // Nothing that was never about to be appended.
      for (const id of stored) expect(steps.P.has(id), id).toBe(true);
      // FIFO per lane.
      for (const lane of ['telemetry', 'events'] as const) {
        const numbers = entries.filter((entry) => entry.lane === lane).map((entry) => number(entry.msgId));
        expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
      }
      expect(recovery.corruptRecords).toBe(0);

      // Now a power cut tears the last record: at most that one record's effect is lost.
      const segments = readdirSync(dir).filter((name) => name.endsWith('.log'));
      const last = path.join(dir, segments.sort().at(-1)!);
      truncateSync(last, readFileSync(last).length - 5);
      const torn = readOutboxDir(dir);
      expect(torn.recovery.tornTailBytes).toBeGreaterThan(0);
      const tornIds = new Set(torn.entries.map((entry) => entry.msgId));
      const difference =
        [...storedSet].filter((id) => !tornIds.has(id)).length + [...tornIds].filter((id) => !storedSet.has(id)).length;
      expect(difference).toBeLessThanOrEqual(1);

      // The agent reopens it, keeps going, and a second reopen sees the same plus the new message.
      const reopened = openFileOutbox({ dir, maxBytes: 8 * 1024 * 1024, fsync: 'always' });
      expect(new Set([...reopened.entries()].map((entry) => entry.msgId))).toEqual(tornIds);
      reopened.append({ channel: 'events', msgId: 'after-crash-1', payload: '{}' });
      reopened.close();
      const final = readOutboxDir(dir);
      expect(final.entries.map((entry) => entry.msgId)).toContain('after-crash-1');
      expect(final.entries).toHaveLength(tornIds.size + 1);
      expect(final.recovery.tornTailBytes).toBe(0);
    },
  );
});
