import { describe, expect, it } from 'vitest';
import { checkDeviceId } from './device-id.ts';

describe('checkDeviceId', () => {
  it.each(['cam-001', 'abc', 'a1b2c3', `a${'b'.repeat(62)}`, '0-front-door'])('accepts %j', (id) => {
    expect(checkDeviceId(id)).toEqual({ ok: true, value: id });
  });

  it.each([
    ['__proto__', 'pattern'],
    ['constructor', 'reserved'],
    ['prototype', 'reserved'],
    ['a/b', 'pattern'],
    ['+', 'characters'],
    ['#', 'characters'],
    ['', 'empty'],
    [`a${'b'.repeat(64)}`, '65'],
    [`a${'b'.repeat(63)}`, '64'],
    ['Cam-1', 'pattern'],
    ['-cam', 'pattern'],
    ['cam 1', 'pattern'],
    ['$sys', 'pattern'],
    ['ab', 'short'],
  ])('refuses %j', (id) => {
    const result = checkDeviceId(id);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.code).toBe('invalid_device_id');
  });

  it('refuses non-strings without throwing', () => {
    for (const value of [undefined, null, 42, {}, [], Symbol('x')]) {
      expect(checkDeviceId(value).ok).toBe(false);
    }
  });
});
