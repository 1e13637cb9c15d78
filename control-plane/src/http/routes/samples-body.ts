import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';

/*
 * Request bodies of the sample upload routes, read from Node's IncomingMessage when the server is
 * @hono/node-server (it is `c.env.incoming`), not through the web Request it builds around it on
 * first use of the body: that bridge (a Request, an AbortController, a ReadableStream and a copy of
 * every chunk) cost more CPU per upload than the route's own checks at hundreds of uploads a
 * second. Off a socket (app.request in tests), or once something has read the web body, the web
 * body is used.
 */

/** The IncomingMessage under this request, while nothing has started reading its body. */
function untouchedIncoming(c: Context): IncomingMessage | null {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (!incoming || typeof incoming.on !== 'function') return null;
  // The web body (Readable.toWeb) listens for data as soon as it exists: then it owns the stream.
  if (incoming.readableEnded || incoming.listenerCount('data') > 0 || incoming.readableFlowing !== null) return null;
  return incoming;
}

/** The body as chunks: Node's stream when it can be had, else the web body (empty without one). */
export function bodyChunks(c: Context): AsyncIterable<Uint8Array> {
  return untouchedIncoming(c) ?? ((c.req.raw.body ?? []) as AsyncIterable<Uint8Array>);
}

/** The body broke off before its Content-Length (the client went away or the link broke). */
export class BodyBrokeOff extends Error {
  readonly received: number;
  constructor(received: number, declared: number) {
    super(`the request body broke off after ${received} of ${declared} bytes`);
    this.name = 'BodyBrokeOff';
    this.received = received;
  }
}

/**
 * The whole body, of `declared` bytes (its Content-Length, which Node's parser holds the request
 * to), as one Buffer: each chunk is copied once, into place. Rejects with BodyBrokeOff when the
 * body ends short.
 */
export async function readWholeBody(c: Context, declared: number): Promise<Buffer> {
  const incoming = untouchedIncoming(c);
  if (!incoming) {
    const bytes = Buffer.from(await c.req.arrayBuffer());
    if (bytes.length < declared) throw new BodyBrokeOff(bytes.length, declared);
    return bytes;
  }
  return new Promise<Buffer>((resolve, reject) => {
    const body = Buffer.allocUnsafe(declared);
    let received = 0;
    let settled = false;
    const done = (error: Error | null) => {
      if (settled) return;
      settled = true;
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('close', onClose);
      // onError stays: an error emitted later (a reset after the body) has a listener, not a crash.
      if (error) reject(error);
      else resolve(body);
    };
    const onData = (chunk: Buffer) => {
      // Node's parser stops at Content-Length; this only guards the copy.
      const take = Math.min(chunk.length, declared - received);
      chunk.copy(body, received, 0, take);
      received += take;
    };
    const onEnd = () => done(received < declared ? new BodyBrokeOff(received, declared) : null);
    const onError = (error: Error) => done(error);
    const onClose = () => {
      if (!incoming.readableEnded) done(new BodyBrokeOff(received, declared));
    };
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onError);
    incoming.on('close', onClose);
  });
}
