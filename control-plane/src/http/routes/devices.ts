import {
  ApiError as ApiErrorShape,
  CommandRequest,
  CommandResponse,
  DeviceDetail,
  DeviceList,
  DeviceListQuery,
  DeviceView,
  EnrollDeviceRequest,
  EnrollDeviceResponse,
  HistoryQuery,
  Labels,
  MessageList,
  MessageQuery,
  PatchDeviceRequest,
  ROTATE_CREDENTIALS_COMMAND,
  SetDesiredRequest,
  SetDesiredResponse,
  TelemetryHistory,
} from '@edgeloop/protocol';
import { z } from 'zod';
import type { CommandConfig } from '../../config.ts';
import type { DeviceRepository, MessageCursor, MessageRepository, StoredMessage } from '../../db/repositories.ts';
import { type Fleet, toDeviceView } from '../../fleet.ts';
import { ApiError } from '../api-error.ts';
import { decodeCursor, encodeCursor } from '../cursor.ts';
import { defineRoute, type Route } from '../route.ts';

export type DeviceRoutesDeps = {
  readonly devices: DeviceRepository;
  readonly messages: MessageRepository;
  readonly fleet: Fleet;
  readonly commands: CommandConfig;
};

const errors = {
  401: { description: 'missing or invalid token', schema: ApiErrorShape },
  403: { description: 'the token lacks the role', schema: ApiErrorShape },
  404: { description: 'no such device', schema: ApiErrorShape },
  422: { description: 'invalid request', schema: ApiErrorShape },
} as const;

function historyPage(rows: StoredMessage[], limit: number) {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  const nextCursor = rows.length > limit && last ? encodeCursor({ r: last.receivedAt, s: last.seq, i: last.id }) : null;
  return { page, nextCursor };
}

/** Where a history page starts, in (receivedAt, seq, id) order; `before` alone: received before it. */
function historyBefore(query: { before?: number | undefined; cursor?: string | undefined }): MessageCursor | undefined {
  if (query.cursor) {
    const { r, s, i } = decodeCursor(query.cursor, { r: 'number', s: 'number', i: 'number' });
    return { receivedAt: r as number, seq: s as number, id: i as number };
  }
  // seq is never negative: (before, -1, 0) keeps exactly the rows received before `before`.
  return query.before !== undefined ? { receivedAt: query.before, seq: -1, id: 0 } : undefined;
}

/** `name` or `name@version` (the query schema allows at most one `@`). */
export function modelFilter(text: string): { name: string; version?: string } {
  const at = text.indexOf('@');
  return at === -1 ? { name: text } : { name: text.slice(0, at), version: text.slice(at + 1) };
}

function parseBody(row: StoredMessage): Record<string, unknown> {
  return JSON.parse(row.body) as Record<string, unknown>;
}

export function deviceRoutes(deps: DeviceRoutesDeps): Route[] {
  const { devices, messages, fleet } = deps;

  const requireDevice = async (id: string) => {
    const device = await devices.get(id);
    if (!device) throw new ApiError('not_found', `no device ${id}`);
    return device;
  };

  return [
    defineRoute({
      method: 'post',
      path: '/api/v1/devices',
      summary: 'Enroll a device; returns its MQTT credentials once',
      tag: 'devices',
      role: 'admin',
      body: EnrollDeviceRequest.extend({ id: z.string() }),
      responses: {
        201: { description: 'enrolled', schema: EnrollDeviceResponse },
        409: { description: 'the id is enrolled and active', schema: ApiErrorShape },
        ...errors,
        422: {
          description: 'an invalid id, or auth cert without a fleet CA (edgeloop ca init) or an MQTT TLS listener',
          schema: ApiErrorShape,
        },
      },
      async handle({ c, body }) {
        const enrolled = await fleet.enroll({ id: body.id, labels: body.labels, auth: body.auth });
        if (!enrolled.ok) {
          throw new ApiError(enrolled.error.code === 'conflict' ? 'conflict' : 'unprocessable', enrolled.error.message);
        }
        return c.json(enrolled.value, 201);
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/devices',
      summary: 'List devices, filtered by status, health, labels and active model, with cursor paging',
      tag: 'devices',
      role: 'viewer',
      query: DeviceListQuery,
      arrayQuery: ['label'],
      responses: { 200: { description: 'a page of devices', schema: DeviceList }, ...errors },
      async handle({ c, query }) {
        const afterId = query.cursor ? (decodeCursor(query.cursor, { a: 'string' }).a as string) : undefined;
        const labels = (query.label ?? []).map((pair): [string, string] => {
          const colon = pair.indexOf(':');
          return [pair.slice(0, colon), pair.slice(colon + 1)];
        });
        const rows = await devices.list({
          ...(query.status ? { status: query.status } : {}),
          ...(query.health ? { health: query.health } : {}),
          labels,
          ...(query.model ? { model: modelFilter(query.model) } : {}),
          ...(afterId !== undefined ? { afterId } : {}),
          limit: query.limit + 1,
        });
        const page = rows.slice(0, query.limit);
        const last = page[page.length - 1];
        const nextCursor = rows.length > query.limit && last ? encodeCursor({ a: last.id }) : null;
        return c.json({ items: page.map(toDeviceView), nextCursor });
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/devices/:id',
      summary: 'One device with its latest telemetry, reported and desired state',
      tag: 'devices',
      role: 'viewer',
      responses: { 200: { description: 'the device', schema: DeviceDetail }, ...errors },
      async handle({ c, params }) {
        const device = await requireDevice(params.id!);
        return c.json({
          device: toDeviceView(device),
          keepaliveS: device.keepaliveS,
          telemetryIntervalS: device.telemetryIntervalS,
          statusChangedAt: device.statusChangedAt,
          telemetry:
            device.telemetry && device.telemetryAt !== null
              ? { receivedAt: device.telemetryAt, message: device.telemetry }
              : null,
          reported:
            device.reported && device.reportedAt !== null
              ? { receivedAt: device.reportedAt, message: device.reported }
              : null,
          desired: device.desired,
        });
      },
    }),

    defineRoute({
      method: 'patch',
      path: '/api/v1/devices/:id',
      summary: 'Set or remove labels (a null value removes one)',
      tag: 'devices',
      role: 'operator',
      body: PatchDeviceRequest,
      responses: { 200: { description: 'the device', schema: DeviceView }, ...errors },
      async handle({ c, params, body }) {
        const id = params.id!;
        const current = await requireDevice(id);
        const merged: Record<string, string> = { ...current.labels };
        for (const [key, value] of Object.entries(body.labels)) {
          if (value === null) delete merged[key];
          else merged[key] = value;
        }
        const check = Labels.safeParse(merged);
        if (!check.success) throw new ApiError('unprocessable', check.error.issues[0]?.message ?? 'invalid labels');
        const updated = await fleet.patchLabels(id, body.labels);
        if (!updated) throw new ApiError('not_found', `no device ${id}`);
        return c.json(toDeviceView(updated));
      },
    }),

    defineRoute({
      method: 'delete',
      path: '/api/v1/devices/:id',
      summary: 'Revoke the device credential and disconnect its live session',
      tag: 'devices',
      role: 'admin',
      responses: { 204: { description: 'revoked' }, ...errors },
      async handle({ c, params }) {
        if (!(await fleet.revoke(params.id!))) throw new ApiError('not_found', `no device ${params.id}`);
        return c.body(null, 204);
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/devices/:id/telemetry',
      summary: 'Telemetry history, newest first by receipt (received time, then seq)',
      tag: 'devices',
      role: 'viewer',
      query: HistoryQuery,
      responses: { 200: { description: 'a page of telemetry', schema: TelemetryHistory }, ...errors },
      async handle({ c, params, query }) {
        const id = params.id!;
        await requireDevice(id);
        const before = historyBefore(query);
        const rows = await messages.list({
          deviceId: id,
          channel: 'telemetry',
          ...(before ? { before } : {}),
          limit: query.limit + 1,
        });
        const { page, nextCursor } = historyPage(rows, query.limit);
        return c.json({
          items: page.map((row) => ({ receivedAt: row.receivedAt, message: parseBody(row), clockSkew: row.clockSkew })),
          nextCursor,
        });
      },
    }),

    defineRoute({
      method: 'get',
      path: '/api/v1/devices/:id/messages',
      summary: 'Every stored message of a device, optionally of one channel, newest first',
      tag: 'devices',
      role: 'viewer',
      query: MessageQuery,
      responses: { 200: { description: 'a page of messages', schema: MessageList }, ...errors },
      async handle({ c, params, query }) {
        const id = params.id!;
        await requireDevice(id);
        const before = historyBefore(query);
        const rows = await messages.list({
          deviceId: id,
          ...(query.channel ? { channel: query.channel } : {}),
          ...(before ? { before } : {}),
          limit: query.limit + 1,
        });
        const { page, nextCursor } = historyPage(rows, query.limit);
        return c.json({
          items: page.map((row) => ({
            channel: row.channel,
            msgId: row.msgId,
            bootId: row.bootId,
            seq: row.seq,
            deviceTs: row.deviceTs,
            receivedAt: row.receivedAt,
            clockSkew: row.clockSkew,
            body: parseBody(row),
          })),
          nextCursor,
        });
      },
    }),

    defineRoute({
      method: 'put',
      path: '/api/v1/devices/:id/desired',
      summary: 'Change desired state; the new version is delivered retained',
      tag: 'devices',
      role: 'operator',
      body: SetDesiredRequest,
      responses: { 200: { description: 'the new desired state', schema: SetDesiredResponse }, ...errors },
      async handle({ c, params, body }) {
        const desired = await fleet.setDesired(params.id!, body);
        if (!desired) throw new ApiError('not_found', `no device ${params.id}`);
        return c.json({ desired });
      },
    }),

    defineRoute({
      method: 'post',
      path: '/api/v1/devices/:id/commands',
      summary: 'Send a command and wait for the reply',
      tag: 'devices',
      role: 'operator',
      body: CommandRequest,
      responses: {
        200: { description: 'the reply (ok or error)', schema: CommandResponse },
        409: { description: 'the device is not connected', schema: ApiErrorShape },
        504: { description: 'no reply in time', schema: ApiErrorShape },
        ...errors,
      },
      async handle({ c, params, body }) {
        const id = params.id!;
        if (body.name === ROTATE_CREDENTIALS_COMMAND) {
          // It carries a secret the control plane must have made: only the rotation sends it.
          throw new ApiError('unprocessable', `${body.name} is sent by POST /api/v1/devices/:id/credentials/rotate`);
        }
        await requireDevice(id);
        const timeoutMs = Math.min(body.timeoutMs ?? deps.commands.defaultTimeoutMs, deps.commands.maxTimeoutMs);
        const result = await fleet.sendCommand(id, { name: body.name, args: body.args }, timeoutMs, c.req.raw.signal);
        if (!result.ok) {
          throw new ApiError(result.error.code === 'offline' ? 'conflict' : 'timeout', result.error.message);
        }
        return c.json({ reply: result.value });
      },
    }),
  ];
}
