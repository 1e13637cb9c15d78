import { describe, expect, it } from 'vitest';
import { EnrollDeviceRequest, Labels, PatchDeviceRequest, RolloutSpec } from './api.ts';
import { describeIssues } from './codec.ts';
import { SamplePolicySelector } from './samples.ts';

const problems = (result: { success: boolean; error?: { issues: Parameters<typeof describeIssues>[0] } }) =>
  result.success ? '' : describeIssues(result.error!.issues);

describe('label validation', () => {
  it('refuses a __proto__ key from JSON and names it, instead of dropping it', () => {
    const parsed = EnrollDeviceRequest.safeParse(JSON.parse('{"id":"cam-01","labels":{"__proto__":"x","site":"a"}}'));
    expect(parsed.success).toBe(false);
    expect(problems(parsed)).toContain('labels.__proto__: label key "__proto__" is a prototype name');
  });

  it('refuses prototype names that fit the key pattern (constructor, prototype)', () => {
    expect(problems(Labels.safeParse({ constructor: 'x' }))).toContain('"constructor" is a prototype name');
    expect(problems(Labels.safeParse({ prototype: 'x' }))).toContain('"prototype" is a prototype name');
  });

  it('names every key with a bad length or character set', () => {
    const message = problems(Labels.safeParse({ 'Bad Key': 'x', [`k${'a'.repeat(63)}`]: 'y', ok: 'z' }));
    expect(message).toContain('label key "Bad Key" is not valid');
    expect(message).toContain(`label key "k${'a'.repeat(63)}" is not valid`);
    expect(message).not.toContain('"ok"');
  });

  it('refuses values that are too long or hold control characters', () => {
    expect(problems(Labels.safeParse({ site: 'x'.repeat(129) }))).toContain('label "site": the value is longer');
    expect(problems(Labels.safeParse({ site: 'a\nb' }))).toContain('label "site": the value holds control characters');
  });

  it('keeps the limit of 32 labels and accepts good ones', () => {
    const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']));
    expect(problems(Labels.safeParse(many))).toContain('at most 32 labels');
    expect(Labels.parse({ site: 'berlin-1', 'hw.family': 'jetson_orin' })).toEqual({
      site: 'berlin-1',
      'hw.family': 'jetson_orin',
    });
    expect(EnrollDeviceRequest.parse({ id: 'cam-01' }).labels).toEqual({});
  });

  it('checks patches, rollout selectors and sample-policy selectors the same way', () => {
    expect(problems(PatchDeviceRequest.safeParse(JSON.parse('{"labels":{"__proto__":null}}')))).toContain(
      'prototype name',
    );
    expect(PatchDeviceRequest.parse({ labels: { site: null } }).labels).toEqual({ site: null });
    const spec = RolloutSpec.safeParse(JSON.parse('{"modelId":"m@1","selector":{"labels":{"__proto__":"x"}}}'));
    expect(problems(spec)).toContain('prototype name');
    expect(problems(SamplePolicySelector.safeParse(JSON.parse('{"labels":{"__proto__":"x"}}')))).toContain(
      'prototype name',
    );
  });
});
