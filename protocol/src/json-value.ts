import { z } from 'zod';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** Any JSON value (what `JSON.parse` can return), for free-form config and event data. */
export const JsonValue: z.ZodType<JsonValue> = z
  .lazy(() =>
    z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(JsonValue), z.record(z.string(), JsonValue)]),
  )
  .meta({ id: 'JsonValue', description: 'Any JSON value: string, number, boolean, null, array or object' });

export const JsonObject = z
  .record(z.string(), JsonValue)
  .describe('A JSON object with free-form values (config, command arguments, event data)');
export type JsonObject = z.infer<typeof JsonObject>;
