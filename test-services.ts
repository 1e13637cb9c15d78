import { inject } from 'vitest';

/*
 * External services some suites need (PostgreSQL today; Mosquitto for the scale-out suites). The
 * global setup (vitest.global-setup.ts) probes each one once per run and hands the result to the
 * tests through vitest's provide/inject. A suite asks `serviceGate('postgres')`:
 *   - reachable: the suite runs;
 *   - unreachable, CI unset: the suite is skipped, and the run prints one line naming the skipped
 *     suites and the reason;
 *   - unreachable, CI=true: the global setup fails the whole run, naming the service.
 */

export const SERVICE_NAMES = ['postgres', 'mosquitto'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export type ServiceStatus = {
  /** What people call it, for messages: PostgreSQL, Mosquitto. */
  readonly label: string;
  /** Where it was probed (a connection URL). */
  readonly url: string;
  /** Null when it answered; otherwise why not. */
  readonly unreachable: string | null;
};

declare module 'vitest' {
  export interface ProvidedContext {
    services: Record<ServiceName, ServiceStatus>;
  }
}

export type ServiceGate = ServiceStatus & {
  /** True when the suite should run. */
  readonly run: boolean;
};

/** Whether a suite that needs `name` runs in this test run (and where the service is). */
export function serviceGate(name: ServiceName): ServiceGate {
  const status = inject('services')[name];
  return { ...status, run: status.unreachable === null };
}
