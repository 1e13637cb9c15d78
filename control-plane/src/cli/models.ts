import { openAsBlob, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { type EvaluationView, type ModelSummary, take, unwrap } from '@edgeloop/protocol';
import { UsageError } from './args.ts';
import { type CommandSpec, EXIT, type GroupSpec } from './command.ts';
import { lineageCommand } from './lineage.ts';
import { isoTime, json, table } from './output.ts';

export function formatModels(items: readonly ModelSummary[]): string {
  return table(
    ['ID', 'SHA256', 'SIZE', 'COUNTER', 'ADAPTER', 'EXPIRES'],
    items.map((m) => [
      m.id,
      m.sha256.slice(0, 12),
      String(m.sizeBytes),
      String(m.releaseCounter),
      m.adapter,
      isoTime(m.expiresAt),
    ]),
  );
}

const list: CommandSpec = {
  words: ['models', 'list'],
  summary: 'List registered model releases',
  flags: [{ name: 'name', value: 'NAME', help: 'only releases of this model' }],
  examples: ['edgeloop models list', 'edgeloop models list --name det --json'],
  async run({ client, flag, io, json: asJson }) {
    const only = flag('name');
    const items = await take(client().models.each(only ? { name: only } : {}));
    io.out(asJson ? json(items) : `${formatModels(items)}\n`);
    return EXIT.ok;
  },
};

const get: CommandSpec = {
  words: ['models', 'get'],
  args: ['NAME', 'VERSION'],
  summary: 'Show one release with its signed manifest (JSON)',
  examples: ['edgeloop models get det 2.0.0'],
  async run({ args, client, io }) {
    const [name, version] = args.positional as [string, string];
    io.out(json(await unwrap(client().models.get(name, version))));
    return EXIT.ok;
  },
};

const upload: CommandSpec = {
  words: ['models', 'upload'],
  summary: 'Register a release signed with edgeloop-image sign, with its model file',
  description: 'The model file is streamed from disk. The control plane checks the signature against its trusted keys.',
  flags: [
    { name: 'release', value: 'FILE', help: 'the signed release (release.json from edgeloop-image sign)', file: true },
    { name: 'model', value: 'FILE', help: 'the model file (.onnx) the release describes', file: true },
  ],
  examples: ['edgeloop models upload --release det-2.0.0.release.json --model det-2.0.0.onnx'],
  async run({ client, flag, io }) {
    const release = flag('release');
    const model = flag('model');
    if (!release || !model) throw new UsageError('edgeloop models upload needs --release FILE and --model FILE');
    const registered = await unwrap(
      client().models.upload({
        release: readFileSync(release, 'utf8'),
        model: await openAsBlob(model),
        fileName: basename(model),
      }),
    );
    io.out(json(registered));
    return EXIT.ok;
  },
};

const figure = (value: number | null) => (value === null ? '-' : value.toFixed(3));

export function formatEvaluations(items: readonly EvaluationView[]): string {
  return table(
    ['ID', 'DATASET', 'MAP50', 'MAP', 'ACCURACY', 'BASELINE', 'BASE MAP50', 'BASE ACC', 'POSTED'],
    items.map((e) => [
      e.id,
      e.datasetId,
      figure(e.metrics.map50),
      figure(e.metrics.map),
      figure(e.metrics.accuracy),
      e.baseline?.modelId ?? '-',
      figure(e.baseline?.metrics.map50 ?? null),
      figure(e.baseline?.metrics.accuracy ?? null),
      isoTime(e.createdAt),
    ]),
  );
}

const evaluations: CommandSpec = {
  words: ['models', 'evaluations'],
  args: ['NAME', 'VERSION'],
  summary: "List a release's evaluation reports (edgeloop-agent eval), newest first",
  description:
    'Each report holds mAP@0.5, mAP@[0.5:0.95] (or accuracy) on one dataset version, and the champion\n' +
    "measured beside it: what a rollout's validation gate compares.",
  flags: [{ name: 'dataset', value: 'NAME@N', help: 'only reports on this dataset version' }],
  examples: ['edgeloop models evaluations det 2.0.0', 'edgeloop models evaluations det 2.0.0 --dataset hard@3 --json'],
  async run({ args, client, flag, io, json: asJson }) {
    const [name, version] = args.positional as [string, string];
    const dataset = flag('dataset');
    const listed = await unwrap(client().models.evaluations(name, version, dataset ? { datasetId: dataset } : {}));
    io.out(asJson ? json(listed.items) : `${formatEvaluations(listed.items)}\n`);
    return EXIT.ok;
  },
};

export const modelsGroup: GroupSpec = {
  name: 'models',
  summary: 'Register and inspect signed model releases',
  commands: [list, get, upload, evaluations, lineageCommand],
  examples: ['edgeloop models upload --release det.release.json --model det.onnx', 'edgeloop models list'],
};
