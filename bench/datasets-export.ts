// Dataset export (issue 8, bench part c): GET /api/v1/datasets/:id/export?format=coco of a
// version of N samples, streamed over real HTTP into a file, against `tar -cf` of the same image
// files in the same run. Ratio = tar time / export time (so >= 0.5 means the export takes at most
// twice as long as tar), target >= 0.5; the process RSS growth during the export, target < 64 MB.
//
// The export is downloaded by curl (another process) into a file; tar writes a file on the same disk.
// Each run is one export and one tar of the same files; the ratio reported is the median of the
// runs' ratios, the RSS growth the largest.
// Environment: BENCH_EXPORT_SAMPLES (10000), BENCH_EXPORT_KB (20), BENCH_EXPORT_FORMAT (coco),
// BENCH_EXPORT_RUNS (3).
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { createControlPlane, loadConfig } from '@edgeloop/control-plane';
import { createApiClient, unwrap } from '@edgeloop/protocol';
import pino from 'pino';
import { reportResult } from './report.ts';

const SAMPLES = Number(process.env.BENCH_EXPORT_SAMPLES ?? 10_000);
const KB = Number(process.env.BENCH_EXPORT_KB ?? 20);
const FORMAT = process.env.BENCH_EXPORT_FORMAT === 'yolo' ? 'yolo' : 'coco';
const RUNS = Math.max(1, Number(process.env.BENCH_EXPORT_RUNS ?? 3));

const dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-bench-export-'));
const adminToken = randomBytes(16).toString('hex');
const cp = createControlPlane(
  loadConfig({ overrides: { httpPort: 0, mqttPort: 0, host: '127.0.0.1', dataDir, adminToken, logLevel: 'silent' } }),
  { logger: pino({ level: 'silent' }) },
);
const started = await cp.start();
const { store, blobs } = cp.internals;

// Setup: N distinct image files straight into the blob store, and their sample rows.
const setupStart = performance.now();
const filler = randomBytes(KB * 1000);
const paths: string[] = [];
for (let i = 0; i < SAMPLES; i++) {
  const bytes = Buffer.concat([Buffer.from([0xff, 0xd8]), Buffer.from(`sample ${i} `), filler]);
  const sha = createHash('sha256').update(bytes).digest('hex');
  const path = blobs.pathOf(sha);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, bytes);
  paths.push(path);
  await store.samples.insert({
    id: `smp_${i.toString().padStart(6, '0')}`,
    deviceId: `cam-${i % 100}`,
    site: 'bench',
    labels: { site: 'bench' },
    modelId: 'det@1.0.0',
    modelSha256: 'a'.repeat(64),
    strategy: 'near-threshold',
    reason: 'bench',
    tags: [],
    predictions: [
      { box: [10, 10, 60, 40], score: 0.52, classId: 0, label: 'text' },
      { box: [100, 80, 180, 120], score: 0.48, classId: 1, label: 'logo' },
    ],
    frameTs: 1_800_000_000_000 + i,
    bootId: 'bootbench',
    seq: i,
    imageSha256: sha,
    bytes: bytes.length,
    width: 640,
    height: 480,
    thumbnailSha256: null,
    receivedAt: 1_800_000_000_000 + i,
  });
}
const api = createApiClient({ baseUrl: started.httpUrl, token: adminToken });
const dataset = await unwrap(api.datasets.create({ name: 'bench', query: { site: 'bench' } }));
if (dataset.counts.total !== SAMPLES) throw new Error(`create: ${dataset.counts.total} of ${SAMPLES} samples`);
const setupS = (performance.now() - setupStart) / 1000;

// Export over HTTP into a file (curl), sampling this process's RSS; then the peer, tar -cf of the
// same image files into a file on the same disk. RUNS pairs, each pair's files removed after it.
const listFile = join(dataDir, 'files.txt');
writeFileSync(listFile, paths.map((p) => relative(dataDir, p)).join('\n'));

type Run = {
  exportS: number;
  exportCpuS: number;
  exportBytes: number;
  tarS: number;
  tarBytes: number;
  growthMb: number;
};
async function measure(): Promise<Run> {
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  const sampler = setInterval(() => {
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  }, 20);
  const exportFile = join(dataDir, 'export.tar');
  const exportStart = performance.now();
  const cpuStart = process.cpuUsage();
  // The client is curl in its own process, as a user downloads (the server's work is what is measured).
  const curl = spawn('curl', [
    '-sS',
    '--fail',
    '-o',
    exportFile,
    '-H',
    `authorization: Bearer ${adminToken}`,
    `${started.httpUrl}/api/v1/datasets/${dataset.id}/export?format=${FORMAT}`,
  ]);
  const curlCode = await new Promise<number | null>((resolve) => curl.on('close', resolve));
  if (curlCode !== 0) throw new Error(`curl exited with ${curlCode}`);
  const exportS = (performance.now() - exportStart) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  clearInterval(sampler);
  const exportBytes = statSync(exportFile).size;

  const peerFile = join(dataDir, 'peer.tar');
  const tarStart = performance.now();
  const tar = spawnSync('tar', ['-cf', peerFile, '-C', dataDir, '-T', listFile]);
  const tarS = (performance.now() - tarStart) / 1000;
  if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr.toString()}`);
  const tarBytes = statSync(peerFile).size;
  rmSync(exportFile);
  rmSync(peerFile);
  return {
    exportS,
    exportCpuS: (cpu.user + cpu.system) / 1e6,
    exportBytes,
    tarS,
    tarBytes,
    growthMb: (rssPeak - rssBefore) / 1e6,
  };
}

const runs: Run[] = [];
for (let i = 0; i < RUNS; i++) runs.push(await measure());

await cp.stop();
rmSync(dataDir, { recursive: true, force: true });

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const ratios = runs.map((run) => run.tarS / run.exportS);
const ratio = median(ratios);
const exportS = median(runs.map((run) => run.exportS));
const tarS = median(runs.map((run) => run.tarS));
const growthMb = Math.max(...runs.map((run) => run.growthMb));
const mbps = (bytes: number, s: number) => `${(bytes / 1e6 / s).toFixed(0)} MB/s`;
console.log(
  [
    `dataset export (${FORMAT}), ${SAMPLES} samples of ${KB} kB (setup ${setupS.toFixed(1)} s), median of ${RUNS} runs`,
    `  export  ${exportS.toFixed(2)} s  ${(runs[0]!.exportBytes / 1e6).toFixed(0)} MB  ${mbps(runs[0]!.exportBytes, exportS)}  (server CPU ${median(runs.map((run) => run.exportCpuS)).toFixed(2)} s)`,
    `  tar -cf ${tarS.toFixed(2)} s  ${(runs[0]!.tarBytes / 1e6).toFixed(0)} MB  ${mbps(runs[0]!.tarBytes, tarS)}`,
    `  ratio ${ratio.toFixed(2)} (runs ${ratios.map((r) => r.toFixed(2)).join(' ')}; target >= 0.5) ${ratio >= 0.5 ? 'PASS' : 'FAIL'}`,
    `  RSS growth ${growthMb.toFixed(1)} MB, the largest of the runs (runs ${runs.map((run) => run.growthMb.toFixed(1)).join(' ')}; target < 64) ${growthMb < 64 ? 'PASS' : 'FAIL'}`,
  ].join('\n'),
);
reportResult({
  bench: 'bench:samples',
  metric: `(c) ${FORMAT.toUpperCase()} export of ${SAMPLES} samples of ${KB} kB vs \`tar -cf\` of the same files`,
  value: `${exportS.toFixed(2)} vs ${tarS.toFixed(2)} s: ${ratio.toFixed(2)}`,
  target: '>= 0.5',
  met: ratio >= 0.5,
});
reportResult({
  bench: 'bench:samples',
  metric: '(c) RSS growth during the export',
  value: `${growthMb.toFixed(1)} MB`,
  target: '< 64 MB',
  met: growthMb < 64,
});
