import { fail, ok, type Result } from './result.ts';

/**
 * A device id is also the MQTT client id, the MQTT username and one topic segment, so it must be
 * safe in all three: lowercase letters, digits and hyphens, 3 to 63 characters, starting with a
 * letter or digit. No `/`, `+`, `#`, `$`, whitespace or dots can ever reach a topic.
 */
export const DEVICE_ID_PATTERN = /^[a-z0-9][a-z0-9-]{2,62}$/;

/**
 * Names refused even though they match the pattern: JavaScript prototype members (ids become
 * object keys in several places) and names that would read as something other than a device.
 */
export const RESERVED_DEVICE_IDS: ReadonlySet<string> = new Set([
  'constructor',
  'prototype',
  'proto',
  'tostring',
  'tolocalestring',
  'valueof',
  'hasownproperty',
  'isprototypeof',
  'propertyisenumerable',
  'definegetter',
  'definesetter',
  'lookupgetter',
  'lookupsetter',
  'null',
  'undefined',
  'nan',
  'all',
  'admin',
  'root',
  'system',
  'edgeloop',
  'control-plane',
  'broker',
]);

export type DeviceIdError = 'invalid_device_id';

/** Checks a candidate device id. Never throws, whatever the input. */
export function checkDeviceId(candidate: unknown): Result<string, DeviceIdError> {
  if (typeof candidate !== 'string') {
    return fail('invalid_device_id', 'device id must be a string');
  }
  if (candidate.length === 0) return fail('invalid_device_id', 'device id must not be empty');
  if (candidate.length < 3 || candidate.length > 63) {
    return fail('invalid_device_id', `device id must be 3 to 63 characters, got ${candidate.length}`);
  }
  if (!DEVICE_ID_PATTERN.test(candidate)) {
    return fail(
      'invalid_device_id',
      'device id may hold only lowercase letters, digits and hyphens, and must start with a letter or digit',
    );
  }
  if (RESERVED_DEVICE_IDS.has(candidate)) {
    return fail('invalid_device_id', `device id "${candidate}" is reserved`);
  }
  return ok(candidate);
}

export function isDeviceId(candidate: unknown): candidate is string {
  return checkDeviceId(candidate).ok;
}
