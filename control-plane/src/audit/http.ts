import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import type { ApiToken } from '../db/repositories.ts';
import type { AppEnv, Route } from '../http/route.ts';
import type { AuditInput } from './audit.ts';
import { digest, resultOf } from './summary.ts';

/*
 * The audit entry of one API request that changed something: every route whose method is not GET
 * and whose response is a success (app.ts calls this for each). The action is the route (method and
 * path template), the target its id parameter (or the id it created), the summary a redacted digest
 * of the body and of what the response named.
 */

/** The actor of a request: its API token, or the device whose credential a device route checked. */
export function actorOf(c: Context, token: ApiToken | null): { readonly actor: string; readonly role: string } {
  if (token) return { actor: token.id, role: token.role };
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(c.req.header('authorization') ?? '');
  if (basic) {
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) return { actor: `device:${decoded.slice(0, Math.min(colon, 64))}`, role: 'device' };
  }
  return { actor: 'anonymous', role: 'none' };
}

/** The source address of the socket (no forwarded-for header is trusted); null when unknown. */
export function sourceOf(c: Context): string | null {
  try {
    return getConnInfo(c).remote.address ?? null;
  } catch {
    // Requests made in-process (app.request in tests) have no socket.
    return null;
  }
}

/** `/api/v1/rollouts/:id/abort` -> `rollouts`. */
export function resourceOf(path: string): string {
  const parts = path.split('/').filter((part) => part.length > 0);
  return (parts[0] === 'api' && parts[1]?.startsWith('v') ? parts[2] : parts[0]) ?? 'root';
}

export async function auditOfRequest(input: {
  readonly c: Context<AppEnv>;
  readonly route: Route;
  readonly token: ApiToken | null;
  readonly body: unknown;
  readonly response: Response;
}): Promise<AuditInput> {
  const { c, route, response } = input;
  const { actor, role } = actorOf(c, input.token);
  const params = c.req.param() as Record<string, string>;
  let result: Record<string, unknown> | null = null;
  const answered = c.get('auditResult');
  if (answered !== undefined) {
    result = resultOf(answered);
  } else if ((response.headers.get('content-type') ?? '').includes('json')) {
    // Cloning turns @hono/node-server's lightweight response into a web Response with a teed
    // stream (its slow path): routes on a hot path set auditResult instead.
    try {
      result = resultOf(await response.clone().json());
    } catch {
      result = null;
    }
  }
  const body: unknown = route.streamedBody
    ? {
        contentType: c.req.header('content-type')?.split(';')[0] ?? null,
        bytes: Number(c.req.header('content-length') ?? NaN) || null,
      }
    : input.body;
  const bodyTarget =
    typeof body === 'object' && body !== null && typeof (body as { id?: unknown }).id === 'string'
      ? (body as { id: string }).id
      : undefined;
  const target = params.id ?? Object.values(params)[0] ?? (result?.id as string | undefined) ?? bodyTarget ?? null;
  const summary: Record<string, unknown> = {};
  if (body !== undefined) summary.body = digest(body);
  if (Object.keys(params).length > 0) summary.params = digest(params);
  if (result) summary.result = result;
  return {
    actor,
    actorRole: role,
    action: `${route.method.toUpperCase()} ${route.path}`,
    resource: resourceOf(route.path),
    target: target === null ? null : String(target).slice(0, 256),
    requestId: c.get('requestId') ?? null,
    source: sourceOf(c),
    status: response.status,
    summary,
  };
}
