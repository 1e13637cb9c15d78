import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { IDEMPOTENT_REPLAYED_HEADER } from '@edgeloop/protocol';
import type { Context } from 'hono';
import type { IdempotencyRepository } from '../db/idempotency.ts';
import type { Counter } from '../metrics.ts';
import { ApiError } from './api-error.ts';
import type { AppEnv } from './route.ts';

/*
 * Idempotency-Key on the POSTs that create things, in the manner of the IETF draft
 * (draft-ietf-httpapi-idempotency-key-header):
 *  - the first request with a key runs and its response (status, content type, body) is stored;
 *  - the same key with the same request (method, path, body bytes) replays that response, with
 *    `Idempotent-Replayed: true`, and runs nothing;
 *  - the same key with another request answers 422 idempotency_key_reused;
 *  - a request whose key is still in flight answers 409 idempotency_key_in_flight;
 *  - records expire after `ttlMs` (24 h by default).
 * Keys are scoped to the caller (token id). A 5xx, or a failure before the response, gives the key
 * back so a retry runs again. The key is stored as a keyed hash and the response as AES-256-GCM
 * ciphertext under a key derived from the Idempotency-Key and the server pepper: an enrollment's
 * response holds the device password, and a copy of the database alone does not reveal it.
 * A streamed (multipart) body is fingerprinted as the handler reads it; a replay must resend the
 * same bytes (the same multipart boundary).
 */

export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';

export type IdempotencyDeps = {
  readonly repo: IdempotencyRepository;
  readonly clock: { now(): number };
  /** Server secret mixed into the key hash and the response key (the data dir's pepper). */
  readonly pepper: Buffer;
  readonly ttlMs: number;
  /** A response larger than this is not stored (the key is given back). */
  readonly maxResponseBytes: number;
  /** An in-flight record older than this is taken over (its request died with its process). */
  readonly inFlightTimeoutMs: number;
  /** Outcomes: stored, replayed, reused, in_flight, released. */
  readonly outcomes?: Counter;
};

/** An sf-string (`"abc"`) or a bare token: 1-255 visible ASCII characters. */
export function parseIdempotencyKey(header: string): string {
  const trimmed = header.trim();
  const quoted = /^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$/.exec(trimmed);
  const key = quoted ? quoted[1]!.replace(/\\(["\\])/g, '$1') : trimmed;
  if (key.length === 0 || key.length > 255 || !/^[\x20-\x7e]+$/.test(key) || (!quoted && /["\s]/.test(key))) {
    throw new ApiError(
      'bad_request',
      'Idempotency-Key must be 1 to 255 visible ASCII characters, as a quoted string ("...") or a bare token',
    );
  }
  return key;
}

type StoredResponse = { readonly status: number; readonly contentType: string | null; readonly body: string };

function responseKey(pepper: Buffer, actor: string, key: string): Buffer {
  return Buffer.from(hkdfSync('sha256', key, Buffer.concat([pepper, Buffer.from(actor)]), 'edgeloop idempotency', 32));
}

function seal(stored: StoredResponse, secret: Buffer): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', secret, iv);
  const text = Buffer.concat([cipher.update(JSON.stringify(stored), 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), text]).toString('base64');
}

function open(sealed: string, secret: Buffer): StoredResponse {
  const bytes = Buffer.from(sealed, 'base64');
  const decipher = createDecipheriv('aes-256-gcm', secret, bytes.subarray(0, 12));
  decipher.setAuthTag(bytes.subarray(12, 28));
  const text = Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString('utf8');
  return JSON.parse(text) as StoredResponse;
}

function replay(stored: StoredResponse): Response {
  const headers = new Headers({ [IDEMPOTENT_REPLAYED_HEADER]: 'true' });
  if (stored.contentType) headers.set('content-type', stored.contentType);
  return new Response(stored.status === 204 ? null : stored.body, { status: stored.status, headers });
}

/** Hashes a body stream to its end (a replay's body, compared with the stored fingerprint). */
async function hashStream(
  hash: ReturnType<typeof createHash>,
  body: ReadableStream<Uint8Array> | null,
): Promise<string> {
  if (body) for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) hash.update(chunk);
  return hash.digest('hex');
}

export type Idempotency = {
  /**
   * Runs `execute` under the request's Idempotency-Key (or plainly without one). `actor` scopes
   * the key; `streamed` says the handler reads the body itself.
   */
  run(
    c: Context<AppEnv>,
    options: { readonly actor: string; readonly streamed: boolean },
    execute: () => Promise<Response>,
  ): Promise<{ readonly response: Response; readonly replayed: boolean }>;
};

export function createIdempotency(deps: IdempotencyDeps): Idempotency {
  const count = (outcome: string) => deps.outcomes?.inc({ outcome });
  return {
    async run(c, options, execute) {
      const header = c.req.header(IDEMPOTENCY_KEY_HEADER);
      if (header === undefined) return { response: await execute(), replayed: false };
      const key = parseIdempotencyKey(header);
      const { actor } = options;
      const keyHash = createHmac('sha256', deps.pepper).update(`${actor}\0${key}`).digest('hex');
      const secret = responseKey(deps.pepper, actor, key);
      const fingerprint = () => createHash('sha256').update(`${c.req.method} ${c.req.path}\n`);
      const requestHash = options.streamed
        ? null
        : fingerprint()
            .update(await c.req.text())
            .digest('hex');
      const now = deps.clock.now();
      const begun = await deps.repo.begin({
        actor,
        keyHash,
        requestHash,
        now,
        expiresAt: now + deps.ttlMs,
        staleBefore: now - deps.inFlightTimeoutMs,
      });
      if (!begun.started) {
        const { record } = begun;
        if (record.state === 'in-flight' || record.response === null) {
          count('in_flight');
          throw new ApiError(
            'idempotency_key_in_flight',
            'a request with this Idempotency-Key is still being processed; retry after it completes',
          );
        }
        const hash = requestHash ?? (await hashStream(fingerprint(), c.req.raw.body));
        if (hash !== record.requestHash) {
          count('reused');
          throw new ApiError(
            'idempotency_key_reused',
            'this Idempotency-Key was used with another request (method, path or body); use a new key',
          );
        }
        count('replayed');
        return { response: replay(open(record.response, secret)), replayed: true };
      }

      // A streamed body is fingerprinted while the handler reads it.
      let streamHash: ReturnType<typeof createHash> | null = null;
      if (options.streamed && c.req.raw.body) {
        const hash = fingerprint();
        streamHash = hash;
        const original = c.req.raw;
        const tapped = original.body!.pipeThrough(
          new TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, controller) {
              hash.update(chunk);
              controller.enqueue(chunk);
            },
          }),
        );
        c.req.raw = new Request(original.url, {
          method: original.method,
          headers: original.headers,
          body: tapped,
          signal: original.signal,
          duplex: 'half',
        } as RequestInit);
      }
      const finalHash = () => requestHash ?? (streamHash ? streamHash.digest('hex') : fingerprint().digest('hex'));
      const release = async () => {
        count('released');
        await deps.repo.release(actor, keyHash);
      };
      const store = async (stored: StoredResponse) => {
        await deps.repo.complete({
          actor,
          keyHash,
          requestHash: finalHash(),
          status: stored.status,
          response: seal(stored, secret),
        });
        count('stored');
      };

      let response: Response;
      try {
        response = await execute();
      } catch (error) {
        // A refusal of this request is its answer (replayed the same); a fault may mend on a retry.
        // A streamed body the handler did not read to its end cannot be fingerprinted: released.
        if (error instanceof ApiError && error.status < 500 && !options.streamed) {
          const body = JSON.stringify({ error: { code: error.code, message: error.message } });
          await store({ status: error.status, contentType: 'application/json', body });
        } else {
          await release();
        }
        throw error;
      }
      if (response.status >= 500) {
        await release();
        return { response, replayed: false };
      }
      const body = await response.clone().text();
      if (Buffer.byteLength(body) > deps.maxResponseBytes) {
        await release();
        return { response, replayed: false };
      }
      await store({ status: response.status, contentType: response.headers.get('content-type'), body });
      return { response, replayed: false };
    },
  };
}
