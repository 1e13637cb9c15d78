import {
  ApiError as ApiErrorShape,
  CreateTokenRequest,
  CreateTokenResponse,
  TokenList,
  TokenSelf,
} from '@edgeloop/protocol';
import type { TokenService } from '../../tokens.ts';
import { ApiError } from '../api-error.ts';
import { defineRoute, type Route } from '../route.ts';

const errors = {
  401: { description: 'missing or invalid token', schema: ApiErrorShape },
  403: { description: 'admin only', schema: ApiErrorShape },
} as const;

export function tokenRoutes(deps: { readonly tokens: TokenService }): Route[] {
  return [
    defineRoute({
      method: 'post',
      path: '/api/v1/tokens',
      summary: 'Create an operator or viewer token (the secret is shown once)',
      tag: 'tokens',
      role: 'admin',
      body: CreateTokenRequest,
      responses: {
        201: { description: 'created', schema: CreateTokenResponse },
        422: { description: 'invalid request', schema: ApiErrorShape },
        ...errors,
      },
      async handle({ c, body }) {
        return c.json(await deps.tokens.create(body.name, body.role), 201);
      },
    }),
    defineRoute({
      method: 'get',
      path: '/api/v1/tokens/self',
      summary: "The caller's own token: id, name and role (what a client may show)",
      tag: 'tokens',
      role: 'viewer',
      responses: {
        200: { description: 'the token', schema: TokenSelf },
        401: { description: 'missing or invalid token', schema: ApiErrorShape },
      },
      handle({ c, token }) {
        return c.json({ id: token!.id, name: token!.name, role: token!.role });
      },
    }),
    defineRoute({
      method: 'get',
      path: '/api/v1/tokens',
      summary: 'List tokens (never their secrets)',
      tag: 'tokens',
      role: 'admin',
      responses: { 200: { description: 'every token', schema: TokenList }, ...errors },
      async handle({ c }) {
        return c.json({ items: await deps.tokens.list() });
      },
    }),
    defineRoute({
      method: 'delete',
      path: '/api/v1/tokens/:id',
      summary: 'Revoke a token',
      tag: 'tokens',
      role: 'admin',
      responses: {
        204: { description: 'revoked' },
        404: { description: 'no such active token', schema: ApiErrorShape },
        409: { description: 'the last admin token', schema: ApiErrorShape },
        ...errors,
      },
      async handle({ c, params }) {
        const result = await deps.tokens.revoke(params.id!);
        if (!result.ok) throw new ApiError(result.error.code, result.error.message);
        return c.body(null, 204);
      },
    }),
  ];
}
