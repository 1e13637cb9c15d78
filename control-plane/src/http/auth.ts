import type { Context } from 'hono';
import type { ApiRole, ApiToken } from '../db/repositories.ts';
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
