import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { NewAuditEntry } from '../db/audit.ts';
import { createMetricsRegistry } from '../metrics.ts';
import { createAuditLog } from './audit.ts';

const entry = (n: number) => ({
  actor: `tok-${n}`,
  actorRole: 'operator',
  action: 'POST /api/v1/devices',
  resource: 'devices',
  target: `cam-${n}`,
  requestId: null,
  source: null,
  status: 201,
  summary: {},
});

function setup(fail: (call: number) => boolean) {
  const metrics = createMetricsRegistry();
  const calls: NewAuditEntry[][] = [];
  const log = createAuditLog({
    repo: {
      append: async (entries) => {
        calls.push([...entries]);
        await new Promise((resolve) => setTimeout(resolve, 5));
        if (fail(calls.length)) throw new Error('disk I/O error');
      },
    },
    clock: { now: () => 1_700_000_000_000 },
    logger: pino({ level: 'silent' }),
    written: metrics.counter('audit_written_total', 'written'),
    failures: metrics.counter('audit_failures_total', 'failures'),
  });
  return { log, calls, metrics };
}

describe('audit log writer', () => {
  it('writes concurrent entries in shared appends, each once, and resolves every record after its batch', async () => {
    const { log, calls } = setup(() => false);
    await Promise.all(Array.from({ length: 60 }, (_, n) => log.record(entry(n))));
    const written = calls.flat().map((e) => e.target);
    expect(written.sort()).toEqual(Array.from({ length: 60 }, (_, n) => `cam-${n}`).sort());
    expect(calls.length).toBeLessThan(5);
    expect(calls.flat().every((e) => e.at === 1_700_000_000_000)).toBe(true);
  });

  it('a failed append is counted per entry and does not fail the callers; later entries are still written', async () => {
    const { log, calls, metrics } = setup((call) => call === 1);
    await Promise.all(Array.from({ length: 3 }, (_, n) => log.record(entry(n))));
    await log.record(entry(99));
    expect(calls.length).toBe(2);
    expect(calls[1]?.map((e) => e.target)).toEqual(['cam-99']);
    expect(metrics.render()).toMatch(/audit_failures_total 3/);
  });
});
