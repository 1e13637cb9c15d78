import { ApiError as ApiErrorShape, SERVER_EVENT_TYPES } from '@edgeloop/protocol';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import type { BusMessage, EventBus } from '../../events.ts';
import { ApiError } from '../api-error.ts';
import { defineRoute, type Route } from '../route.ts';

/** Events buffered per client before a slow client is cut off (it can reconnect). */
const MAX_BUFFERED = 1_000;

const EventsQuery = z.object({
  /** Comma-separated event types; all when absent. */
  types: z.string().max(1024).optional(),
});

export type EventRoutesDeps = {
  readonly bus: EventBus;
  readonly heartbeatMs: number;
  /** Aborted when the server stops: open streams end. */
  readonly signal?: AbortSignal;
};

export function eventRoutes(deps: EventRoutesDeps): Route[] {
  return [
    defineRoute({
      method: 'get',
      path: '/api/v1/events',
      summary: `Server-Sent Events: ${SERVER_EVENT_TYPES.join(', ')}`,
      tag: 'events',
      role: 'viewer',
      query: EventsQuery,
      responses: {
        200: { description: 'an event stream; data is JSON { type, at, data }', contentType: 'text/event-stream' },
        401: { description: 'missing or invalid token', schema: ApiErrorShape },
        422: { description: 'unknown event type', schema: ApiErrorShape },
      },
      handle({ c, query }) {
        let filter: Set<string> | null = null;
        if (query.types) {
          const types = query.types
            .split(',')
            .map((type) => type.trim())
            .filter(Boolean);
          const unknown = types.filter((type) => !(SERVER_EVENT_TYPES as readonly string[]).includes(type));
          if (unknown.length > 0) throw new ApiError('unprocessable', `unknown event types: ${unknown.join(', ')}`);
          filter = new Set(types);
        }
        return streamSSE(c, async (stream) => {
          const buffered: BusMessage[] = [];
          let overflow = false;
          let closed = false;
          let heartbeatDue = false;
          let wake: (() => void) | null = null;
          const poke = () => {
            const resolve = wake;
            wake = null;
            resolve?.();
          };
          // Every replica's events (event-relay.ts, when replicas share PostgreSQL), not only this one's.
          const unsubscribe = deps.bus.subscribe(
            (message) => {
              if (filter && !filter.has(message.type)) return;
              if (buffered.length >= MAX_BUFFERED) overflow = true;
              else buffered.push(message);
              poke();
            },
            { remote: true },
          );
          const heartbeat = setInterval(() => {
            heartbeatDue = true;
            poke();
          }, deps.heartbeatMs);
          const close = () => {
            closed = true;
            poke();
          };
          stream.onAbort(close);
          deps.signal?.addEventListener('abort', close, { once: true });
          try {
            await stream.write(': connected\n\n');
            while (!closed && !deps.signal?.aborted) {
              if (buffered.length === 0 && !heartbeatDue && !overflow) {
                await new Promise<void>((resolve) => {
                  wake = resolve;
                });
                continue;
              }
              if (overflow) {
                await stream.writeSSE({ event: 'overflow', data: JSON.stringify({ dropped: true }) });
                break;
              }
              for (const message of buffered.splice(0)) {
                await stream.writeSSE({
                  id: String(message.id),
                  event: message.type,
                  data: JSON.stringify({ type: message.type, at: message.at, data: message.data }),
                });
              }
              if (heartbeatDue) {
                heartbeatDue = false;
                await stream.write(': heartbeat\n\n');
              }
            }
          } finally {
            unsubscribe();
            clearInterval(heartbeat);
            deps.signal?.removeEventListener('abort', close);
          }
        });
      },
    }),
  ];
}
