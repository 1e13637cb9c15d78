import { type DriftState, RetrainingPolicy, type RetrainingPolicyInput } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { decideTrigger, type TriggerFacts } from './decide.ts';

const T = Date.UTC(2026, 11, 3, 12, 0, 0);

const policy = (input: Partial<RetrainingPolicyInput> = {}) =>
  RetrainingPolicy.parse({ dataset: { name: 'retrain-det' }, cooldownS: 3600, ...input });

function drift(key: string, overrides: Partial<DriftState> = {}): DriftState {
  return {
    scope: 'site',
    key,
    modelSha256: 'a'.repeat(64),
    modelId: 'det@1.0.0',
    band: 'major',
    sustainedWindows: 3,
    since: T - 180_000,
    reference: {
      source: 'auto',
      from: T - 86_400_000,
      to: T - 82_800_000,
      frames: 5000,
      complete: true,
      datasetId: null,
    },
    numbers: {
      confidencePsi: 0.31234,
      classMixPsi: 0.05,
      nearThresholdShare: { reference: 0.1, current: 0.3 },
      sceneChangeRate: { reference: 0, current: 0.2 },
    },
    window: { index: 1, from: T - 60_000, to: T },
    updatedAt: T,
    ...overrides,
  };
}

const facts = (overrides: Partial<TriggerFacts> = {}): TriggerFacts => ({
  drift: [],
  newSamples: null,
  lastRunAt: null,
  policyUpdatedAt: T - 86_400_000,
  ...overrides,
});

describe('decideTrigger', () => {
  it('fires on drift sustained at the band for the windows, naming the worst site and its PSI', () => {
    const decision = decideTrigger(
      'det',
      policy({ triggers: { drift: { band: 'moderate', windows: 3 } } }),
      facts({
        drift: [
          drift('a', { band: 'moderate', sustainedWindows: 5 }),
          drift('b'),
          drift('c', { band: 'stable', sustainedWindows: 0 }),
        ],
      }),
      T,
    );
    expect(decision).toEqual({
      fire: true,
      reason: {
        kind: 'drift',
        numbers: {
          site: 'b',
          band: 'major',
          windows: 3,
          minWindows: 3,
          confidencePsi: 0.3123,
          classMixPsi: 0.05,
          modelId: 'det@1.0.0',
          sites: 2,
        },
        detail: 'site b drifted (major) for 3 windows (policy: moderate or worse for 3), and 1 more site(s)',
      },
    });
  });

  it('does not fire on drift held for fewer windows, at a milder band, at another site, or of another model', () => {
    const only = policy({ triggers: { drift: { band: 'major', windows: 3, sites: ['b'] } } });
    const states = [
      drift('b', { sustainedWindows: 2 }),
      drift('b', { band: 'moderate', sustainedWindows: 9, modelSha256: 'b'.repeat(64) }),
      drift('a', { sustainedWindows: 9 }),
      drift('b', { modelId: 'other@1.0.0', sustainedWindows: 9 }),
      drift('b', { modelId: null, sustainedWindows: 9 }),
      drift('b', { scope: 'device', sustainedWindows: 9 }),
    ];
    expect(decideTrigger('det', only, facts({ drift: states }), T)).toEqual({ fire: false, why: 'no trigger holds' });
    // The same states with the third window closed at b fire it.
    expect(decideTrigger('det', only, facts({ drift: [...states, drift('b')] }), T).fire).toBe(true);
  });

  it('fires once the new samples reach the threshold, and not one sample before', () => {
    const p = policy({ triggers: { samples: { min: 50, labelled: true } } });
    expect(decideTrigger('det', p, facts({ newSamples: 49, lastRunAt: T - 7_200_000 }), T).fire).toBe(false);
    expect(decideTrigger('det', p, facts({ newSamples: 50, lastRunAt: T - 7_200_000 }), T)).toEqual({
      fire: true,
      reason: {
        kind: 'samples',
        numbers: { samples: 50, min: 50, since: T - 7_200_000 },
        detail: '50 new labelled samples since the last run (policy: at least 50)',
      },
    });
  });

  it('fires when a cron time fell after the last run, and waits for the next one after it fired', () => {
    // Every day at 03:00 UTC; the last run was yesterday at 03:00:10.
    const p = policy({ triggers: { schedule: { cron: '0 3 * * *' } } });
    const lastRun = Date.UTC(2026, 11, 2, 3, 0, 10);
    const dueAt = Date.UTC(2026, 11, 3, 3, 0, 0);
    expect(decideTrigger('det', p, facts({ lastRunAt: lastRun }), dueAt - 1).fire).toBe(false);
    expect(decideTrigger('det', p, facts({ lastRunAt: lastRun }), dueAt + 5_000)).toEqual({
      fire: true,
      reason: {
        kind: 'schedule',
        numbers: { cron: '0 3 * * *', dueAt, timezone: 'UTC' },
        detail: 'the schedule "0 3 * * *" was due at 2026-12-03T03:00:00.000Z',
      },
    });
    // A run at 03:00:05 today: the next time is tomorrow.
    expect(decideTrigger('det', p, facts({ lastRunAt: dueAt + 5_000 }), dueAt + 3_600_000).fire).toBe(false);
  });

  it('reads the cron expression in the policy time zone', () => {
    // 03:00 in Tokyo is 18:00 UTC the day before.
    const p = policy({ cooldownS: 0, triggers: { schedule: { cron: '0 3 * * *', timezone: 'Asia/Tokyo' } } });
    const from = Date.UTC(2026, 11, 3, 12, 0, 0);
    expect(decideTrigger('det', p, facts({ policyUpdatedAt: from }), Date.UTC(2026, 11, 3, 17, 59)).fire).toBe(false);
    expect(decideTrigger('det', p, facts({ policyUpdatedAt: from }), Date.UTC(2026, 11, 3, 18, 0, 1)).fire).toBe(true);
  });

  it('counts cron times only from the last change of the policy when no run exists', () => {
    const p = policy({ triggers: { schedule: { cron: '0 3 * * *' } } });
    const setAt = Date.UTC(2026, 11, 3, 4, 0, 0);
    expect(decideTrigger('det', p, facts({ policyUpdatedAt: setAt }), Date.UTC(2026, 11, 3, 12, 0)).fire).toBe(false);
  });

  it('holds every trigger during the cooldown after a run, and fires again once it has passed', () => {
    const p = policy({ cooldownS: 3600, triggers: { drift: { windows: 1 }, samples: { min: 1 } } });
    const during = facts({ drift: [drift('b')], newSamples: 1000, lastRunAt: T - 3_599_000 });
    const held = decideTrigger('det', p, during, T);
    expect(held).toEqual({
      fire: false,
      why: `cooling down until ${new Date(T + 1000).toISOString()} (cooldown 3600 s)`,
    });
    const after = decideTrigger('det', p, { ...during, lastRunAt: T - 3_600_000 }, T);
    expect(after.fire && after.reason.kind).toBe('drift');
  });

  it('prefers drift to samples to schedule when several hold', () => {
    const p = policy({
      cooldownS: 0,
      triggers: { drift: { windows: 1 }, samples: { min: 1 }, schedule: { cron: '* * * * *' } },
    });
    const all = facts({ drift: [drift('b')], newSamples: 5 });
    const kind = (f: TriggerFacts) => {
      const d = decideTrigger('det', p, f, T);
      return d.fire ? d.reason.kind : null;
    };
    expect(kind(all)).toBe('drift');
    expect(kind({ ...all, drift: [] })).toBe('samples');
    expect(kind({ ...all, drift: [], newSamples: 0 })).toBe('schedule');
  });

  it('never fires a disabled policy or one without triggers', () => {
    const states = facts({ drift: [drift('b')], newSamples: 10 });
    expect(decideTrigger('det', policy({ enabled: false, triggers: { drift: { windows: 1 } } }), states, T)).toEqual({
      fire: false,
      why: 'the policy is disabled',
    });
    expect(decideTrigger('det', policy(), states, T)).toEqual({
      fire: false,
      why: 'the policy has no trigger (manual runs only)',
    });
  });
});
