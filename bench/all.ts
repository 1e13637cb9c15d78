// npm run bench:all — every benchmark in turn, one after the other (they share the machine, so
// never two at once), then bench/results.md: the date, the machine, a summary table of the
// `result:` lines the benches printed (bench/report.ts), and each bench's whole output. The
// README's results table, between its bench:all markers, is replaced by the same summary.
//
// Environment: BENCH_ALL (comma-separated script names to run, default all), BENCH_ALL_README
// (0 leaves the README alone).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BenchResult, parseResults } from './report.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCRIPTS = [
  'bench:ingest',
  'bench:agent',
  'bench:samples',
  'bench:rollout',
  'bench:drift',
  'bench:mqtt-front',
  'bench:console',
  'bench:scale',
];
const chosen = process.env.BENCH_ALL ? process.env.BENCH_ALL.split(',').map((s) => s.trim()) : SCRIPTS;
for (const name of chosen)
  if (!SCRIPTS.includes(name)) throw new Error(`bench:all: no bench ${name} (${SCRIPTS.join(', ')})`);

type Run = { script: string; seconds: number; code: number | null; output: string; results: BenchResult[] };

function runScript(script: string): Promise<Run> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn('npm', ['run', '--silent', script], {
      cwd: root,
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const take = (chunk: Buffer) => {
      process.stdout.write(chunk);
      output += chunk.toString('utf8');
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('close', (code) =>
      resolve({ script, seconds: (performance.now() - started) / 1000, code, output, results: parseResults(output) }),
    );
  });
}

const startedAt = new Date();
const loadBefore = loadavg();
const runs: Run[] = [];
for (const script of chosen) {
  console.log(`\n=== ${script} ===`);
  runs.push(await runScript(script));
}
const loadAfter = loadavg();

const cell = (text: string) => text.replaceAll('|', '\\|').replaceAll('\n', ' ');
const machine = `${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}`;
const load = (l: number[]) => l.map((v) => v.toFixed(2)).join(' ');
const summary = [
  `Run of \`npm run bench:all\` on ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC (${(runs.reduce((s, r) => s + r.seconds, 0) / 60).toFixed(0)} min).`,
  `Machine: ${machine}. Load average (1, 5, 15 min) before: ${load(loadBefore)}; after: ${load(loadAfter)}.`,
  '',
  '| bench | what | result | target | |',
  '| --- | --- | --- | --- | --- |',
  ...runs.flatMap((run) => {
    if (run.results.length === 0)
      return [`| \`${run.script}\` | (no result lines) | exit ${run.code}, see bench/results.md | | |`];
    return run.results.map(
      (r) =>
        `| \`${r.bench}\` | ${cell(r.metric)} | ${cell(r.value)} | ${cell(r.target ?? '')} | ${r.met === undefined ? '' : r.met ? 'met' : '**missed**'} |`,
    );
  }),
  ...runs.filter((run) => run.code !== 0).map((run) => `\n\`${run.script}\` exited with ${run.code}.`),
].join('\n');

const details = runs.map((run) =>
  [`## ${run.script} (${run.seconds.toFixed(0)} s, exit ${run.code})`, '', '```text', run.output.trimEnd(), '```'].join(
    '\n',
  ),
);
writeFileSync(join(root, 'bench', 'results.md'), ['# Benchmark results', '', summary, '', ...details, ''].join('\n'));
console.log(`\nwrote bench/results.md\n\n${summary}`);

const BEGIN = '<!-- bench:all:begin -->';
const END = '<!-- bench:all:end -->';
const readme = join(root, 'README.md');
if (process.env.BENCH_ALL_README !== '0' && existsSync(readme) && chosen.length === SCRIPTS.length) {
  const text = readFileSync(readme, 'utf8');
  const a = text.indexOf(BEGIN);
  const b = text.indexOf(END);
  if (a >= 0 && b > a) {
    writeFileSync(readme, `${text.slice(0, a + BEGIN.length)}\n${summary}\n${text.slice(b)}`);
    console.log('updated the README between its bench:all markers');
  }
}
process.exit(runs.every((run) => run.code === 0) ? 0 : 1);
