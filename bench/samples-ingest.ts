// Sample ingest (issue 8, bench part b): 100 devices uploading 200 KB JPEGs to the control plane's
// sample uploads (device auth, sha256 and JPEG frame-header check, content-addressed blob made
// durable before the ack, SQLite row, audit entry), against a bare Hono route on
// @hono/node-server that writes the same bytes to a file (with fsync) in the same run. The ratio
// reported as THE ratio is the one-request upload's (POST /samples) rate / the bare route's, target
// >= 0.7; the resumable one (POST + PATCH) has its own. The devices run in a child process (as real
// devices would be elsewhere), with every body built before the clock starts, so each server's
// own cost is measured.
//
// Environment: BENCH_SAMPLE_DEVICES (100), BENCH_SAMPLES_PER_DEVICE (10), BENCH_SAMPLE_KB (200),
// BENCH_SAMPLE_MODES (bare,whole,resumable: which runs, e.g. `whole` alone under --cpu-prof),
// BENCH_SAMPLE_ROUNDS (1: rounds of every run, medians reported).

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Server } from 'node:http';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createControlPlane, loadConfig } from '@edgeloop/control-plane';
import { createApiClient, SAMPLE_UPLOAD_CONTENT_TYPE, SAMPLE_UPLOAD_OFFSET_HEADER, unwrap } from '@edgeloop/protocol';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import pino from 'pino';
import sharp from 'sharp';
import { metadataFor } from '../control-plane/test/sample-fixtures.ts';
import { reportResult } from './report.ts';

const run = promisify(execFile);

const DEVICES = Number(process.env.BENCH_SAMPLE_DEVICES ?? 100);
const PER_DEVICE = Number(process.env.BENCH_SAMPLES_PER_DEVICE ?? 10);
const TARGET_KB = Number(process.env.BENCH_SAMPLE_KB ?? 200);
const ROUNDS = Number(process.env.BENCH_SAMPLE_ROUNDS ?? 1);
const MODES = new Set((process.env.BENCH_SAMPLE_MODES ?? 'bare,whole,resumable').split(','));
const agent = new Agent({ keepAlive: true, maxSockets: DEVICES });

function send(
  url: string,
  method: string,
  headers: Record<string, string>,
  body: Uint8Array,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent, headers: { ...headers, 'content-length': String(body.length) } });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A noise JPEG close to TARGET_KB, and unique copies of it (a distinct COM segment each). */
async function baseJpeg(): Promise<{ jpeg: Buffer; width: number; height: number }> {
  let side = 256;
  for (;;) {
    const pixels = randomBytes(side * side * 3);
    const jpeg = await sharp(pixels, { raw: { width: side, height: side, channels: 3 } })
      .jpeg({ quality: 80 })
      .toBuffer();
    if (jpeg.length >= TARGET_KB * 1000 * 0.95 || side > 2048) return { jpeg, width: side, height: side };
    side = Math.ceil(side * Math.sqrt((TARGET_KB * 1000) / jpeg.length));
  }
}

function uniqueCopy(jpeg: Buffer, tag: string): Buffer {
  const text = Buffer.from(tag);
  const segment = Buffer.alloc(4 + text.length);
  segment.writeUInt16BE(0xfffe, 0);
  segment.writeUInt16BE(text.length + 2, 2);
  text.copy(segment, 4);
  return Buffer.concat([jpeg.subarray(0, 2), segment, jpeg.subarray(2)]);
}

async function runDevices(job: (device: number, sample: number) => Promise<void>): Promise<number> {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: DEVICES }, async (_, device) => {
      for (let sample = 0; sample < PER_DEVICE; sample++) await job(device, sample);
    }),
  );
  return (performance.now() - started) / 1000;
}

type ClientJob = {
  readonly mode: 'bare' | 'cp' | 'cp-whole';
  readonly url: string;
  readonly basePath: string;
  readonly size: { width: number; height: number };
  readonly auths: readonly string[];
};

/** The devices (child process): every image and metadata body is made before the clock starts. */
async function client(job: ClientJob): Promise<void> {
  const base = readFileSync(job.basePath);
  const images = Array.from({ length: DEVICES }, (_, d) =>
    Array.from({ length: PER_DEVICE }, (_, s) => uniqueCopy(base, `bench ${d} ${s}`)),
  );
  const bodies = images.map((row, device) =>
    row.map((jpeg, sample) =>
      Buffer.from(JSON.stringify(metadataFor(`bench-${device}`, jpeg, job.size, { seq: sample }))),
    ),
  );
  // The one-request bodies (multipart/form-data: metadata, then image) are built before the clock
  // starts too, as a device's HTTP client would have them ready.
  const boundary = 'benchboundary7d1c';
  const forms =
    job.mode === 'cp-whole'
      ? images.map((row, device) =>
          row.map((jpeg, sample) =>
            Buffer.concat([
              Buffer.from(
                `--${boundary}\r\ncontent-disposition: form-data; name="metadata"\r\n\r\n${bodies[device]![sample]!.toString()}\r\n` +
                  `--${boundary}\r\ncontent-disposition: form-data; name="image"; filename="s.jpg"\r\ncontent-type: image/jpeg\r\n\r\n`,
              ),
              jpeg,
              Buffer.from(`\r\n--${boundary}--\r\n`),
            ]),
          ),
        )
      : [];
  let bytes = 0;
  const cpu = process.cpuUsage();
  const seconds = await runDevices(async (device, sample) => {
    const jpeg = images[device]![sample]!;
    bytes += jpeg.length;
    if (job.mode === 'bare') {
      const reply = await send(`${job.url}/upload`, 'POST', { 'content-type': 'image/jpeg' }, jpeg);
      if (reply.status !== 201) throw new Error(`bare: ${reply.status}`);
      return;
    }
    const auth = job.auths[device]!;
    if (job.mode === 'cp-whole') {
      const body = forms[device]![sample]!;
      const stored = await send(
        `${job.url}/api/v1/samples`,
        'POST',
        { authorization: auth, 'content-type': `multipart/form-data; boundary=${boundary}` },
        body,
      );
      if (stored.status !== 201) throw new Error(`post: ${stored.status} ${stored.body}`);
      return;
    }
    const begun = await send(
      `${job.url}/api/v1/samples/uploads`,
      'POST',
      { authorization: auth, 'content-type': 'application/json' },
      bodies[device]![sample]!,
    );
    if (begun.status !== 201) throw new Error(`begin: ${begun.status} ${begun.body}`);
    const { uploadId } = JSON.parse(begun.body) as { uploadId: string };
    const done = await send(
      `${job.url}/api/v1/samples/uploads/${uploadId}`,
      'PATCH',
      { authorization: auth, 'content-type': SAMPLE_UPLOAD_CONTENT_TYPE, [SAMPLE_UPLOAD_OFFSET_HEADER]: '0' },
      jpeg,
    );
    if (done.status !== 201) throw new Error(`patch: ${done.status} ${done.body}`);
  });
  const used = process.cpuUsage(cpu);
  agent.destroy();
  console.log(
    JSON.stringify({ seconds, bytes, clientCpuMs: (used.user + used.system) / 1000 / (DEVICES * PER_DEVICE) }),
  );
}

type Run = { rate: number; elu: number; cpuMs: number; clientCpuMs: number };

async function devices(
  job: ClientJob,
): Promise<{ seconds: number; bytes: number; elu: number; cpuMs: number; clientCpuMs: number }> {
  const elu = performance.eventLoopUtilization();
  const cpu = process.cpuUsage();
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url), JSON.stringify(job)],
    {
      maxBuffer: 1 << 20,
      timeout: 600_000,
    },
  );
  const result = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as {
    seconds: number;
    bytes: number;
    clientCpuMs: number;
  };
  const used = process.cpuUsage(cpu);
  // The server's CPU (this process: event loop, libuv threads, sharp) per sample: steadier than
  // the rate on a shared machine.
  const cpuMs = (used.user + used.system) / 1000 / (DEVICES * PER_DEVICE);
  return { ...result, elu: performance.eventLoopUtilization(elu).utilization, cpuMs };
}

/** One server's run as the report shows it: samples per second and its costs. */
function runOf(result: { seconds: number; elu: number; cpuMs: number; clientCpuMs: number }): Run {
  return {
    rate: (DEVICES * PER_DEVICE) / result.seconds,
    elu: result.elu,
    cpuMs: result.cpuMs,
    clientCpuMs: result.clientCpuMs,
  };
}

async function bare(basePath: string, size: { width: number; height: number }) {
  const dir = mkdtempSync(join(tmpdir(), 'bench-bare-'));
  const app = new Hono();
  let n = 0;
  app.post('/upload', async (c) => {
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    const handle = await open(join(dir, `${n++}.jpg`), 'w');
    await handle.write(bytes);
    await handle.sync();
    await handle.close();
    return c.json({ stored: bytes.length }, 201);
  });
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s as Server));
  });
  const port = (server.address() as { port: number }).port;
  const result = await devices({ mode: 'bare', url: `http://127.0.0.1:${port}`, basePath, size, auths: [] });
  if (n !== DEVICES * PER_DEVICE) throw new Error(`bare stored ${n} files`);
  server.close();
  rmSync(dir, { recursive: true, force: true });
  return runOf(result);
}

async function controlPlane(basePath: string, size: { width: number; height: number }, mode: 'cp' | 'cp-whole') {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-samples-'));
  const adminToken = randomBytes(16).toString('hex');
  const cp = createControlPlane(
    loadConfig({ overrides: { httpPort: 0, mqttPort: 0, host: '127.0.0.1', dataDir, adminToken, logLevel: 'silent' } }),
    { logger: pino({ level: 'silent' }) },
  );
  const started = await cp.start();
  const auths: string[] = [];
  const api = createApiClient({ baseUrl: started.httpUrl, token: adminToken });
  for (let d = 0; d < DEVICES; d++) {
    const enrolled = await unwrap(api.devices.enroll({ id: `bench-${d}`, labels: {} }));
    auths.push(`Basic ${Buffer.from(`bench-${d}:${enrolled.credentials.password}`).toString('base64')}`);
  }
  const result = await devices({ mode, url: started.httpUrl, basePath, size, auths });
  const usage = await cp.internals.store.samples.usage();
  if (usage.count !== DEVICES * PER_DEVICE || usage.bytes !== result.bytes) {
    throw new Error(
      `stored ${usage.count} samples / ${usage.bytes} bytes, sent ${DEVICES * PER_DEVICE} / ${result.bytes}`,
    );
  }
  await cp.stop();
  rmSync(dataDir, { recursive: true, force: true });
  return runOf(result);
}

if (process.argv[2]) {
  await client(JSON.parse(process.argv[2]) as ClientJob);
} else {
  const base = await baseJpeg();
  const work = mkdtempSync(join(tmpdir(), 'bench-base-'));
  const basePath = join(work, 'base.jpg');
  writeFileSync(basePath, base.jpeg);
  const size = { width: base.width, height: base.height };
  // Rounds run bare, one-request and resumable back to back, so each ratio compares runs made
  // under the same load; the medians are reported (a shared machine swings from run to run).
  const rounds: { bare: Run | null; whole: Run | null; resumable: Run | null }[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    rounds.push({
      bare: MODES.has('bare') ? await bare(basePath, size) : null,
      whole: MODES.has('whole') ? await controlPlane(basePath, size, 'cp-whole') : null,
      resumable: MODES.has('resumable') ? await controlPlane(basePath, size, 'cp') : null,
    });
  }
  rmSync(work, { recursive: true, force: true });
  const median = (values: number[]) => {
    const sorted = [...values].sort((x, y) => x - y);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  };
  const summary = (key: 'bare' | 'whole' | 'resumable') => {
    const runs = rounds.map((r) => r[key]).filter((r): r is Run => r !== null);
    if (runs.length === 0) return null;
    const ratios = rounds.flatMap((r) => (r[key] && r.bare ? [r[key]!.rate / r.bare.rate] : []));
    return {
      rate: median(runs.map((r) => r.rate)),
      elu: median(runs.map((r) => r.elu)),
      cpuMs: median(runs.map((r) => r.cpuMs)),
      clientCpuMs: median(runs.map((r) => r.clientCpuMs)),
      ratio: key === 'bare' || ratios.length === 0 ? null : median(ratios),
    };
  };
  const line = (name: string, r: ReturnType<typeof summary>) =>
    r === null
      ? ''
      : `\n  ${name.padEnd(44)} ${r.rate.toFixed(0).padStart(5)} samples/s (server event loop ${(r.elu * 100).toFixed(0)}% busy, ` +
        `CPU per sample: server ${r.cpuMs.toFixed(2)} ms, devices ${r.clientCpuMs.toFixed(2)} ms)` +
        (r.ratio === null ? '' : `  ratio ${r.ratio.toFixed(2)}`);
  const whole = summary('whole');
  const ratio = whole?.ratio ?? null;
  console.log(
    `sample ingest: ${DEVICES} devices x ${PER_DEVICE} JPEGs of ${(base.jpeg.length / 1000).toFixed(0)} kB (devices in a child process)` +
      (ROUNDS > 1 ? `, medians of ${ROUNDS} rounds` : '') +
      line('bare Hono route (write + fsync)', summary('bare')) +
      line('control plane, one request (POST /samples)', whole) +
      line('control plane, resumable (POST + PATCH)', summary('resumable')) +
      (ratio === null
        ? ''
        : `\n  one-request ratio ${ratio.toFixed(2)} (target >= 0.7) ${ratio >= 0.7 ? 'PASS' : 'FAIL'}`),
  );
  const bareRun = summary('bare');
  if (ratio !== null && whole && bareRun)
    reportResult({
      bench: 'bench:samples',
      metric: `(b) sample ingest, ${DEVICES} devices x ${(base.jpeg.length / 1000).toFixed(0)} kB JPEGs, vs a bare Hono route`,
      value: `${whole.rate.toFixed(0)} vs ${bareRun.rate.toFixed(0)} samples/s: ${ratio.toFixed(2)}`,
      target: '>= 0.7',
      met: ratio >= 0.7,
    });
  agent.destroy();
}
