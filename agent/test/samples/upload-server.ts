import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SAMPLE_UPLOAD_OFFSET_HEADER, SampleMetadata } from '@edgeloop/protocol';

/*
 * A small HTTP server speaking the resumable sample upload protocol of protocol/src/samples.ts,
 * for the agent's uploader tests (the agent may not import the control plane). It keeps the bytes
 * of a PATCH cut short (as tus servers do), checks the device credential, the sha256 and the size
 * limit, and can cut connections to play a flapping link.
 */

type Upload = { id: string; deviceId: string; metadata: SampleMetadata; bytes: Buffer[]; offset: number };

export type UploadServer = {
  readonly url: string;
  readonly stored: Map<string, { metadata: SampleMetadata; bytes: Buffer }>;
  /** Bytes of PATCH bodies that reached the server (including parts of cut requests). */
  readonly received: () => number;
  readonly requests: Record<'POST' | 'HEAD' | 'PATCH', number>;
  /** A flapping link: cuts the PATCH connection each time the bytes received cross a multiple of this (null: never). */
  flapEvery(bytes: number | null): void;
  /** Connections cut so far. */
  readonly cuts: () => number;
  /** Answers every POST with this status (a rejection) until cleared with null. */
  rejectPostsWith(status: number | null): void;
  close(): Promise<void>;
};

export async function startUploadServer(options: { password: string; maxBytes?: number }): Promise<UploadServer> {
  const uploads = new Map<string, Upload>();
  const bySha = new Map<string, Upload>();
  const stored = new Map<string, { metadata: SampleMetadata; bytes: Buffer }>();
  const requests = { POST: 0, HEAD: 0, PATCH: 0 };
  const maxBytes = options.maxBytes ?? 20 * 1024 * 1024;
  let received = 0;
  let flap: number | null = null;
  let cuts = 0;
  let rejectStatus: number | null = null;

  function deviceOf(req: IncomingMessage): string | null {
    const header = req.headers.authorization ?? '';
    if (!header.startsWith('Basic ')) return null;
    const [user, password] = Buffer.from(header.slice(6), 'base64').toString('utf8').split(':');
    return password === options.password && user ? user : null;
  }

  function json(res: ServerResponse, status: number, body: unknown, offset?: number): void {
    res.writeHead(status, {
      'content-type': 'application/json',
      ...(offset === undefined ? {} : { [SAMPLE_UPLOAD_OFFSET_HEADER]: String(offset) }),
    });
    res.end(JSON.stringify(body));
  }

  const server = createServer((req, res) => {
    const device = deviceOf(req);
    if (!device) return json(res, 401, { error: { code: 'unauthorized' } });
    const match = /^\/api\/v1\/samples\/uploads(?:\/([^/]+))?$/.exec(req.url ?? '');
    if (!match) return json(res, 404, { error: { code: 'not_found' } });
    const id = match[1];
    if (req.method === 'POST' && !id) {
      requests.POST++;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (rejectStatus !== null) return json(res, rejectStatus, { error: { code: 'rejected' } });
        const parsed = SampleMetadata.safeParse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        if (!parsed.success) return json(res, 400, { error: { code: 'invalid_metadata' } });
        const metadata = parsed.data;
        if (metadata.deviceId !== device) return json(res, 403, { error: { code: 'forbidden' } });
        if (metadata.image.bytes > maxBytes) return json(res, 413, { error: { code: 'too_large' } });
        const sha = metadata.image.sha256;
        if (stored.has(sha))
          return json(res, 200, { uploadId: 'done', offset: metadata.image.bytes, complete: true, sampleId: sha });
        const existing = bySha.get(sha);
        if (existing)
          return json(res, 200, { uploadId: existing.id, offset: existing.offset, complete: false, sampleId: null });
        const upload: Upload = { id: randomUUID(), deviceId: device, metadata, bytes: [], offset: 0 };
        uploads.set(upload.id, upload);
        bySha.set(sha, upload);
        return json(res, 201, { uploadId: upload.id, offset: 0, complete: false, sampleId: null });
      });
      return;
    }
    const upload = id ? uploads.get(id) : undefined;
    if (!upload) return json(res, 404, { error: { code: 'not_found' } });
    if (upload.deviceId !== device) return json(res, 403, { error: { code: 'forbidden' } });
    if (req.method === 'HEAD') {
      requests.HEAD++;
      res.writeHead(204, { [SAMPLE_UPLOAD_OFFSET_HEADER]: String(upload.offset) });
      return res.end();
    }
    if (req.method !== 'PATCH') return json(res, 405, { error: { code: 'method_not_allowed' } });
    requests.PATCH++;
    if (Number(req.headers[SAMPLE_UPLOAD_OFFSET_HEADER]) !== upload.offset) {
      req.resume();
      return json(res, 409, { error: { code: 'offset_mismatch' } }, upload.offset);
    }
    let cutDone = false;
    req.on('data', (chunk: Buffer) => {
      if (cutDone) return;
      let take = chunk;
      if (flap !== null) {
        const nextCut = (Math.floor(received / flap) + 1) * flap;
        if (received + chunk.length >= nextCut) {
          take = chunk.subarray(0, nextCut - received);
          cutDone = true;
        }
      }
      received += take.length;
      upload.bytes.push(Buffer.from(take));
      upload.offset += take.length;
      if (cutDone) {
        cuts++;
        req.socket.destroy();
      }
    });
    req.on('end', () => {
      const size = upload.metadata.image.bytes;
      if (upload.offset < size) return json(res, 204, null, upload.offset);
      const bytes = Buffer.concat(upload.bytes);
      uploads.delete(upload.id);
      bySha.delete(upload.metadata.image.sha256);
      if (bytes.length !== size || createHash('sha256').update(bytes).digest('hex') !== upload.metadata.image.sha256) {
        return json(res, 422, { error: { code: 'hash_mismatch' } });
      }
      stored.set(upload.metadata.image.sha256, { metadata: upload.metadata, bytes });
      return json(res, 201, {
        uploadId: upload.id,
        offset: size,
        complete: true,
        sampleId: upload.metadata.image.sha256,
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stored,
    received: () => received,
    requests,
    flapEvery(bytes) {
      flap = bytes;
    },
    cuts: () => cuts,
    rejectPostsWith(status) {
      rejectStatus = status;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
