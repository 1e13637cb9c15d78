import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type ApiClient,
  createProgress,
  type DatasetSampleQuery,
  SAMPLE_STRATEGY_KINDS,
  type SamplePolicyInput,
  type SamplePolicyView,
  type SampleView,
  take,
  unwrap,
} from '@edgeloop/protocol';
import { UsageError } from './args.ts';
import { type CommandContext, type CommandSpec, EXIT, type GroupSpec } from './command.ts';
import { isoTime, json, table } from './output.ts';

/*
 * `edgeloop samples list|get|pull`: the hard samples devices uploaded. Filters are flags of list
 * and pull alike; pull writes `<id>.jpg` (sha256 checked) and `<id>.json` (metadata, predictions
 * and provenance) per sample, skipping files already there and whole.
 */

export const FILTER_FLAGS = [
  { name: 'device', value: 'ID', help: 'only samples of this device' },
  { name: 'site', value: 'SITE', help: 'only samples of this site' },
  { name: 'label', value: 'KEY=VALUE', help: 'device label at capture; every one must match', repeatable: true },
  { name: 'model', value: 'NAME@VERSION', help: 'only samples with predictions of this model' },
  { name: 'model-sha256', value: 'SHA256', help: 'only samples with predictions of the model with this sha256' },
  { name: 'strategy', value: 'KIND', help: 'only samples this strategy selected', choices: SAMPLE_STRATEGY_KINDS },
  { name: 'from', value: 'TIME', help: 'captured at or after (ISO 8601 or epoch ms)' },
  { name: 'to', value: 'TIME', help: 'captured at or before (ISO 8601 or epoch ms)' },
  {
    name: 'has-labels',
    value: 'BOOL',
    help: 'true: only human-labelled samples; false: only unlabelled',
    choices: ['true', 'false'],
  },
  { name: 'limit', value: 'N', help: 'at most this many samples (default 100 for list, 1000 for pull)' },
] as const;

export function parseTime(text: string, flag: string): number {
  if (/^\d+$/.test(text)) return Number(text);
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) throw new UsageError(`--${flag} takes an ISO 8601 time or epoch milliseconds, not "${text}"`);
  return ms;
}

/**
 * The sample filters of the flags (pure: flags in, query out), as GET /api/v1/samples and a
 * dataset's query alike take them.
 */
export function sampleQuery(context: Pick<CommandContext, 'args' | 'flag'>): DatasetSampleQuery {
  const query: { -readonly [K in keyof DatasetSampleQuery]: DatasetSampleQuery[K] } = {};
  const text = (flag: string) => context.flag(flag);
  const deviceId = text('device');
  if (deviceId !== undefined) query.deviceId = deviceId;
  const site = text('site');
  if (site !== undefined) query.site = site;
  const modelId = text('model');
  if (modelId !== undefined) query.modelId = modelId;
  const modelSha256 = text('model-sha256');
  if (modelSha256 !== undefined) query.modelSha256 = modelSha256;
  const strategy = text('strategy');
  if (strategy !== undefined) query.strategy = strategy as DatasetSampleQuery['strategy'];
  const from = text('from');
  if (from !== undefined) query.from = parseTime(from, 'from');
  const to = text('to');
  if (to !== undefined) query.to = parseTime(to, 'to');
  const hasLabels = text('has-labels');
  if (hasLabels !== undefined) query.hasLabels = hasLabels === 'true';
  const labels = (context.args.flags.get('label') ?? []).map((pair) => {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--label takes KEY=VALUE, not "${pair}"`);
    return `${pair.slice(0, eq)}:${pair.slice(eq + 1)}`;
  });
  if (labels.length > 0) query.label = labels;
  return query;
}

function limitOf(context: Pick<CommandContext, 'flag'>, fallback: number): number {
  const text = context.flag('limit');
  if (text === undefined) return fallback;
  const limit = Number(text);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit takes a positive integer, not "${text}"`);
  return limit;
}

/** Up to `limit` samples matching `query`, following the cursor. */
function collect(client: ApiClient, query: DatasetSampleQuery, limit: number): Promise<SampleView[]> {
  return take(client.samples.each({ ...query, limit: Math.min(500, limit) }), limit);
}

export function formatSamples(items: readonly SampleView[]): string {
  return table(
    ['ID', 'DEVICE', 'STRATEGY', 'MODEL', 'BOXES', 'SIZE', 'PIXELS', 'CAPTURED'],
    items.map((s) => [
      s.id,
      s.deviceId,
      s.strategy,
      s.model?.id ?? '-',
      String(s.predictions.length),
      String(s.image.bytes),
      `${s.image.width}x${s.image.height}`,
      isoTime(s.frameTs),
    ]),
  );
}

async function sha256OfFile(path: string): Promise<string | null> {
  if (!existsSync(path)) return null;
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const list: CommandSpec = {
  words: ['samples', 'list'],
  summary: 'List hard samples, newest first, with filters',
  flags: FILTER_FLAGS,
  examples: [
    'edgeloop samples list',
    'edgeloop samples list --device cam-001 --strategy near-threshold --json',
    'edgeloop samples list --label site=north --from 2026-01-01T00:00:00Z --limit 20',
  ],
  async run(context) {
    const items = await collect(context.client(), sampleQuery(context), limitOf(context, 100));
    context.io.out(context.json ? json(items) : `${formatSamples(items)}\n`);
    return EXIT.ok;
  },
};

const get: CommandSpec = {
  words: ['samples', 'get'],
  args: ['ID'],
  summary: 'Show one sample: metadata, predictions and provenance (JSON)',
  examples: ['edgeloop samples get smp_0123456789abcdef01234567'],
  async run({ args, client, io }) {
    const [id] = args.positional as [string];
    io.out(json(await unwrap(client().samples.get(id))));
    return EXIT.ok;
  },
};

const pull: CommandSpec = {
  words: ['samples', 'pull'],
  summary: 'Download samples (image + metadata JSON) into a directory, checking each sha256',
  description:
    'Writes <id>.jpg and <id>.json per sample; files already there with the right sha256 are skipped, so a ' +
    'pull that broke off is resumed by running it again. A progress line (bytes and rate) goes to stderr when ' +
    'stderr is a terminal.',
  flags: [
    { name: 'out', value: 'DIR', help: 'where to write the files (created if missing)', file: true },
    ...FILTER_FLAGS,
  ],
  examples: [
    'edgeloop samples pull --out ./hard --strategy near-threshold',
    'edgeloop samples pull --out ./cam1 --device cam-001 --json',
  ],
  async run(context) {
    const out = context.flag('out');
    if (!out) throw new UsageError('edgeloop samples pull needs --out DIR');
    const client = context.client();
    const items = await collect(client, sampleQuery(context), limitOf(context, 1000));
    mkdirSync(out, { recursive: true });
    const progress = createProgress({
      label: 'pull',
      enabled: context.io.errIsTty === true && !context.json,
      write: context.io.err,
    });
    progress.setTotal(items.length);
    let downloaded = 0;
    let skipped = 0;
    let bytes = 0;
    for (const sample of items) {
      const image = join(out, `${sample.id}.jpg`);
      await writeFile(join(out, `${sample.id}.json`), json(sample));
      if ((await sha256OfFile(image)) === sample.image.sha256) {
        skipped++;
        progress.add(0, true);
        continue;
      }
      const temp = `${image}.part`;
      const hash = createHash('sha256');
      const chunks: Uint8Array[] = [];
      const { body } = await unwrap(client.samples.image(sample.id));
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
        hash.update(chunk);
        chunks.push(chunk);
        bytes += chunk.byteLength;
        progress.add(chunk.byteLength);
      }
      const sha256 = hash.digest('hex');
      if (sha256 !== sample.image.sha256) {
        throw new Error(`sample ${sample.id}: the bytes served hash to ${sha256}, not ${sample.image.sha256}`);
      }
      await writeFile(temp, Buffer.concat(chunks));
      await rename(temp, image).catch(async (error: unknown) => {
        await rm(temp, { force: true });
        throw error;
      });
      downloaded++;
      progress.add(0, true);
    }
    progress.done();
    const summary = { directory: out, samples: items.length, downloaded, skipped, bytes };
    if (context.json) context.io.out(json(summary));
    else context.io.out(`${downloaded} downloaded, ${skipped} already there (${bytes} bytes) into ${out}\n`);
    return EXIT.ok;
  },
};

/** `--selector KEY=VALUE` pairs as a label selector (none: the whole fleet). */
export function selectorOf(pairs: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--selector takes KEY=VALUE, not "${pair}"`);
    labels[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return labels;
}

const selectorText = (labels: Readonly<Record<string, string>>) =>
  Object.keys(labels).length === 0
    ? '(whole fleet)'
    : Object.entries(labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(',');

export function formatPolicies(items: readonly SamplePolicyView[]): string {
  return table(
    ['SELECTOR', 'ENABLED', 'STRATEGIES', 'PER MIN', 'PER DAY', 'BYTES/DAY', 'UPDATED'],
    items.map((item) => [
      selectorText(item.selector.labels),
      String(item.policy.enabled),
      item.policy.strategies.map((strategy) => strategy.kind).join(',') || '-',
      String(item.policy.limits.perMinute ?? '-'),
      String(item.policy.limits.perDay ?? '-'),
      String(item.policy.limits.bytesPerDay ?? '-'),
      isoTime(item.updatedAt),
    ]),
  );
}

const policy: CommandSpec = {
  words: ['samples', 'policy'],
  args: ['ACTION'],
  summary: 'Set (set) or show (get) the sample policy by label selector, delivered in desired state',
  description:
    'set stores the SamplePolicy of --file for the devices the --selector pairs match (none: the whole fleet) and ' +
    'publishes it in their desired state; devices enrolled later that match get it too, and a device follows the ' +
    'most specific selector it matches. A file holding null removes the selector policy. get lists the stored ' +
    'selector policies. A malformed policy is refused (422) and nothing is stored.',
  flags: [
    { name: 'file', value: 'FILE', help: 'set: the policy JSON (a SamplePolicy, or null to remove)', file: true },
    { name: 'selector', value: 'KEY=VALUE', help: 'set: a device label to match; every one must', repeatable: true },
  ],
  completeArgs: [['set', 'get']],
  examples: [
    'edgeloop samples policy set --file policy.json',
    'edgeloop samples policy set --file rare.json --selector site=north',
    'edgeloop samples policy get --json',
  ],
  async run(context) {
    const action = context.args.positional[0];
    if (action === 'get') {
      const { items } = await unwrap(context.client().samples.policy.list());
      context.io.out(context.json ? json(items) : `${formatPolicies(items)}\n`);
      return EXIT.ok;
    }
    if (action !== 'set') throw new UsageError(`edgeloop samples policy takes set or get, not "${action}"`);
    const file = context.flag('file');
    if (!file) throw new UsageError('edgeloop samples policy set needs --file FILE');
    let body: unknown;
    try {
      body = JSON.parse(readFileSync(file, 'utf8'));
    } catch (error) {
      throw new UsageError(`${file} is not a JSON file: ${(error as Error).message}`);
    }
    const labels = selectorOf(context.args.flags.get('selector') ?? []);
    // The file goes as written: the control plane checks it and names every problem (422).
    const result = await unwrap(
      context.client().samples.policy.set({ selector: { labels }, policy: body as SamplePolicyInput | null }),
    );
    if (context.json) context.io.out(json(result));
    else {
      const verb = result.policy === null ? 'removed' : 'set';
      context.io.out(
        `sample policy ${verb} for ${selectorText(result.selector.labels)}: ${result.devices} devices match, ` +
          `${result.changed} desired states changed\n`,
      );
    }
    return EXIT.ok;
  },
};

export const samplesGroup: GroupSpec = {
  name: 'samples',
  summary: 'List, inspect and download the hard samples devices captured; set the sample policy',
  commands: [list, get, pull, policy],
  examples: [
    'edgeloop samples list --strategy near-threshold',
    'edgeloop samples pull --out ./hard',
    'edgeloop samples policy set --file policy.json --selector site=north',
  ],
};
