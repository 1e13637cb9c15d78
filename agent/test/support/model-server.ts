import http from 'node:http';
import type { AddressInfo } from 'node:net';

/*
 * A small HTTP file server standing in for the control plane's model registry
 * (`GET /api/v1/models/:name/:version/file`): HTTP Range (206 + Content-Range, 416 past the end),
 * HTTP Basic device credentials, optional throttling, and faults on request (503s, a connection
 * cut after N bytes, a server that ignores Range or sends too much). Every request is logged.
 */

export type ServedRequest = {
  readonly path: string;
  readonly range: string | null;
  readonly authorization: string | null;
  status: number;
  bytesSent: number;
};

export type ServerFaults = {
  /** Answer the next N requests with 503. */
  failNext?: number;
  /** Cut the connection of the next request after this many bytes of body. */
  cutAfterBytes?: number;
  /** Answer 200 with the whole file, whatever the Range. */
  ignoreRange?: boolean;
  /** Append this many bytes of garbage after the file. */
  extraBytes?: number;
  /** Answer 206 with a Content-Range starting elsewhere than asked. */
  wrongRangeStart?: boolean;
};

export type ModelServer = {
  readonly url: string;
  readonly requests: ServedRequest[];
  readonly faults: ServerFaults;
  /** Serves `bytes` at `path` (e.g. /api/v1/models/det/2.0.0/file). */
  serve(path: string, bytes: Uint8Array): void;
  /** Throttle: body chunks of `bytes` every `delayMs` (0: as fast as possible). */
  throttle(bytes: number, delayMs: number): void;
  /** Requests for a path. */
  requestsFor(path: string): ServedRequest[];
  close(): Promise<void>;
};

export async function startModelServer(
  options: { readonly credentials?: { readonly username: string; readonly password: string } } = {},
): Promise<ModelServer> {
  const files = new Map<string, Uint8Array>();
  const requests: ServedRequest[] = [];
  const faults: ServerFaults = {};
  let chunkBytes = 64 * 1024;
  let delayMs = 0;
  const expectedAuth = options.credentials
    ? `Basic ${Buffer.from(`${options.credentials.username}:${options.credentials.password}`).toString('base64')}`
    : null;

  const server = http.createServer((req, res) => {
    const entry: ServedRequest = {
      path: req.url ?? '',
      range: req.headers.range ?? null,
      authorization: req.headers.authorization ?? null,
      status: 0,
      bytesSent: 0,
    };
    requests.push(entry);
    const reply = (status: number, body = '') => {
      entry.status = status;
      res.writeHead(status, { 'content-type': 'text/plain' }).end(body);
    };
    if (expectedAuth !== null && req.headers.authorization !== expectedAuth) return reply(401, 'unauthorized');
    if ((faults.failNext ?? 0) > 0) {
      faults.failNext = (faults.failNext ?? 0) - 1;
      return reply(503, 'busy');
    }
    const file = files.get(entry.path);
    if (!file) return reply(404, 'no such model');
    let start = 0;
    let status = 200;
    const match = faults.ignoreRange ? null : /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (match) {
      start = Number(match[1]);
      if (start >= file.byteLength) {
        entry.status = 416;
        res.writeHead(416, { 'content-range': `bytes */${file.byteLength}` }).end();
        return;
      }
      status = 206;
    }
    let body = file.subarray(start);
    if (faults.extraBytes) body = Buffer.concat([body, Buffer.alloc(faults.extraBytes, 7)]);
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'accept-ranges': 'bytes',
      'content-length': String(body.byteLength),
    };
    if (status === 206) {
      const shownStart = faults.wrongRangeStart ? 0 : start;
      headers['content-range'] = `bytes ${shownStart}-${file.byteLength - 1}/${file.byteLength}`;
    }
    entry.status = status;
    res.writeHead(status, headers);
    const cutAfter = faults.cutAfterBytes;
    faults.cutAfterBytes = undefined;
    let offset = 0;
    let closed = false;
    res.on('close', () => {
      closed = true;
    });
    const pump = () => {
      if (closed) return;
      if (offset >= body.byteLength) {
        res.end();
        return;
      }
      let end = Math.min(body.byteLength, offset + chunkBytes);
      if (cutAfter !== undefined && end >= cutAfter) end = cutAfter;
      const chunk = body.subarray(offset, end);
      offset = end;
      entry.bytesSent += chunk.byteLength;
      const drained = res.write(chunk);
      if (cutAfter !== undefined && offset >= cutAfter) {
        // Let the bytes go out, then cut the connection mid-body.
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      const next = () => (delayMs > 0 ? setTimeout(pump, delayMs) : setImmediate(pump));
      if (drained) next();
      else res.once('drain', next);
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    faults,
    serve(path, bytes) {
      files.set(path, bytes);
    },
    throttle(bytes, ms) {
      chunkBytes = bytes;
      delayMs = ms;
    },
    requestsFor: (path) => requests.filter((request) => request.path === path),
    close() {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
