import { ApiError as ApiErrorShape } from '@edgeloop/protocol';
import { z } from 'zod';
import type { Route } from './route.ts';

type JsonSchema = Record<string, unknown>;

type SchemaOf = (schema: z.ZodType, io: 'input' | 'output') => JsonSchema;

const LOCAL_DEF = '#/$defs/';

/** Every `$ref` in `node` rewritten by `rename`, as a new value. */
function rewriteRefs(node: unknown, rename: (ref: string) => string): unknown {
  if (Array.isArray(node)) return node.map((item) => rewriteRefs(item, rename));
  if (node === null || typeof node !== 'object') return node;
  return Object.fromEntries(
    Object.entries(node).map(([key, value]) => [
      key,
      key === '$ref' && typeof value === 'string' ? rename(value) : rewriteRefs(value, rename),
    ]),
  );
}

/**
 * JSON Schemas for an OpenAPI document. zod puts recursive and shared parts in a `$defs` of
 * each schema and points at them with `#/$defs/NAME`, which is relative to the schema's own
 * root; inside an OpenAPI document that root is the document, so those pointers dangle. Here
 * every `$defs` entry moves to `components.schemas` (one entry per distinct definition, named
 * after its zod `id` when it has one) and its refs are rewritten to point there.
 */
function createSchemaCollector(): { schemaOf: SchemaOf; components: Record<string, JsonSchema> } {
  const components: Record<string, JsonSchema> = {};
  const names = new Map<string, string>();
  const used = new Set<string>(['Error']);
  const place = (localName: string, key: string): string => {
    const known = names.get(key);
    if (known) return known;
    const base = localName.startsWith('__schema') ? 'Schema' : localName;
    let name = base;
    for (let n = 2; used.has(name); n++) name = `${base}${n}`;
    used.add(name);
    names.set(key, name);
    return name;
  };
  const schemaOf: SchemaOf = (schema, io) => {
    const generated = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
    const { $schema: _dialect, $defs, ...rest } = generated as JsonSchema & { $defs?: Record<string, JsonSchema> };
    if (!$defs) return rest;
    // Two calls share a definition only when their whole $defs agree (local names are per call).
    const callKey = JSON.stringify($defs);
    const global = new Map(Object.keys($defs).map((local) => [local, place(local, `${callKey}\u0000${local}`)]));
    const rename = (ref: string) =>
      ref.startsWith(LOCAL_DEF) ? `#/components/schemas/${global.get(ref.slice(LOCAL_DEF.length)) ?? ref}` : ref;
    for (const [local, definition] of Object.entries($defs)) {
      const name = global.get(local)!;
      components[name] ??= rewriteRefs(definition, rename) as JsonSchema;
    }
    return rewriteRefs(rest, rename) as JsonSchema;
  };
  return { schemaOf, components };
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
  const { schemaOf, components } = createSchemaCollector();
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
    if (route.idempotencyKey) {
      parameters.push({
        name: 'Idempotency-Key',
        in: 'header',
        required: false,
        description: route.idempotencyKey,
        schema: { type: 'string', minLength: 1, maxLength: 257 },
      });
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
  const errorSchema = schemaOf(ApiErrorShape, 'output');
  return {
    openapi: '3.1.0',
    info: {
      title: info.title,
      version: info.version,
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      description:
        'edgeloop control plane: fleet enrollment, health, desired state and commands, model registry, rollouts',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    // Relative: the API is served by the same control plane that serves this document.
    servers: [{ url: '/', description: 'this control plane' }],
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
      schemas: { Error: errorSchema, ...components },
    },
    security: [{ bearerAuth: [] }],
    paths,
  };
}
