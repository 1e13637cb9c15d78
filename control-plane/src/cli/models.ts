import { openAsBlob, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { ModelList, ModelSummary, ModelView } from '@edgeloop/protocol';
import { UsageError } from './args.ts';
import { type CommandSpec, EXIT, type GroupSpec } from './command.ts';
import { isoTime, json, table, withQuery } from './output.ts';

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
    const query = new URLSearchParams();
    const only = flag('name');
    if (only) query.set('name', only);
    const items: ModelSummary[] = [];
    let cursor: string | null = null;
    do {
      if (cursor) query.set('cursor', cursor);
      const page: ModelList = await client().request<ModelList>('GET', withQuery('/api/v1/models', query));
      items.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor);
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
    const model = await client().request<ModelView>(
      'GET',
      `/api/v1/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}`,
    );
    io.out(json(model));
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
    const form = new FormData();
    form.append('release', readFileSync(release, 'utf8'));
    form.append('model', await openAsBlob(model), basename(model));
    const registered = await client().request<ModelSummary>('POST', '/api/v1/models', form);
    io.out(json(registered));
    return EXIT.ok;
  },
};

export const modelsGroup: GroupSpec = {
  name: 'models',
  summary: 'Register and inspect signed model releases',
  commands: [list, get, upload],
  examples: ['edgeloop models upload --release det.release.json --model det.onnx', 'edgeloop models list'],
};
