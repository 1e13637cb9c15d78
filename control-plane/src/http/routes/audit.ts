import { ApiError as ApiErrorShape, AuditList, AuditQuery } from '@edgeloop/protocol';
import type { AuditRecord, AuditRepository } from '../../db/audit.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { defineRoute, type Route } from '../route.ts';

/** The audit log as the API shows it. */
export function toAuditEntry(record: AuditRecord) {
  return {
    id: record.id,
    at: record.at,
    actor: { id: record.actor, role: record.actorRole },
    action: record.action,
    resource: record.resource,
    target: record.target,
    requestId: record.requestId,
    source: record.source,
    status: record.status,
    summary: record.summary,
  };
}

/** GET /api/v1/audit: read only, admin only. No route edits or deletes an entry. */
export function auditRoutes(deps: { readonly audit: Pick<AuditRepository, 'list'> }): Route[] {
  return [
    defineRoute({
      method: 'get',
      path: '/api/v1/audit',
      summary: 'The audit log: who changed what, when and from where, newest first',
      tag: 'governance',
      role: 'admin',
      query: AuditQuery,
      responses: {
        200: { description: 'a page of audit entries', schema: AuditList },
        400: { description: 'a cursor this API did not return', schema: ApiErrorShape },
        401: { description: 'missing or invalid token', schema: ApiErrorShape },
        403: { description: 'admin only', schema: ApiErrorShape },
        422: { description: 'invalid query', schema: ApiErrorShape },
      },
      async handle({ c, query }) {
        const beforeId = query.cursor ? (decodeCursor(query.cursor, { b: 'number' }).b as number) : undefined;
        const rows = await deps.audit.list({
          ...(query.actor !== undefined ? { actor: query.actor } : {}),
          ...(query.action !== undefined ? { action: query.action } : {}),
          ...(query.resource !== undefined ? { resource: query.resource } : {}),
          ...(query.target !== undefined ? { target: query.target } : {}),
          ...(query.from !== undefined ? { from: query.from } : {}),
          ...(query.to !== undefined ? { to: query.to } : {}),
          ...(beforeId !== undefined ? { beforeId } : {}),
          limit: query.limit + 1,
        });
        const page = rows.slice(0, query.limit);
        const last = page[page.length - 1];
        return c.json({
          items: page.map(toAuditEntry),
          nextCursor: rows.length > query.limit && last ? encodeCursor({ b: last.id }) : null,
        });
      },
    }),
  ];
}
