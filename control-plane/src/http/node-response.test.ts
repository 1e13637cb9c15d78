import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { get, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { requestId } from 'hono/request-id';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { iterate, member, sampleMetadata, untar } from '../../test/dataset-fixtures.ts';
import { type ExportDeps, type ExportInput, writeDatasetTar } from '../datasets/export.ts';
import type { DatasetMember } from '../datasets/members.ts';
import { TarSinkClosed } from '../datasets/tar-writer.ts';
import { createBlobStore } from '../models/blob-store.ts';
import { nodeResponseOf, streamToNodeResponse } from './node-response.ts';

/*
 * The Node response writer under a real @hono/node-server on port 0, with real HTTP clients: a
 * dataset export written to the socket, a client that leaves half way, a failure before and after
 * the first chunk.
 */

let dir: string;
let server: Server;
let baseUrl: string;
let members: DatasetMember[];
/** The rows the export reads (the members, unless a test breaks them). */
let rows: () => AsyncIterable<DatasetMember>;
let blobs: ExportDeps['blobs'];
/** Settles with how each export ended (null: whole). */
let ended: Promise<unknown>;
let opened: number;

const IMAGES = 200;
const IMAGE_BYTES = 100_000;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'node-response-test-'));
  const store = createBlobStore({ root: join(dir, 'blobs') });
  opened = 0;
  blobs = {
    pathOf: (sha256) => {
      opened++;
      return store.pathOf(sha256);
    },
    sizeOf: (sha256) => store.sizeOf(sha256),
  };
  members = [];
  rows = () => iterate(members);
  for (let i = 0; i < IMAGES; i++) {
    const bytes = Buffer.alloc(IMAGE_BYTES, i + 1);
    bytes.write(`image ${i}`);
    const metadata = sampleMetadata(bytes, { seq: i });
    mkdirSync(dirname(store.pathOf(metadata.image.sha256)), { recursive: true });
    writeFileSync(store.pathOf(metadata.image.sha256), bytes);
    members.push(member(`s${String(i).padStart(3, '0')}`, metadata));
  }
  const input = (): ExportInput => ({
    datasetId: 'bench@1',
    format: 'coco',
    labelled: false,
    categories: [],
    members: () => rows(),
  });
  const app = new Hono();
  app.use('*', requestId());
  app.get('/export', (c) => {
    const outgoing = nodeResponseOf(c);
    if (!outgoing) throw new Error('no Node response under a Node server');
    return streamToNodeResponse(
      c,
      outgoing,
      { status: 200, headers: { 'content-type': 'application/x-tar' } },
      (sink) => {
        const run = writeDatasetTar(input(), { blobs, tmpDir: dir }, sink);
        ended = run.then(
          () => null,
          (error: unknown) => error,
        );
        return run;
      },
    );
  });
  app.onError((error, c) => c.json({ error: error.message }, 500));
  server = createAdaptorServer({ fetch: app.fetch }) as Server;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

/** This process's open descriptors on files under the test directory. */
function descriptorsUnder(path: string): string[] {
  const open: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(path)) open.push(target);
    } catch {
      // closed while listing
    }
  }
  return open;
}

const spools = () => readdirSync(dir).filter((name) => name.startsWith('edgeloop-export-'));

describe('streamToNodeResponse', () => {
  it('writes a whole export to the socket, with the headers the middleware set', async () => {
    const response = await fetch(`${baseUrl}/export`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/x-tar');
    expect(response.headers.get('x-request-id')).toMatch(/\S/);
    const files = await untar(response.body!);
    expect(files.size).toBe(IMAGES + 1);
    expect(files.get(`images/${members[17]!.metadata.image.sha256}.jpg`)!.subarray(0, 8).toString()).toBe('image 17');
    expect(await ended).toBeNull();
    expect(spools()).toEqual([]);
  });

  it('stops reading when the client leaves half way, and leaves no descriptor or temporary file open', async () => {
    const before = descriptorsUnder(dir);
    const received = await new Promise<number>((resolve, reject) => {
      const request = get(`${baseUrl}/export`, (response: IncomingMessage) => {
        let bytes = 0;
        response.on('data', (chunk: Buffer) => {
          bytes += chunk.byteLength;
          // About 1 MB of the 20 MB: then the client goes away.
          if (bytes > 1_000_000) {
            response.pause();
            request.destroy();
            resolve(bytes);
          }
        });
        response.on('error', () => undefined);
      });
      request.on('error', (error) => {
        if (!request.destroyed) reject(error);
      });
    });
    expect(received).toBeGreaterThan(1_000_000);
    expect(await ended).toBeInstanceOf(TarSinkClosed);
    // The images it opened: those of the chunks in flight when the client left, far from all.
    expect(opened).toBeLessThan(IMAGES / 2);
    const openedAtEnd = opened;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(opened).toBe(openedAtEnd);
    expect(descriptorsUnder(dir)).toEqual(before);
    expect(spools()).toEqual([]);
  });

  it('breaks the transfer, never a body that looks whole, when an image shrinks mid-export', async () => {
    const victim = members[150]!.metadata.image.sha256;
    const sizeOf = blobs.sizeOf;
    blobs = {
      pathOf: blobs.pathOf,
      sizeOf(sha256) {
        const size = sizeOf(sha256);
        if (sha256 === victim) truncateSync(blobs.pathOf(sha256), 10);
        return size;
      },
    };
    const response = await fetch(`${baseUrl}/export`);
    expect(response.status).toBe(200);
    await expect(untar(response.body!)).rejects.toThrow();
    expect(String(await ended)).toMatch(/ended after 10 of 100000 bytes/);
    await vi.waitFor(() => expect(spools()).toEqual([]));
  });

  it('answers the error itself when the export fails before its first chunk', async () => {
    rows = async function* () {
      yield* [];
      throw new Error('the database went away');
    };
    const response = await fetch(`${baseUrl}/export`);
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: 'the database went away' });
    expect(String(await ended)).toMatch(/the database went away/);
    expect(spools()).toEqual([]);
  });
});
