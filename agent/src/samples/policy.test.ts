import { describe, expect, it } from 'vitest';
import { decidePolicy } from './policy.ts';

describe('sample policy from desired state', () => {
  const good = { strategies: [{ kind: 'random', share: 0.01 }], limits: { perMinute: 10 } };

  it('takes a valid policy with defaults filled in', () => {
    const decision = decidePolicy(null, good);
    expect(decision.error).toBeNull();
    expect(decision.changed).toBe(true);
    expect(decision.policy?.jpegQuality).toBe(85);
    expect(decision.policy?.limits.perMinute).toBe(10);
  });

  it('refuses a malformed policy, keeps the old one and names the bad field', () => {
    const old = decidePolicy(null, good).policy;
    const decision = decidePolicy(old, { strategies: [{ kind: 'random', share: 7 }] });
    expect(decision.policy).toBe(old);
    expect(decision.changed).toBe(false);
    expect(decision.error).toMatch(/strategies\.0\.share/);
  });

  it('refuses an unknown strategy kind', () => {
    expect(decidePolicy(null, { strategies: [{ kind: 'everything' }] }).error).toMatch(/sample policy refused/);
  });

  it('keeps the policy when desired state has none and clears it on null', () => {
    const old = decidePolicy(null, good).policy;
    expect(decidePolicy(old, undefined)).toEqual({ policy: old, error: null, changed: false });
    expect(decidePolicy(old, null)).toEqual({ policy: null, error: null, changed: true });
  });
});
