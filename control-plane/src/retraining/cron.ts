import { Cron } from 'croner';

/*
 * Cron schedules of retraining policies, read by croner (see the README's "Libraries, and why"):
 * 5 or 6 fields, ranges, steps, names, L and W, in an IANA time zone (UTC by default). A schedule
 * is only ever asked for its next time after an instant: nothing here starts a timer.
 */

/** Why an expression (or its time zone) is refused; null when croner accepts it. */
export function cronProblem(expression: string, timezone?: string): string | null {
  try {
    new Cron(expression, { paused: true, timezone: timezone ?? 'UTC' }).nextRun(new Date(0));
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}

/** The first time of the schedule strictly after `after` (epoch ms), or null when it has none. */
export function nextCronTime(expression: string, timezone: string | undefined, after: number): number | null {
  const next = new Cron(expression, { paused: true, timezone: timezone ?? 'UTC' }).nextRun(new Date(after));
  return next ? next.getTime() : null;
}
