import { z } from 'zod';
import * as api from './api.ts';
import { CHANNEL_SCHEMAS } from './codec.ts';
import { ModelManifest, ModelRelease, SignedModelRelease } from './models.ts';

/**
 * JSON Schema (draft 2020-12) of every message and document, keyed by file stem, for clients not
 * written in TypeScript. Schemas describe the accepted input (defaults may be left out).
 */
export function jsonSchemas(): Record<string, unknown> {
  const documents: Record<string, z.ZodType> = {
    ...Object.fromEntries(Object.entries(CHANNEL_SCHEMAS).map(([channel, schema]) => [`message.${channel}`, schema])),
    'model.manifest': ModelManifest,
    'model.release': ModelRelease,
    'model.signed-release': SignedModelRelease,
    'api.enroll-device-request': api.EnrollDeviceRequest,
    'api.enroll-device-response': api.EnrollDeviceResponse,
    'api.patch-device-request': api.PatchDeviceRequest,
    'api.device': api.DeviceView,
    'api.device-list': api.DeviceList,
    'api.fleet-summary': api.FleetSummary,
    'api.error': api.ApiError,
  };
  return Object.fromEntries(
    Object.entries(documents).map(([name, schema]) => [
      name,
      {
        $id: `https://edgeloop.dev/schemas/${name}.json`,
        ...z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }),
      },
    ]),
  );
}
