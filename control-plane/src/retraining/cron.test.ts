import { describe, expect, it } from 'vitest';
import { cronProblem, nextCronTime } from './cron.ts';

describe('cron schedules (croner)', () => {
  it('accepts 5- and 6-field expressions and names the field of one it refuses', () => {
    expect(cronProblem('0 3 * * 1')).toBeNull();
    expect(cronProblem('*/30 * * * * *')).toBeNull();
    expect(cronProblem('0 3 * * MON-FRI', 'Europe/Berlin')).toBeNull();
    expect(cronProblem('61 * * * *')).toMatch(/minute/);
    expect(cronProblem('0 3 * * 1', 'Mars/Olympus')).toMatch(/time zone/i);
  });

  it('gives the first time strictly after an instant, in the expression time zone', () => {
    const monday3 = Date.UTC(2026, 11, 7, 3, 0, 0);
    expect(nextCronTime('0 3 * * 1', undefined, Date.UTC(2026, 11, 3, 13, 0))).toBe(monday3);
    expect(nextCronTime('0 3 * * 1', undefined, monday3)).toBe(monday3 + 7 * 86_400_000);
    // 03:00 in Berlin in winter is 02:00 UTC.
    expect(nextCronTime('0 3 * * *', 'Europe/Berlin', Date.UTC(2026, 11, 3, 0, 0))).toBe(Date.UTC(2026, 11, 3, 2, 0));
  });
});
