import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatasetView } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { datasetQuery, parseSplits } from '../src/cli/datasets.ts';
import { runCli } from '../src/cli.ts';
import { type CocoDocument, cocoProblems, storeSampleIn, untar } from './dataset-fixtures.ts';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';

let t: TestControlPlane;
let dir: string;

async function cli(argv: string[], options: { errIsTty?: boolean } = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(
    argv,
    { EDGELOOP_URL: t.started.httpUrl, EDGELOOP_TOKEN: t.adminToken },
    {
      out: (text) => out.push(text),
      err: (text) => err.push(text),
      waitForShutdown: () => new Promise<string>(() => undefined),
      ...options,
    },
  );
  return { code, out: out.join(''), err: err.join('') };
}

const fileStream = (path: string) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(readFileSync(path));
      controller.close();
    },
  });

beforeAll(async () => {
  t = await startTestControlPlane();
  dir = mkdtempSync(join(tmpdir(), 'datasets-cli-'));
  for (let i = 1; i <= 6; i++) await storeSampleIn(t, i, i === 6 ? { strategy: 'random', deviceId: 'cam-2' } : {});
});

afterAll(async () => {
  await t?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('edgeloop datasets', () => {
  it('creates a version from filter flags and lists it, as a table and as JSON', async () => {
    const created = await cli(['datasets', 'create', 'hard', '--strategy', 'near-threshold', '--json']);
    expect(created.code).toBe(0);
    expect(JSON.parse(created.out)).toMatchObject({ id: 'hard@1', counts: { total: 5 } });

    const listed = await cli(['datasets', 'list', '--json']);
    expect((JSON.parse(listed.out) as DatasetView[]).map((d) => d.id)).toEqual(['hard@1']);
    const table = await cli(['datasets', 'list']);
    expect(table.out).toMatch(/^ID\s+PARENT\s+SAMPLES/);
    expect(table.out).toMatch(/hard@1\s+-\s+5\s/);
  });

  it('exports a tar to a file, with a progress line on stderr only when stderr is a terminal', async () => {
    const quiet = await cli(['datasets', 'export', 'hard@1', '--out', join(dir, 'quiet.tar')]);
    expect(quiet.code).toBe(0);
    expect(quiet.err).toBe('');
    const shown = await cli(['datasets', 'export', 'hard@1', '--format', 'yolo', '--out', join(dir, 'yolo.tar')], {
      errIsTty: true,
    });
    expect(shown.code).toBe(0);
    expect(shown.err).toMatch(/export\s+.*\d+(\.\d)? (B|kB)\s+.*\/s/);
    expect(existsSync(join(dir, 'yolo.tar.part'))).toBe(false);
    const files = await untar(fileStream(join(dir, 'yolo.tar')));
    expect([...files.keys()].filter((name) => name.startsWith('labels/'))).toHaveLength(5);
    const coco = await untar(fileStream(join(dir, 'quiet.tar')));
    expect(cocoProblems(JSON.parse(coco.get('annotations.json')!.toString()) as CocoDocument)).toEqual([]);
  });

  it('imports COCO labels from a file as a new labelled version', async () => {
    const coco = await untar(fileStream(join(dir, 'quiet.tar')));
    writeFileSync(join(dir, 'annotations.json'), coco.get('annotations.json')!);
    const imported = await cli([
      'datasets',
      'import-labels',
      'hard@1',
      '--file',
      join(dir, 'annotations.json'),
      '--json',
    ]);
    expect(imported.code).toBe(0);
    expect(JSON.parse(imported.out)).toMatchObject({ id: 'hard@2', parentId: 'hard@1', labelled: true });
  });

  it('fails with the API error code when labels name unknown images, and with usage errors for bad flags', async () => {
    writeFileSync(
      join(dir, 'bad.json'),
      JSON.stringify({ images: [{ id: 1, file_name: `${'0'.repeat(64)}.jpg` }], annotations: [], categories: [] }),
    );
    const bad = await cli(['datasets', 'import-labels', 'hard@1', '--file', join(dir, 'bad.json')]);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('unknown_image');
    expect((await cli(['datasets', 'import-labels', 'hard@1'])).code).toBe(2);
    expect((await cli(['datasets', 'create', 'x', '--id', 'smp_1', '--device', 'cam-1'])).code).toBe(2);
    expect((await cli(['datasets', 'create', 'x', '--splits', '90/20/0'])).code).toBe(2);
  });
});

describe('datasetQuery and parseSplits', () => {
  const context = (flags: Record<string, string[]>) => ({
    args: { positional: [], flags: new Map(Object.entries(flags)), booleans: new Set<string>() },
    flag: (name: string) => flags[name]?.[0],
  });

  it('turns filter flags into the JSON sample query', () => {
    expect(
      datasetQuery(
        context({
          device: ['cam-1'],
          label: ['site=north', 'zone=a'],
          from: ['2026-01-01T00:00:00Z'],
          'has-labels': ['false'],
        }),
      ),
    ).toEqual({
      deviceId: 'cam-1',
      label: ['site:north', 'zone:a'],
      from: Date.parse('2026-01-01T00:00:00Z'),
      hasLabels: false,
    });
  });

  it('reads TRAIN/VAL/TEST percentages that add up to 100', () => {
    expect(parseSplits('70/20/10')).toEqual({ train: 70, val: 20, test: 10 });
    expect(() => parseSplits('70/20')).toThrow(/TRAIN\/VAL\/TEST/);
  });
});
