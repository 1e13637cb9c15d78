import { ApiError as ApiErrorShape } from '@edgeloop/protocol';
import { z } from 'zod';
import type { Route } from './route.ts';

type JsonSchema = Record<string, unknown>;

function schemaOf(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

/** `/api/v1/devices/:id` -> `/api/v1/devices/{id}` and the parameter names. */
function openApiPath(path: string): { path: string; params: string[] } {
  const params: string[] = [];
  const converted = path.replace(/:([A-Za-z0-9_]+)/g, (_match, name: string) => {
    params.push(name);
    return `{${name}}`;
  });
  return { path: converted, params };
}

/** The OpenAPI 3.1 document of the routes, with JSON Schemas generated from their zod schemas. */
export function buildOpenApi(routes: readonly Route[], info: { title: string; version: string }): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const { path, params } = openApiPath(route.path);
    const parameters: unknown[] = params.map((name) => ({
      name,
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    if (route.query) {
      const query = schemaOf(route.query, 'input') as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, schema] of Object.entries(query.properties ?? {})) {
        const repeatable = route.arrayQuery?.includes(name) ?? false;
        parameters.push({
          name,
          in: 'query',
          required: query.required?.includes(name) ?? false,
          schema,
          ...(repeatable ? { style: 'form', explode: true } : {}),
        });
      }
    }
    const responses: Record<string, unknown> = {};
    for (const [status, spec] of Object.entries(route.responses)) {
      const contentType = spec.contentType ?? (spec.schema ? 'application/json' : undefined);
      responses[status] = {
        description: spec.description,
        ...(contentType
          ? { content: { [contentType]: spec.schema ? { schema: schemaOf(spec.schema, 'output') } : {} } }
          : {}),
      };
    }
    if (route.body && !responses['400']) {
      responses['400'] = {
        description: 'the body is not JSON',
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      };
    }
    if ((route.body || route.streamedBody) && !responses['413']) {
      responses['413'] = {
        description: 'the body is too large',
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      };
    }
    paths[path] ??= {};
    paths[path][route.method] = {
      summary: route.summary,
      tags: [route.tag],
      operationId: `${route.method}${path.replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      ...(route.role ? { security: [{ bearerAuth: [] }], 'x-edgeloop-role': route.role } : { security: [] }),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(route.body
        ? {
            requestBody: {
              // Optional bodies (schemas that accept nothing) may be left out.
              required: !route.body.safeParse(undefined).success,
              content: { 'application/json': { schema: schemaOf(route.body, 'input') } },
            },
          }
        : {}),
      ...(route.streamedBody
        ? {
            requestBody: {
              required: true,
              description: `${route.streamedBody.description} (at most ${route.streamedBody.limitBytes} bytes)`,
              content: { [route.streamedBody.contentType]: {} },
            },
          }
        : {}),
      ...(route.customAuth ? { description: route.customAuth } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: info.title,
      version: info.version,
      description:
        'edgeloop control plane: fleet enrollment, health, desired state and commands, model registry, rollouts',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
      schemas: { Error: schemaOf(ApiErrorShape, 'output') },
    },
    security: [{ bearerAuth: [] }],
    paths,
  };
}
