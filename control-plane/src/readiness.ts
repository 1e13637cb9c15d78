import {
  READINESS_CHECKS,
  type ReadinessCheck,
  type ReadinessCheckName,
  type ReadyzResponse,
} from '@edgeloop/protocol';
import type { Logger } from 'pino';
import { type DiskState, formatBytes } from './disk-monitor.ts';
import type { MetricsRegistry } from './metrics.ts';
import type { Timers } from './sweeper.ts';

/*
 * Readiness (`GET /readyz`): whether this control plane can take work now, as opposed to
 * /healthz, which says only that the process answers. Four checks, each named in the answer:
 *
 *   database  a write would be accepted (SQLite: BEGIN IMMEDIATE; ROLLBACK, PostgreSQL: a write
 *             statement that touches no row), see Store.probeWrite;
 *   disk      free space of the data directory is above the watermark (disk-monitor.ts);
 *   mqtt      the MQTT listener is listening (with an external broker: both connections to it are up);
 *   ingest    no ingest batch failed to commit within the last `flushErrorWindowMs`.
 *
 * assessReadiness is pure (readings in, report out); createReadiness takes the readings, keeps the
 * latest report for the gauges (refreshed every interval) and logs when readiness changes.
 */

export type DatabaseReading = { readonly ok: true } | { readonly ok: false; readonly error: string };

export type ReadinessReadings = {
  readonly now: number;
  readonly database: DatabaseReading;
  readonly disk: DiskState;
  readonly mqtt: MqttReading;
  readonly lastFlushError: { readonly at: number; readonly message: string } | null;
  readonly flushErrorWindowMs: number;
};

/** The embedded broker's listener, or the connections to an external broker (--broker-url). */
export type MqttReading =
  | { readonly listening: boolean; readonly port: number | null }
  | { readonly external: string; readonly connected: boolean };

export type ReadinessReport = ReadyzResponse & { readonly checkedAt: number };

function databaseCheck(reading: DatabaseReading): ReadinessCheck {
  return reading.ok
    ? { name: 'database', ok: true, detail: 'writable' }
    : { name: 'database', ok: false, detail: `not writable: ${reading.error}` };
}

function diskCheck(disk: DiskState): ReadinessCheck {
  const mark = formatBytes(disk.minFreeBytes);
  if (disk.low) {
    return {
      name: 'disk',
      ok: false,
      detail: `${disk.reason ?? 'low'}; uploads and other writes answer 507 and ingest holds publishers until space returns`,
    };
  }
  if (disk.reading === null) {
    return { name: 'disk', ok: true, detail: `free space unknown${disk.statfsError ? ` (${disk.statfsError})` : ''}` };
  }
  const { freeBytes, totalBytes } = disk.reading;
  return {
    name: 'disk',
    ok: true,
    detail: `${formatBytes(freeBytes)} free of ${formatBytes(totalBytes)} (watermark ${mark})`,
  };
}

function mqttCheck(mqtt: MqttReading): ReadinessCheck {
  if ('external' in mqtt) {
    return mqtt.connected
      ? { name: 'mqtt', ok: true, detail: `connected to the external broker ${mqtt.external}` }
      : { name: 'mqtt', ok: false, detail: `not connected to the external broker ${mqtt.external} (reconnecting)` };
  }
  return mqtt.listening
    ? { name: 'mqtt', ok: true, detail: `listening${mqtt.port === null ? '' : ` on port ${mqtt.port}`}` }
    : { name: 'mqtt', ok: false, detail: 'the MQTT listener is not listening' };
}

function ingestCheck(readings: ReadinessReadings): ReadinessCheck {
  const failure = readings.lastFlushError;
  if (failure !== null && readings.now - failure.at < readings.flushErrorWindowMs) {
    const ago = Math.max(0, Math.round((readings.now - failure.at) / 1000));
    return { name: 'ingest', ok: false, detail: `a batch failed to commit ${ago} s ago: ${failure.message}` };
  }
  return {
    name: 'ingest',
    ok: true,
    detail: `committing (no failed batch in the last ${Math.round(readings.flushErrorWindowMs / 1000)} s)`,
  };
}

/** The readiness report of one set of readings: ok only when every check passes. */
export function assessReadiness(readings: ReadinessReadings): ReadinessReport {
  const checks: ReadinessCheck[] = [
    databaseCheck(readings.database),
    diskCheck(readings.disk),
    mqttCheck(readings.mqtt),
    ingestCheck(readings),
  ];
  const failing = checks.filter((check) => !check.ok).map((check) => check.name);
  const report: ReadinessReport = { ok: failing.length === 0, failing, checks, checkedAt: readings.now };
  if (failing.length === 0) return report;
  const message = `not ready: ${checks
    .filter((check) => !check.ok)
    .map((check) => `${check.name} (${check.detail})`)
    .join('; ')}`;
  return { ...report, error: { code: 'unavailable', message } };
}

export type ReadinessDeps = {
  /** Resolves when the database would accept a write; rejects with why not. */
  readonly probeDatabase: () => Promise<void>;
  /** Reads free disk now. */
  readonly disk: { poll(): DiskState };
  readonly mqtt: () => MqttReading;
  readonly clock: { now(): number };
  readonly timers: Timers;
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
  readonly intervalMs: number;
  readonly flushErrorWindowMs: number;
};

export type Readiness = {
  /** Refreshes the report every interval (the gauges read it). */
  start(): void;
  stop(): void;
  /** Probes now (concurrent callers share one probe) and returns the report. */
  check(): Promise<ReadinessReport>;
  /** The latest report; null before the first check. */
  current(): ReadinessReport | null;
  /** An ingest batch failed to commit (the ingest check fails for the window). */
  noteFlushError(error: unknown): void;
};

export function createReadiness(deps: ReadinessDeps): Readiness {
  let latest: ReadinessReport | null = null;
  let lastFlushError: ReadinessReadings['lastFlushError'] = null;
  let running: Promise<ReadinessReport> | null = null;
  let handle: unknown = null;

  deps.metrics.gauge('edgeloop_ready', '1 when every readiness check passes (GET /readyz is 200)', () =>
    latest === null ? Number.NaN : latest.ok ? 1 : 0,
  );
  deps.metrics.gauge('edgeloop_ready_check', '1 when this readiness check passes, 0 when it fails', () =>
    READINESS_CHECKS.map((name: ReadinessCheckName) => {
      const check = latest?.checks.find((candidate) => candidate.name === name);
      return [{ check: name }, check === undefined ? Number.NaN : check.ok ? 1 : 0] as const;
    }),
  );

  const probe = async (): Promise<ReadinessReport> => {
    let database: DatabaseReading;
    try {
      await deps.probeDatabase();
      database = { ok: true };
    } catch (error) {
      database = { ok: false, error: error instanceof Error ? error.message : String(error) };
    }
    const report = assessReadiness({
      now: deps.clock.now(),
      database,
      disk: deps.disk.poll(),
      mqtt: deps.mqtt(),
      lastFlushError,
      flushErrorWindowMs: deps.flushErrorWindowMs,
    });
    const before = latest;
    latest = report;
    if (before !== null && (before.ok !== report.ok || before.failing.join() !== report.failing.join())) {
      if (report.ok) deps.logger.info('ready again: every readiness check passes');
      else deps.logger.warn({ failing: report.failing, message: report.error?.message }, 'not ready');
    }
    return report;
  };

  const check = () => {
    running ??= probe().finally(() => {
      running = null;
    });
    return running;
  };

  return {
    start() {
      handle ??= deps.timers.setInterval(() => {
        check().catch((error: unknown) => deps.logger.error({ err: error }, 'readiness check failed'));
      }, deps.intervalMs);
    },
    stop() {
      if (handle !== null) deps.timers.clearInterval(handle);
      handle = null;
    },
    check,
    current: () => latest,
    noteFlushError(error) {
      lastFlushError = {
        at: deps.clock.now(),
        message: (error instanceof Error ? error.message : String(error)).slice(0, 300),
      };
    },
  };
}
