import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openSpool } from '@edgeloop/agent';
import { type SampleMetadata, unwrap } from '@edgeloop/protocol';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, type RunningControlPlane, runControlPlane } from '../support.ts';

/*
 * The agent's sample uploader (in a child process) against the real control plane's upload routes,
 * through a TCP proxy that plays a slow, flapping link: 1 MB/s, every connection cut every 2 s.
 * The uploader is SIGKILLed mid-upload of a ~5 MB JPEG and started again on the same spool. Every
 * sample arrives exactly once, byte for byte, and the upload resumed rather than restarted: the
 * bytes that crossed the link are under 1.3x the bytes stored.
 */

const CHILD = fileURLToPath(new URL('./samples-uploader-child.ts', import.meta.url));
const DEVICE = 'cam-upload-1';

type Proxy = { url: string; forwarded: () => number; cuts: () => number; close: () => Promise<void> };

/** Forwards to `target`, at most `bytesPerS` upstream, destroying every connection every `flapMs`. */
async function startFlappingProxy(target: URL, bytesPerS: number, flapMs: number): Promise<Proxy> {
  const sockets = new Set<net.Socket>();
  let forwarded = 0;
  let cuts = 0;
  let windowStart = Date.now();
  let inWindow = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (chunk: Buffer) => {
      forwarded += chunk.length;
      upstream.write(chunk);
      const now = Date.now();
      if (now - windowStart >= 100) {
        windowStart = now;
        inWindow = 0;
      }
      inWindow += chunk.length;
      if (inWindow >= bytesPerS / 10) {
        client.pause();
        setTimeout(() => client.resume(), 100 - (now - windowStart));
      }
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
  });
  const flap = setInterval(() => {
    if (sockets.size > 0) cuts++;
    for (const socket of sockets) socket.destroy();
  }, flapMs);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    forwarded: () => forwarded,
    cuts: () => cuts,
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(flap);
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

async function noiseJpeg(width: number, height: number, quality: number): Promise<Buffer> {
  return sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } })
    .jpeg({ quality, chromaSubsampling: '4:4:4' })
    .toBuffer();
}

function metadataOf(bytes: Buffer, seq: number, width: number, height: number): SampleMetadata {
  return {
    deviceId: DEVICE,
    site: null,
    labels: {},
    model: { id: 'ppocr-det@4.0.0', sha256: 'c'.repeat(64) },
    strategy: 'near-threshold',
    reason: 'e2e',
    tags: ['e2e'],
    predictions: [{ box: [10, 10, 100, 40], score: 0.55, classId: 0, label: 'text' }],
    frameTs: Date.now(),
    bootId: 'boot-e2e',
    seq,
    image: {
      sha256: createHash('sha256').update(bytes).digest('hex'),
      bytes: bytes.length,
      width,
      height,
      contentType: 'image/jpeg',
    },
  };
}

let cp: RunningControlPlane;
let proxy: Proxy;
let spoolDir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  cp = await runControlPlane();
  spoolDir = mkdtempSync(join(tmpdir(), 'edgeloop-e2e-spool-'));
  proxy = await startFlappingProxy(new URL(cp.started.httpUrl), 1024 * 1024, 2000);
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await proxy?.close();
  await cp?.stop();
  rmSync(spoolDir, { recursive: true, force: true });
});

function startUploader(password: string): { child: ChildProcess; uploaded: string[] } {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, spoolDir, proxy.url, DEVICE, password], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const uploaded: string[] = [];
  let buffer = '';
  child.stdout?.on('data', (chunk) => {
    buffer += String(chunk);
    for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      if (line.startsWith('uploaded ')) uploaded.push(line.slice(9));
    }
  });
  return { child, uploaded };
}

describe('sample upload over a flapping link, across a SIGKILL', () => {
  it('stores every spooled sample exactly once and resumes instead of restarting', async () => {
    const { credentials } = await unwrap(cp.client.devices.enroll({ id: DEVICE, labels: {} }));

    const big = await noiseJpeg(1500, 1100, 100);
    expect(big.length).toBeGreaterThan(4 * 1024 * 1024);
    const small = [await noiseJpeg(320, 240, 90), await noiseJpeg(320, 240, 90)];
    const spool = openSpool({ dir: spoolDir, maxBytes: 64 * 1024 * 1024 });
    const samples = [
      { bytes: big, metadata: metadataOf(big, 1, 1500, 1100) },
      ...small.map((bytes, i) => ({ bytes, metadata: metadataOf(bytes, i + 2, 320, 240) })),
    ];
    for (const s of samples) await spool.put(s.metadata, s.bytes);
    const stored = samples.reduce((sum, s) => sum + s.bytes.length, 0);

    // First run: killed once about 1.5 MB of the big image crossed the link.
    const first = startUploader(credentials.password);
    // The child compiles the agent's code with tsx on a cold start: on a loaded machine that alone can
    // take tens of seconds, so the first bytes get a generous wait.
    await eventually(() => proxy.forwarded() > 1.5 * 1024 * 1024, 90_000, 'first MB on the link', 20);
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));
    expect(first.uploaded).toEqual([]);

    const second = startUploader(credentials.password);
    await eventually(() => second.uploaded.length === 3, 90_000, 'three samples uploaded', 100);
    second.child.kill('SIGKILL');

    const list = await unwrap(cp.client.samples.list({ deviceId: DEVICE, limit: 50 }));
    expect(list.items.map((s) => s.image.sha256).sort()).toEqual(samples.map((s) => s.metadata.image.sha256).sort());
    for (const item of list.items) {
      const image = await unwrap(cp.client.samples.image(item.id));
      const bytes = Buffer.from(await new Response(image.body).arrayBuffer());
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(item.image.sha256);
    }
    expect(proxy.cuts()).toBeGreaterThan(0);
    // Resumed, not restarted: what crossed the link (headers and metadata included) stays under 1.3x.
    expect(proxy.forwarded()).toBeLessThan(1.3 * stored);
    console.log(
      `samples e2e: stored ${stored} B, link carried ${proxy.forwarded()} B (${(proxy.forwarded() / stored).toFixed(3)}x), ${proxy.cuts()} cuts`,
    );
  }, 240_000);
});
