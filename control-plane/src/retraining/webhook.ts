import { createHmac } from 'node:crypto';
import {
  RETRAINING_DELIVERY_HEADER,
  RETRAINING_EVENT,
  RETRAINING_EVENT_HEADER,
  RETRAINING_SIGNATURE_HEADER,
  type RetrainingReason,
  type RetrainingWebhookPayload,
} from '@edgeloop/protocol';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit.ts';
import type { RetrainingDeliveryRecord, RetrainingRunRecord, RetrainingRunRepository } from '../db/repositories.ts';
import type { MetricsRegistry } from '../metrics.ts';

/*
 * The retraining webhook: a JSON POST signed like GitHub's X-Hub-Signature-256, retried with capped
 * exponential backoff and jitter. Deliveries run off the request and ingest paths: the trigger loop
 * (or a manual run) marks a run `delivering` with a due time, and the deliverer sends what is due,
 * a few at a time, each with a timeout. Every attempt is logged on the run (status code, error,
 * duration); the run ends `delivered` on a 2xx, or `failed` after maxAttempts (or at once on a
 * refusal that a retry of the same bytes cannot change: a 4xx other than 408, 425 and 429, or a
 * redirect, which is never followed).
 */

/** The actor of the trigger loop's and the deliverer's own changes in the audit log. */
export const SYSTEM_RETRAINING = 'system:retraining';

/** `sha256=<hex HMAC-SHA256 of body under secret>`: the X-Edgeloop-Signature-256 value. */
export function signatureOf(secret: string, body: string | Uint8Array): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export type Backoff = { readonly baseMs: number; readonly maxMs: number };

/**
 * The wait after the `attempt`-th failed attempt (1 for the first): base * 2^(attempt-1), capped
 * at max, with equal jitter (half fixed, half random) so that receivers coming back are not hit by
 * every control plane at the same instant. `random` returns [0, 1).
 */
export function retryDelayMs(attempt: number, backoff: Backoff, random: () => number): number {
  const ceiling = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Whether a failed answer may succeed if the same request is sent again. */
export function isRetryableStatus(status: number | null): boolean {
  if (status === null) return true;
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

export function runLinks(baseUrl: string, runId: string) {
  const run = `${baseUrl}/api/v1/retraining/runs/${encodeURIComponent(runId)}`;
  return { run, claim: `${run}/claim`, complete: `${run}/complete` };
}

/** The webhook body of a run (the same bytes on every attempt of the same run and base URL). */
export function buildWebhookPayload(run: RetrainingRunRecord, baseUrl: string): RetrainingWebhookPayload {
  const at = run.datasetId.lastIndexOf('@');
  return {
    event: RETRAINING_EVENT,
    runId: run.runId,
    modelName: run.modelName,
    reason: run.reason as RetrainingReason,
    dataset: { id: run.datasetId, name: run.datasetId.slice(0, at), version: Number(run.datasetId.slice(at + 1)) },
    exportUrls: run.exportUrls,
    parentModel: run.parentModel,
    links: runLinks(baseUrl, run.runId),
    createdAt: run.createdAt,
  };
}

export type WebhookDelivererDeps = {
  readonly runs: Pick<RetrainingRunRepository, 'due' | 'recordDelivery'>;
  /** The signing secret of a model name's policy, opened; null when there is none (the run fails). */
  readonly secretOf: (modelName: string) => Promise<string | null>;
  readonly fetch: typeof fetch;
  readonly clock: { now(): number };
  readonly random?: () => number;
  readonly baseUrl: () => string;
  readonly maxAttempts: number;
  readonly backoff: Backoff;
  /** Per attempt: no answer within this long counts as a failed attempt. */
  readonly timeoutMs: number;
  /** Attempts in flight at once. */
  readonly concurrency: number;
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
  readonly audit?: AuditLog;
  /** After each recorded attempt (events, tests). */
  readonly onAttempt?: (run: RetrainingRunRecord) => void;
  readonly userAgent?: string;
  /** Aborted when the control plane stops: an attempt in flight is dropped unrecorded (it is retried after a restart). */
  readonly signal?: AbortSignal;
};

/** Attempts kept in a run's delivery log. */
export const DELIVERIES_KEPT = 20;
/** Bytes of a failed answer's body kept in the error. */
const ERROR_BODY_BYTES = 200;

async function excerpt(response: Response): Promise<string> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < ERROR_BODY_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } catch {
    // A body that broke off: what came is enough.
  } finally {
    reader.cancel().catch(() => {});
  }
  const text = Buffer.concat(chunks).toString('utf8', 0, Math.min(size, ERROR_BODY_BYTES));
  return text.replace(/\s+/g, ' ').trim();
}

function describeError(error: unknown): string {
  if (error instanceof Error && error.name === 'TimeoutError') return 'no answer in time';
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const code = (cause as { code?: unknown })?.code;
  const message = cause instanceof Error ? cause.message : String(cause);
  return typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message;
}

export type WebhookDeliverer = {
  /** Sends every attempt that is due now (at most `concurrency` at once); resolves with how many were made. */
  deliverDue(): Promise<number>;
  /** deliverDue without waiting (a new run); a pass under way picks it up, or another follows it. */
  kick(): void;
  /** Resolves when no pass is under way (tests, shutdown). */
  idle(): Promise<void>;
};

export function createWebhookDeliverer(deps: WebhookDelivererDeps): WebhookDeliverer {
  const random = deps.random ?? Math.random;
  const attemptsTotal = deps.metrics.counter(
    'edgeloop_retraining_webhook_attempts_total',
    'Retraining webhook attempts, by outcome (delivered, retry, failed)',
  );
  const attemptSeconds = deps.metrics.summary(
    'edgeloop_retraining_webhook_attempt_seconds',
    'Duration of one retraining webhook attempt (seconds)',
  );

  const attempt = async (run: RetrainingRunRecord): Promise<void> => {
    const at = deps.clock.now();
    const started = performance.now();
    const number = run.attempts + 1;
    let statusCode: number | null = null;
    let error: string | null = null;
    let retryable = true;
    const secret = await deps.secretOf(run.modelName);
    if (run.webhookUrl === null) {
      error = 'the run has no webhook';
      retryable = false;
    } else if (secret === null) {
      error = 'no webhook secret can be opened for this policy (set it again with the policy)';
      retryable = false;
    } else {
      const body = JSON.stringify(buildWebhookPayload(run, deps.baseUrl()));
      try {
        const response = await deps.fetch(run.webhookUrl, {
          method: 'POST',
          body,
          redirect: 'manual',
          signal: deps.signal
            ? AbortSignal.any([AbortSignal.timeout(deps.timeoutMs), deps.signal])
            : AbortSignal.timeout(deps.timeoutMs),
          headers: {
            'content-type': 'application/json',
            'user-agent': deps.userAgent ?? 'edgeloop-retraining',
            [RETRAINING_EVENT_HEADER]: RETRAINING_EVENT,
            [RETRAINING_DELIVERY_HEADER]: `${run.runId}.${number}`,
            [RETRAINING_SIGNATURE_HEADER]: signatureOf(secret, body),
          },
        });
        statusCode = response.status;
        if (response.status >= 200 && response.status < 300) {
          response.body?.cancel().catch(() => {});
        } else {
          const text = await excerpt(response);
          error = `HTTP ${response.status}${text ? `: ${text}` : ''}`;
          retryable = isRetryableStatus(response.status);
          if (response.status >= 300 && response.status < 400) error = `${error} (redirects are not followed)`;
        }
      } catch (caught) {
        error = describeError(caught);
      }
    }
    // Stopping: the run stays as it was (delivering, same attempts) and is sent again after a restart.
    if (deps.signal?.aborted) return;
    const durationMs = Math.round((performance.now() - started) * 10) / 10;
    attemptSeconds.observe(durationMs / 1000);
    const delivery: RetrainingDeliveryRecord = { at, statusCode, error, durationMs };
    const delivered = error === null;
    const last = !delivered && (!retryable || number >= deps.maxAttempts);
    const status = delivered ? 'delivered' : last ? 'failed' : 'delivering';
    const nextAttemptAt = status === 'delivering' ? at + retryDelayMs(number, deps.backoff, random) : null;
    const recorded = await deps.runs.recordDelivery(run.runId, run.attempts, {
      status,
      nextAttemptAt,
      delivery,
      keep: DELIVERIES_KEPT,
    });
    if (!recorded) return; // Claimed, or recorded by another replica, meanwhile.
    attemptsTotal.inc({ outcome: delivered ? 'delivered' : last ? 'failed' : 'retry' });
    if (delivered || last) {
      await deps.audit?.record({
        at,
        actor: SYSTEM_RETRAINING,
        actorRole: 'system',
        action: delivered ? 'retraining.webhook_delivered' : 'retraining.webhook_failed',
        resource: 'retraining',
        target: run.runId,
        requestId: null,
        source: null,
        status: statusCode,
        summary: { modelName: run.modelName, attempts: number, ...(error ? { error: error.slice(0, 120) } : {}) },
      });
    }
    if (last) {
      deps.logger.warn(
        { runId: run.runId, modelName: run.modelName, attempts: number, statusCode, error },
        'retraining webhook failed',
      );
    }
    deps.onAttempt?.(recorded);
  };

  let running: Promise<number> | null = null;
  let again = false;

  const pass = async (): Promise<number> => {
    let made = 0;
    for (;;) {
      const due = await deps.runs.due(deps.clock.now(), deps.concurrency * 4);
      if (due.length === 0) return made;
      const queue = [...due];
      const workers = Array.from({ length: Math.min(deps.concurrency, queue.length) }, async () => {
        for (let run = queue.shift(); run; run = queue.shift()) {
          try {
            await attempt(run);
            made++;
          } catch (error) {
            deps.logger.error({ err: error, runId: run.runId }, 'retraining webhook attempt not recorded');
          }
        }
      });
      await Promise.all(workers);
      // Runs whose retry is not yet due stay for a later pass; only a full page means more are due now.
      if (due.length < deps.concurrency * 4) return made;
    }
  };

  const deliverDue = (): Promise<number> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      let total = 0;
      do {
        again = false;
        total += await pass();
      } while (again);
      return total;
    })().finally(() => {
      running = null;
    });
    return running;
  };

  return {
    deliverDue,
    kick() {
      deliverDue().catch((error: unknown) => deps.logger.error({ err: error }, 'retraining webhook pass failed'));
    },
    async idle() {
      while (running) await running.catch(() => 0);
    },
  };
}
