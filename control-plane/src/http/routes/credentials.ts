import {
  ApiError as ApiErrorShape,
  DEFAULT_ROTATION_OVERLAP_S,
  ROTATE_CREDENTIALS_COMMAND,
  RotateCredentialsRequest,
  RotateCredentialsResponse,
} from '@edgeloop/protocol';
import type { CommandConfig } from '../../config.ts';
import type { DeviceRepository } from '../../db/repositories.ts';
import type { DeviceSecrets } from '../../device-secrets.ts';
import type { Fleet } from '../../fleet.ts';
import { ApiError } from '../api-error.ts';
import { defineRoute, type Route } from '../route.ts';

/*
 * POST /api/v1/devices/:id/credentials/rotate: a new device secret with an overlap
 * (device-secrets.ts), and its delivery to the agent on the device's own command topic
 * (rotate-credentials): the agent stores it, reconnects with it (the first such login promotes
 * it) and answers. The answer holds the secret once; the audit entry names only the device, the
 * deadline's outcome and the delivery state (summary.ts keeps no `password`).
 */

export type CredentialRoutesDeps = {
  readonly devices: Pick<DeviceRepository, 'get'>;
  readonly secrets: Pick<DeviceSecrets, 'rotate'>;
  readonly fleet: Pick<Fleet, 'sendCommand'>;
  readonly isConnected: (deviceId: string) => boolean;
  readonly commands: CommandConfig;
};

/**
 * How long the delivery waits for the agent's answer: it answers after its reconnect with the new
 * secret (or its fall back to the old one), so this is more than a plain command's default.
 */
const DELIVERY_TIMEOUT_MS = 30_000;

export function credentialRoutes(deps: CredentialRoutesDeps): Route[] {
  return [
    defineRoute({
      method: 'post',
      path: '/api/v1/devices/:id/credentials/rotate',
      summary:
        'Rotate the device secret: the new one is shown once; the old one works until the device connects with the new one, or until the deadline',
      tag: 'devices',
      role: 'operator',
      body: RotateCredentialsRequest.optional(),
      responses: {
        200: { description: 'the new secret and what became of its delivery', schema: RotateCredentialsResponse },
        401: { description: 'missing or invalid token', schema: ApiErrorShape },
        403: { description: 'the token lacks the role', schema: ApiErrorShape },
        404: { description: 'no such device', schema: ApiErrorShape },
        409: { description: 'deliver true, and the device is not connected (nothing rotated)', schema: ApiErrorShape },
        422: { description: 'invalid request', schema: ApiErrorShape },
      },
      async handle({ c, params, body }) {
        const id = params.id!;
        if (!(await deps.devices.get(id))) throw new ApiError('not_found', `no device ${id}`);
        const connected = deps.isConnected(id);
        if (body?.deliver === true && !connected) {
          throw new ApiError(
            'conflict',
            `device ${id} is not connected: nothing was rotated. Retry when it is online, or rotate with deliver false and install the secret on the device yourself`,
          );
        }
        const deliver = body?.deliver ?? connected;
        const rotated = await deps.secrets.rotate(id, (body?.overlapS ?? DEFAULT_ROTATION_OVERLAP_S) * 1000);
        if (!rotated) throw new ApiError('not_found', `no device ${id}`);

        let delivery: RotateCredentialsResponse['delivery'] = { state: 'not-sent' };
        if (deliver) {
          const timeoutMs = Math.min(DELIVERY_TIMEOUT_MS, deps.commands.maxTimeoutMs);
          const sent = await deps.fleet.sendCommand(
            id,
            { name: ROTATE_CREDENTIALS_COMMAND, args: { password: rotated.password, deadline: rotated.deadline } },
            timeoutMs,
            c.req.raw.signal,
          );
          if (!sent.ok) delivery = { state: sent.error.code, message: sent.error.message };
          else if (sent.value.ok) delivery = { state: 'applied' };
          else delivery = { state: 'failed', message: `${sent.value.error.code}: ${sent.value.error.message}` };
        }
        const answer: RotateCredentialsResponse = {
          deviceId: id,
          password: rotated.password,
          deadline: rotated.deadline,
          delivery,
        };
        // The audit entry reads this, not the answer: the device and the delivery, never the secret.
        c.set('auditResult', { id, status: delivery.state });
        // A secret: no cache keeps it.
        return c.json(answer, 200, { 'cache-control': 'no-store' });
      },
    }),
  ];
}
