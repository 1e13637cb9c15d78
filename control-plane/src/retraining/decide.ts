import { type DriftState, driftBandRank, type RetrainingPolicy, type RetrainingReason } from '@edgeloop/protocol';
import { nextCronTime } from './cron.ts';

/*
 * Whether a retraining policy fires now: a pure function of the policy and the facts the trigger
 * loop read (drift states of the model name, new samples since the last run, when that run was),
 * tested like the rollout planner. The first trigger that holds fires, in this order:
 *
 *   drift     a site running a model of this name holds `band` or worse for `windows` closed windows
 *   samples   the dataset query matches `min` samples received after the last run began
 *   schedule  a cron time fell between the last run (or the policy's last change) and now
 *
 * and never within `cooldownS` of the previous run, nor while the policy is disabled.
 */

export type TriggerFacts = {
  /** Drift states (any model); those whose modelId names this model count. */
  readonly drift: readonly DriftState[];
  /** Samples the dataset query matches, received after the last run (null: not counted). */
  readonly newSamples: number | null;
  /** When the newest run of the name (any kind) was created; null before any. */
  readonly lastRunAt: number | null;
  /** When the policy was last set: cron times before it do not count. */
  readonly policyUpdatedAt: number;
};

export type TriggerDecision =
  | { readonly fire: true; readonly reason: RetrainingReason }
  | { readonly fire: false; readonly why: string };

/** The name of `name@version` (the whole string when it has no @). */
export function modelNameOf(modelId: string): string {
  const at = modelId.lastIndexOf('@');
  return at < 0 ? modelId : modelId.slice(0, at);
}

/** The site drift states of this model name that hold the policy's band for its windows, worst first. */
export function sustainedDrift(
  modelName: string,
  trigger: NonNullable<RetrainingPolicy['triggers']['drift']>,
  states: readonly DriftState[],
): DriftState[] {
  const floor = driftBandRank(trigger.band);
  const sites = trigger.sites ? new Set(trigger.sites) : null;
  return states
    .filter(
      (state) =>
        state.scope === 'site' &&
        state.modelId !== null &&
        modelNameOf(state.modelId) === modelName &&
        (sites === null || sites.has(state.key)) &&
        driftBandRank(state.band) >= floor &&
        state.sustainedWindows >= trigger.windows,
    )
    .sort(
      (a, b) =>
        driftBandRank(b.band) - driftBandRank(a.band) ||
        b.sustainedWindows - a.sustainedWindows ||
        a.key.localeCompare(b.key),
    );
}

const psi = (value: number | null) => (value === null ? null : Math.round(value * 10_000) / 10_000);

export function decideTrigger(
  modelName: string,
  policy: RetrainingPolicy,
  facts: TriggerFacts,
  now: number,
): TriggerDecision {
  if (!policy.enabled) return { fire: false, why: 'the policy is disabled' };
  const { drift, samples, schedule } = policy.triggers;
  if (!drift && !samples && !schedule) return { fire: false, why: 'the policy has no trigger (manual runs only)' };
  if (facts.lastRunAt !== null && now - facts.lastRunAt < policy.cooldownS * 1000) {
    const until = facts.lastRunAt + policy.cooldownS * 1000;
    return { fire: false, why: `cooling down until ${new Date(until).toISOString()} (cooldown ${policy.cooldownS} s)` };
  }

  if (drift) {
    const [worst, ...others] = sustainedDrift(modelName, drift, facts.drift);
    if (worst) {
      return {
        fire: true,
        reason: {
          kind: 'drift',
          numbers: {
            site: worst.key,
            band: worst.band,
            windows: worst.sustainedWindows,
            minWindows: drift.windows,
            confidencePsi: psi(worst.numbers.confidencePsi),
            classMixPsi: psi(worst.numbers.classMixPsi),
            modelId: worst.modelId,
            sites: others.length + 1,
          },
          detail:
            `site ${worst.key} drifted (${worst.band}) for ${worst.sustainedWindows} windows ` +
            `(policy: ${drift.band} or worse for ${drift.windows})` +
            (others.length > 0 ? `, and ${others.length} more site(s)` : ''),
        },
      };
    }
  }

  if (samples && facts.newSamples !== null && facts.newSamples >= samples.min) {
    return {
      fire: true,
      reason: {
        kind: 'samples',
        numbers: { samples: facts.newSamples, min: samples.min, since: facts.lastRunAt },
        detail:
          `${facts.newSamples} new ${samples.labelled ? 'labelled ' : ''}samples ` +
          `since ${facts.lastRunAt === null ? 'the start' : 'the last run'} (policy: at least ${samples.min})`,
      },
    };
  }

  if (schedule) {
    const from = Math.max(facts.lastRunAt ?? Number.NEGATIVE_INFINITY, facts.policyUpdatedAt);
    const due = nextCronTime(schedule.cron, schedule.timezone, from);
    if (due !== null && due <= now) {
      return {
        fire: true,
        reason: {
          kind: 'schedule',
          numbers: { cron: schedule.cron, dueAt: due, timezone: schedule.timezone ?? 'UTC' },
          detail: `the schedule "${schedule.cron}" was due at ${new Date(due).toISOString()}`,
        },
      };
    }
  }
  return { fire: false, why: 'no trigger holds' };
}
