import { createWriteStream, readFileSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import {
  type CocoLabels,
  createProgress,
  DATASET_EXPORT_FORMATS,
  type DatasetExportQuery,
  type DatasetView,
  take,
  unwrap,
} from '@edgeloop/protocol';
import { UsageError } from './args.ts';
import { type CommandSpec, EXIT, type GroupSpec } from './command.ts';
import { isoTime, json, table } from './output.ts';
import { FILTER_FLAGS, sampleQuery } from './samples.ts';

/*
 * `edgeloop datasets create|list|get|export|import-labels`: immutable dataset versions of hard
 * samples. create takes the sample filters of `samples list` (or ids); export streams the tar to a
 * file with a progress line on stderr when stderr is a terminal.
 */

const QUERY_FLAGS = FILTER_FLAGS.filter((flag) => flag.name !== 'limit');

/** The JSON sample query of the filter flags: the filters of `samples list`, without a limit. */
export const datasetQuery = sampleQuery;

/** `80/10/10` as split ratios. */
export function parseSplits(text: string): { train: number; val: number; test: number } {
  const parts = text.split('/').map((part) => Number(part));
  if (parts.length !== 3 || parts.some((n) => !Number.isInteger(n) || n < 0) || parts.reduce((a, b) => a + b) !== 100) {
    throw new UsageError(`--splits takes TRAIN/VAL/TEST percentages adding up to 100, such as 80/10/10, not "${text}"`);
  }
  const [train, val, test] = parts as [number, number, number];
  return { train, val, test };
}

export function formatDatasets(items: readonly DatasetView[]): string {
  return table(
    ['ID', 'PARENT', 'SAMPLES', 'TRAIN', 'VAL', 'TEST', 'LABELS', 'CREATED'],
    items.map((d) => [
      d.id,
      d.parentId ?? '-',
      String(d.counts.total),
      String(d.counts.train),
      String(d.counts.val),
      String(d.counts.test),
      d.labelled ? String(d.counts.annotations) : '-',
      isoTime(d.createdAt),
    ]),
  );
}

const create: CommandSpec = {
  words: ['datasets', 'create'],
  args: ['NAME'],
  summary: 'Freeze the samples matching the filters (or the given ids) as version NAME@N',
  description:
    'The version holds the samples stored now; later samples never enter it. Each sample lands in train, val ' +
    'or test by the sha256 of its id, so it keeps its split in every version.',
  flags: [
    ...QUERY_FLAGS,
    { name: 'id', value: 'SAMPLE', help: 'take exactly these samples instead of filters', repeatable: true },
    { name: 'ids-file', value: 'FILE', help: 'take the sample ids listed in FILE, one a line', file: true },
    { name: 'splits', value: 'TRAIN/VAL/TEST', help: 'split percentages (default 80/10/10)' },
  ],
  examples: [
    'edgeloop datasets create hard --strategy near-threshold --from 2026-11-01',
    'edgeloop datasets create picked --ids-file ids.txt --splits 70/20/10 --json',
  ],
  async run(context) {
    const [name] = context.args.positional as [string];
    const ids = [...(context.args.flags.get('id') ?? [])];
    const file = context.flag('ids-file');
    if (file)
      ids.push(
        ...readFileSync(file, 'utf8')
          .split(/\r?\n/)
          .map((line) => line.trim())
          .filter(Boolean),
      );
    const query = datasetQuery(context);
    if (ids.length > 0 && Object.keys(query).length > 0) {
      throw new UsageError('edgeloop datasets create takes filters or ids (--id, --ids-file), not both');
    }
    const splits = context.flag('splits');
    const created = await unwrap(
      context.client().datasets.create({
        name,
        ...(ids.length > 0 ? { sampleIds: ids } : { query }),
        ...(splits ? { splits: parseSplits(splits) } : {}),
      }),
    );
    context.io.out(context.json ? json(created) : `${formatDatasets([created])}\n`);
    return EXIT.ok;
  },
};

const list: CommandSpec = {
  words: ['datasets', 'list'],
  summary: 'List dataset versions, newest first',
  flags: [{ name: 'name', value: 'NAME', help: 'only versions of this dataset' }],
  examples: ['edgeloop datasets list', 'edgeloop datasets list --name hard --json'],
  async run({ client, flag, io, json: asJson }) {
    const only = flag('name');
    const items = await take(client().datasets.each({ limit: 500, ...(only ? { name: only } : {}) }));
    io.out(asJson ? json(items) : `${formatDatasets(items)}\n`);
    return EXIT.ok;
  },
};

const get: CommandSpec = {
  words: ['datasets', 'get'],
  args: ['ID'],
  summary: 'Show one version: counts per split, parent, query, categories (JSON)',
  examples: ['edgeloop datasets get hard@2'],
  async run({ args, client, io }) {
    io.out(json(await unwrap(client().datasets.get(args.positional[0]!))));
    return EXIT.ok;
  },
};

const exportCommand: CommandSpec = {
  words: ['datasets', 'export'],
  args: ['ID'],
  summary: 'Download a version as a tar: COCO JSON or YOLO txt, with the images and their provenance',
  description:
    'coco: annotations.json + images/<sha256>.jpg. yolo: images/, labels/<sha256>.txt, classes.txt, data.yaml, ' +
    'train.txt/val.txt/test.txt, provenance.json. A labelled version exports its labels, others the model ' +
    'predictions as pre-annotations. A progress line (bytes and rate) goes to stderr when it is a terminal.',
  flags: [
    { name: 'format', value: 'FORMAT', help: 'coco (default) or yolo', choices: DATASET_EXPORT_FORMATS },
    { name: 'out', value: 'FILE', help: 'where to write the tar (default ID-FORMAT.tar)', file: true },
  ],
  examples: ['edgeloop datasets export hard@2 --out hard-2.tar', 'edgeloop datasets export hard@3 --format yolo'],
  async run(context) {
    const id = context.args.positional[0]!;
    const format = (context.flag('format') ?? 'coco') as DatasetExportQuery['format'];
    const out = context.flag('out') ?? `${id.replace('@', '-')}-${format}.tar`;
    const progress = createProgress({
      label: 'export',
      enabled: context.io.errIsTty === true && !context.json,
      write: context.io.err,
    });
    const { body } = await unwrap(context.client().datasets.export(id, format));
    const temp = `${out}.part`;
    const file = createWriteStream(temp);
    let bytes = 0;
    try {
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
        bytes += chunk.byteLength;
        progress.add(chunk.byteLength);
        if (!file.write(chunk)) await new Promise<void>((resolve) => file.once('drain', () => resolve()));
      }
      await new Promise<void>((resolve, reject) =>
        file.end((error?: Error | null) => (error ? reject(error) : resolve())),
      );
      await rename(temp, out);
    } catch (error) {
      file.destroy();
      await rm(temp, { force: true });
      throw error;
    }
    progress.done();
    const summary = { id, format, file: out, bytes };
    context.io.out(context.json ? json(summary) : `${id} (${format}) written to ${out}, ${bytes} bytes\n`);
    return EXIT.ok;
  },
};

const importLabels: CommandSpec = {
  words: ['datasets', 'import-labels'],
  args: ['ID'],
  summary: 'Import COCO annotations (CVAT, Label Studio) as a new labelled version of ID',
  description:
    'Images name their samples by sample_id or by the image sha256 in file_name (as the export writes them). ' +
    'Samples the file does not name keep the labels they had. Nothing is stored when any image or category is unknown.',
  flags: [{ name: 'file', value: 'FILE', help: 'the COCO JSON file (annotations.json)', file: true }],
  examples: ['edgeloop datasets import-labels hard@2 --file cvat-export/annotations/instances_default.json'],
  async run(context) {
    const id = context.args.positional[0]!;
    const file = context.flag('file');
    if (!file) throw new UsageError('edgeloop datasets import-labels needs --file FILE');
    let labels: unknown;
    try {
      labels = JSON.parse(readFileSync(file, 'utf8'));
    } catch (error) {
      throw new UsageError(`${file} is not a JSON file: ${(error as Error).message}`);
    }
    // The file goes as written: the control plane checks it and names every problem (422).
    const created = await unwrap(context.client().datasets.importLabels(id, labels as CocoLabels));
    context.io.out(context.json ? json(created) : `${formatDatasets([created])}\n`);
    return EXIT.ok;
  },
};

export const datasetsGroup: GroupSpec = {
  name: 'datasets',
  summary: 'Freeze hard samples into dataset versions, import labels, export COCO or YOLO',
  commands: [create, list, get, exportCommand, importLabels],
  examples: [
    'edgeloop datasets create hard --strategy near-threshold',
    'edgeloop datasets export hard@1 --format coco --out hard-1.tar',
    'edgeloop datasets import-labels hard@1 --file annotations.json',
  ],
};
