import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Context } from 'hono';

/*
 * Large streamed response bodies written to Node's ServerResponse when the server is
 * @hono/node-server (it is `c.env.outgoing`), not through a web ReadableStream that it pumps into
 * the response: that bridge costs a read promise and a queue turn per chunk, and a stream that
 * hands out chunks cannot learn when the socket is done with one, so every chunk is fresh memory.
 * Here the producer writes chunks itself, waits on 'drain' when the response says so, and gets
 * each chunk back (to reuse it) once the socket has taken its bytes.
 *
 * Hono's flow is kept: the handler still returns a Response (marked x-hono-already-sent, which
 * the node server leaves alone), so the middleware around it (the request counter, X-Request-Id)
 * runs as for any route. The head is written with the first chunk and carries the headers the
 * middleware had set on the context. An error before the first chunk rejects, so the app answers
 * it as JSON like any other; after it the response is destroyed (the client sees a broken
 * transfer, never a body that looks whole). A client that goes away closes the sink.
 */

/** What a producer writes its chunks to (the shape of datasets/tar-writer.ts TarSink). */
export type ChunkSink = {
  /** Takes a chunk; `release` runs once the socket has its bytes. False: wait for ready() before the next. */
  write(chunk: Buffer, release: () => void): boolean;
  /** Resolves when the response drained, or closed. */
  ready(): Promise<void>;
  /** The client went away (or the response failed): nothing more is taken. */
  readonly closed: boolean;
};

/** The header @hono/node-server reads as "the handler wrote the response itself". */
const ALREADY_SENT = 'x-hono-already-sent';

/** The ServerResponse under this request, while nothing has been written to it. */
export function nodeResponseOf(c: Context): ServerResponse | null {
  const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
  if (!outgoing || typeof outgoing.writeHead !== 'function' || typeof outgoing.write !== 'function') return null;
  if (outgoing.headersSent || outgoing.writableEnded || outgoing.destroyed) return null;
  // A HEAD answer has no body: the web path lets the server drop it without producing it here.
  if (c.req.method !== 'GET' && c.req.method !== 'POST') return null;
  return outgoing;
}

/** The headers of a Response as Node writes them (set-cookie kept as a list). */
function outgoingHeaders(headers: Headers): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of headers) {
    if (name !== 'set-cookie') out[name] = value;
  }
  const cookies = headers.getSetCookie();
  if (cookies.length > 0) out['set-cookie'] = cookies;
  return out;
}

/**
 * Streams `produce`'s chunks as the body of `outgoing` with `status` and `headers`. Resolves
 * with the Response the handler returns once the head is written (or the client left first);
 * rejects with `produce`'s error when it fails before its first chunk.
 */
export function streamToNodeResponse(
  c: Context,
  outgoing: ServerResponse,
  init: { readonly status: number; readonly headers: Record<string, string> },
  produce: (sink: ChunkSink) => Promise<void>,
): Promise<Response> {
  const handled = () => new Response(null, { status: init.status, headers: { [ALREADY_SENT]: 'true' } });
  return new Promise<Response>((resolve, reject) => {
    let started = false;
    let closed = false;
    let waiting: (() => void) | null = null;
    const wake = () => {
      const next = waiting;
      waiting = null;
      next?.();
    };
    const onClose = () => {
      closed = true;
      wake();
    };
    // Writes after the client left are refused (closed); an error here is the socket's, and the
    // 'close' that follows it ends the producer.
    const onError = () => onClose();
    outgoing.on('close', onClose);
    outgoing.on('error', onError);
    outgoing.on('drain', wake);
    const detach = () => {
      outgoing.off('close', onClose);
      outgoing.off('drain', wake);
      // onError stays: a late socket error has a listener, not a crash.
    };
    const start = () => {
      started = true;
      // c.body merges what the middleware set on the context (X-Request-Id) with these headers.
      const prepared = c.body(null, init.status as 200, init.headers);
      outgoing.writeHead(init.status, outgoingHeaders(prepared.headers));
      resolve(handled());
    };
    const sink: ChunkSink = {
      write(chunk, release) {
        if (closed) return false;
        if (!started) start();
        return outgoing.write(chunk, (error) => {
          if (!error) release();
        });
      },
      ready() {
        if (closed || !outgoing.writableNeedDrain) return Promise.resolve();
        return new Promise<void>((resolve) => {
          waiting = resolve;
        });
      },
      get closed() {
        return closed;
      },
    };
    const finish = (error: unknown) => {
      detach();
      if (!started) {
        if (error === null) {
          // The client left before the first chunk, or there was none: nothing to send but the head.
          if (!closed) start();
          else resolve(handled());
        } else if (closed) resolve(handled());
        else {
          reject(error);
          return;
        }
      }
      if (error === null && !closed) outgoing.end();
      else if (!outgoing.destroyed) outgoing.destroy(error instanceof Error ? error : undefined);
    };
    produce(sink).then(
      () => finish(null),
      (error: unknown) => finish(error ?? new Error('the response producer failed')),
    );
  });
}
