import type { Context } from 'hono';
import type { ApiRole, ApiToken, DeviceCredential } from '../db/repositories.ts';
import type { DeviceSecrets } from '../device-secrets.ts';
import type { Counter } from '../metrics.ts';
import { roleAllows, type TokenService } from '../tokens.ts';
import { ApiError } from './api-error.ts';

/** Bearer-token authentication and the role check of one request: 401 without a valid token, 403 below the role. */
export async function authorize(
  c: Context,
  role: ApiRole,
  deps: { readonly tokens: TokenService; readonly failures: Counter },
): Promise<ApiToken> {
  const header = c.req.header('authorization') ?? '';
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) {
    deps.failures.inc({ reason: 'missing' });
    throw new ApiError('unauthorized', 'a bearer token is required (Authorization: Bearer <token>)');
  }
  const token = await deps.tokens.authenticate(match[1]!);
  if (!token) {
    deps.failures.inc({ reason: 'invalid' });
    throw new ApiError('unauthorized', 'the bearer token is not valid');
  }
  if (!roleAllows(token.role, role)) {
    deps.failures.inc({ reason: 'forbidden' });
    throw new ApiError('forbidden', `this needs the ${role} role; the token has ${token.role}`);
  }
  return token;
}

/**
 * A device authenticating with its own MQTT credential as HTTP Basic (`deviceId:secret`), checked
 * as MQTT checks it (device-secrets.ts: the current secret, or a rotation's next one, which this
 * promotes), in constant time: 401 unless it is an active device.
 * `missingMessage` is the 401's message when no Basic credential is sent (a route that also takes a
 * bearer token says so).
 */
export async function authenticateDevice(
  c: Context,
  deps: {
    readonly secrets: Pick<DeviceSecrets, 'check'>;
    /** Reads the credential instead of the repository (a route that reads the device row anyway). */
    readonly lookup?: (id: string) => Promise<DeviceCredential | null>;
    readonly failures: Counter;
  },
  missingMessage = 'the device credential is required (Authorization: Basic base64(deviceId:secret))',
): Promise<string> {
  const header = c.req.header('authorization') ?? '';
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!basic) {
    deps.failures.inc({ reason: 'missing' });
    throw new ApiError('unauthorized', missingMessage);
  }
  const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const deviceId = colon === -1 ? '' : decoded.slice(0, colon);
  const secret = colon === -1 ? '' : decoded.slice(colon + 1);
  // An unknown device is hashed and compared too, so timing does not tell which ids exist.
  const lookup = deviceId.length > 0 && deviceId.length <= 64 ? deps.lookup : async () => null;
  const checked = await deps.secrets.check(deviceId, secret, lookup);
  if (checked !== 'current' && checked !== 'next') {
    deps.failures.inc({ reason: 'device_credential' });
    throw new ApiError('unauthorized', 'the device credential is not valid');
  }
  return deviceId;
}
