import type { DriftState } from '@edgeloop/protocol';
import type { Logger } from 'pino';
import { toSampleQuery } from '../datasets/service.ts';
import type { RetrainingPolicyRepository, RetrainingRunRepository, SampleRepository } from '../db/repositories.ts';
import type { MetricsRegistry } from '../metrics.ts';
import { createPeriodicTask } from '../sweeper.ts';
import type { Timers } from '../time.ts';
import { decideTrigger, type TriggerFacts } from './decide.ts';
import { parseStoredPolicy, type RetrainingService } from './service.ts';
import type { WebhookDeliverer } from './webhook.ts';

/*
 * The retraining trigger loop, on the leader only. Every `pollMs` it sends the webhook attempts
 * that are due; every `intervalMs` it reads each enabled policy's facts (the drift states of its
 * model name, the samples its dataset query matched since the last run, when that run was), asks
 * decideTrigger, and fires the runs it says. It reads the database and the drift monitor's
 * in-memory states only: nothing here runs on the ingest path, and a webhook receiver that hangs
 * holds up a delivery (bounded by its timeout), never a tick of ingest.
 */

export type RetrainingLoopDeps = {
  readonly service: Pick<RetrainingService, 'fire'>;
  readonly policies: Pick<RetrainingPolicyRepository, 'list'>;
  readonly runs: Pick<RetrainingRunRepository, 'latest'>;
  readonly samples: Pick<SampleRepository, 'count'>;
  readonly driftStates: () => readonly DriftState[];
  readonly deliverer: Pick<WebhookDeliverer, 'deliverDue'>;
  readonly isLeader: () => boolean;
  readonly clock: { now(): number };
  readonly timers: Timers;
  /** How often policies are evaluated (--retraining-interval-s). */
  readonly intervalMs: number;
  /** How often due webhook attempts are sent. */
  readonly pollMs: number;
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
};

export type RetrainingTickReport = {
  readonly leader: boolean;
  readonly evaluated: number;
  readonly fired: number;
  readonly attempts: number;
  readonly errors: number;
};

export type RetrainingLoop = {
  start(): void;
  stop(): void;
  /** One pass now: evaluate the policies (when their interval is due, or `force`) and send due attempts. */
  tick(options?: { readonly force?: boolean }): Promise<RetrainingTickReport>;
};

export function createRetrainingLoop(deps: RetrainingLoopDeps): RetrainingLoop {
  const fired = deps.metrics.counter('edgeloop_retraining_runs_total', 'Retraining runs fired, by reason');
  const errors = deps.metrics.counter(
    'edgeloop_retraining_trigger_errors_total',
    'Retraining policies that could not be evaluated or fired, by kind',
  );
  let lastEvaluation = Number.NEGATIVE_INFINITY;
  /** The last refusal logged per model name (a dataset that matches nothing is said once, not every tick). */
  const lastRefusal = new Map<string, string>();

  const evaluate = async (now: number) => {
    let evaluated = 0;
    let firedNow = 0;
    let failed = 0;
    const drift = deps.driftStates();
    for (const record of await deps.policies.list()) {
      const policy = parseStoredPolicy(record);
      if (!policy) {
        failed++;
        errors.inc({ kind: 'invalid_policy' });
        continue;
      }
      if (!policy.enabled) continue;
      evaluated++;
      try {
        const last = await deps.runs.latest(record.modelName);
        const samples = policy.triggers.samples;
        const facts: TriggerFacts = {
          drift,
          newSamples: samples
            ? await deps.samples.count({
                ...toSampleQuery(policy.dataset.query),
                ...(samples.labelled ? { hasLabels: true } : {}),
                ...(last ? { receivedAfter: last.createdAt } : {}),
              })
            : null,
          lastRunAt: last?.createdAt ?? null,
          policyUpdatedAt: record.updatedAt,
        };
        const decision = decideTrigger(record.modelName, policy, facts, now);
        if (!decision.fire) continue;
        const run = await deps.service.fire(record.modelName, decision.reason, null);
        if (run.ok) {
          firedNow++;
          fired.inc({ reason: decision.reason.kind });
          lastRefusal.delete(record.modelName);
          deps.logger.info(
            { runId: run.value.runId, modelName: record.modelName, reason: decision.reason.detail },
            'retraining run fired',
          );
        } else {
          failed++;
          errors.inc({ kind: run.error.code });
          if (lastRefusal.get(record.modelName) !== run.error.message) {
            lastRefusal.set(record.modelName, run.error.message);
            deps.logger.warn(
              { modelName: record.modelName, reason: decision.reason.detail, error: run.error.message },
              'retraining run not fired',
            );
          }
        }
      } catch (error) {
        failed++;
        errors.inc({ kind: 'internal' });
        deps.logger.error({ err: error, modelName: record.modelName }, 'retraining policy evaluation failed');
      }
    }
    return { evaluated, fired: firedNow, errors: failed };
  };

  const tick = async (options: { readonly force?: boolean } = {}): Promise<RetrainingTickReport> => {
    if (!deps.isLeader()) return { leader: false, evaluated: 0, fired: 0, attempts: 0, errors: 0 };
    const now = deps.clock.now();
    let report = { evaluated: 0, fired: 0, errors: 0 };
    if (options.force || now - lastEvaluation >= deps.intervalMs) {
      lastEvaluation = now;
      report = await evaluate(now);
    }
    const attempts = await deps.deliverer.deliverDue();
    return { leader: true, ...report, attempts };
  };

  const task = createPeriodicTask({
    timers: deps.timers,
    intervalMs: deps.pollMs,
    run: () => tick(),
    onError: (error) => deps.logger.error({ err: error }, 'retraining tick failed'),
  });
  return { start: task.start, stop: task.stop, tick };
}
