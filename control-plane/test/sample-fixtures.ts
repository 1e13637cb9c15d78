import { createHash } from 'node:crypto';
import { request } from 'node:http';
import {
  SAMPLE_UPLOAD_CONTENT_TYPE,
  SAMPLE_UPLOAD_OFFSET_HEADER,
  type SampleMetadataInput,
  type SampleUploadState,
} from '@edgeloop/protocol';
import sharp from 'sharp';

/*
 * Hard-sample fixtures for tests and benches: real JPEGs made by sharp, metadata for them, and a
 * small uploader speaking the resumable protocol over real HTTP (node:http, so a test can cut a
 * chunk off mid-body).
 */

/** A real JPEG of noise (incompressible, so its size tracks the pixel count), seeded. */
export async function makeJpeg(width: number, height: number, seed = 1): Promise<Buffer> {
  const pixels = Buffer.alloc(width * height * 3);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < pixels.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    pixels[i] = state & 0xff;
  }
  return sharp(pixels, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function metadataFor(
  deviceId: string,
  jpeg: Buffer,
  size: { width: number; height: number },
  overrides: Partial<SampleMetadataInput> = {},
): SampleMetadataInput {
  return {
    deviceId,
    site: 'north',
    labels: { site: 'north' },
    model: { id: 'det@1.0.0', sha256: 'a'.repeat(64) },
    strategy: 'near-threshold',
    reason: '1 detection within 0.5 +- 0.1',
    tags: ['unsure'],
    predictions: [{ box: [2, 3, 20, 24], score: 0.52, classId: 0, label: 'text' }],
    frameTs: 1_800_000_000_000,
    bootId: 'boot0001',
    seq: 1,
    image: { sha256: sha256Hex(jpeg), bytes: jpeg.length, width: size.width, height: size.height },
    ...overrides,
  };
}

export function basicAuth(deviceId: string, password: string): string {
  return `Basic ${Buffer.from(`${deviceId}:${password}`).toString('base64')}`;
}

export type HttpReply = { status: number; headers: Record<string, string | string[] | undefined>; body: string };

/**
 * One request over a real socket. With `cutAfter`, only that many body bytes are written before
 * the socket is destroyed (a link that breaks mid-chunk); the reply is then null.
 */
export function httpRequest(
  url: string,
  options: {
    method: string;
    headers?: Record<string, string>;
    body?: Uint8Array | string;
    cutAfter?: number;
  },
): Promise<HttpReply | null> {
  return new Promise((resolve, reject) => {
    const body = typeof options.body === 'string' ? Buffer.from(options.body) : options.body;
    const req = request(url, {
      method: options.method,
      headers: { ...(options.headers ?? {}), ...(body ? { 'content-length': String(body.length) } : {}) },
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    if (options.cutAfter !== undefined && body) {
      req.on('error', () => resolve(null));
      req.flushHeaders();
      req.write(body.subarray(0, options.cutAfter), () => {
        // Give the server a moment to read the bytes, then break the link.
        setTimeout(() => {
          req.destroy();
          resolve(null);
        }, 100);
      });
      return;
    }
    req.on('error', reject);
    req.end(body);
  });
}

/** Uploads a sample in chunks; returns the final state and the body bytes sent. */
export async function uploadSample(
  baseUrl: string,
  auth: string,
  metadata: SampleMetadataInput,
  bytes: Buffer,
  chunkSize = 64 * 1024,
): Promise<{ state: SampleUploadState; bytesSent: number }> {
  const begun = await httpRequest(`${baseUrl}/api/v1/samples/uploads`, {
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: JSON.stringify(metadata),
  });
  if (!begun || (begun.status !== 201 && begun.status !== 200)) {
    throw new Error(`begin: ${begun?.status} ${begun?.body}`);
  }
  let state = JSON.parse(begun.body) as SampleUploadState;
  let bytesSent = 0;
  while (!state.complete) {
    const chunk = bytes.subarray(state.offset, state.offset + chunkSize);
    const reply = await httpRequest(`${baseUrl}/api/v1/samples/uploads/${state.uploadId}`, {
      method: 'PATCH',
      headers: {
        authorization: auth,
        'content-type': SAMPLE_UPLOAD_CONTENT_TYPE,
        [SAMPLE_UPLOAD_OFFSET_HEADER]: String(state.offset),
      },
      body: chunk,
    });
    bytesSent += chunk.length;
    if (!reply) throw new Error('chunk lost');
    if (reply.status === 201) state = JSON.parse(reply.body) as SampleUploadState;
    else if (reply.status === 204) state = { ...state, offset: Number(reply.headers[SAMPLE_UPLOAD_OFFSET_HEADER]) };
    else throw new Error(`chunk: ${reply.status} ${reply.body}`);
  }
  return { state, bytesSent };
}
