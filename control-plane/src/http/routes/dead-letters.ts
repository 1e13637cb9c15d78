import { ApiError as ApiErrorShape, DeadLetterList, DeadLetterQuery } from '@edgeloop/protocol';
import type { DeadLetterRepository } from '../../db/repositories.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { defineRoute, type Route } from '../route.ts';

export function deadLetterRoutes(deps: { readonly deadLetters: DeadLetterRepository }): Route[] {
  return [
    defineRoute({
      method: 'get',
      path: '/api/v1/dead-letters',
      summary: 'Rejected device messages with the reason, newest first',
      tag: 'ingest',
      role: 'admin',
      query: DeadLetterQuery,
      responses: {
        200: { description: 'a page of dead letters', schema: DeadLetterList },
        401: { description: 'missing or invalid token', schema: ApiErrorShape },
        403: { description: 'admin only', schema: ApiErrorShape },
        422: { description: 'invalid query', schema: ApiErrorShape },
      },
      async handle({ c, query }) {
        const beforeId = query.cursor ? (decodeCursor(query.cursor, { b: 'number' }).b as number) : undefined;
        const rows = await deps.deadLetters.list({
          ...(query.deviceId !== undefined ? { deviceId: query.deviceId } : {}),
          ...(query.reason !== undefined ? { reason: query.reason } : {}),
          ...(beforeId !== undefined ? { beforeId } : {}),
          limit: query.limit + 1,
        });
        const page = rows.slice(0, query.limit);
        const last = page[page.length - 1];
        return c.json({
          items: page,
          nextCursor: rows.length > query.limit && last ? encodeCursor({ b: last.id }) : null,
        });
      },
    }),
  ];
}
