import { describe, expect, it } from 'vitest';
import type { SamplePolicyRecord } from '../db/repositories.ts';
import { effectivePolicy, sameJson, selectorMatches } from './policy-selectors.ts';

const record = (selector: Record<string, string>, policy: string, updatedAt = 1): SamplePolicyRecord => ({
  selector,
  policy,
  updatedAt,
  updatedBy: null,
});

describe('effectivePolicy', () => {
  it('follows the most specific selector a device matches, the fleet-wide one otherwise', () => {
    const records = [record({}, 'fleet'), record({ site: 'a' }, 'site'), record({ site: 'a', line: '2' }, 'line')];
    expect(effectivePolicy(records, { site: 'a', line: '2' })).toBe('line');
    expect(effectivePolicy(records, { site: 'a', line: '3' })).toBe('site');
    expect(effectivePolicy(records, { site: 'b' })).toBe('fleet');
  });

  it('takes the newest of equally specific selectors, and none when nothing matches', () => {
    const records = [record({ site: 'a' }, 'old', 1), record({ line: '2' }, 'new', 2)];
    expect(effectivePolicy(records, { site: 'a', line: '2' })).toBe('new');
    expect(effectivePolicy(records, { site: 'b' })).toBeNull();
    expect(selectorMatches({ site: 'a' }, {})).toBe(false);
  });
});

describe('sameJson', () => {
  it('ignores key order and undefined keys but not values', () => {
    expect(sameJson({ a: 1, b: { c: [1, 2] } }, { b: { c: [1, 2] }, a: 1, d: undefined })).toBe(true);
    expect(sameJson({ a: 1 }, { a: 2 })).toBe(false);
    expect(sameJson(null, undefined)).toBe(true);
  });
});
