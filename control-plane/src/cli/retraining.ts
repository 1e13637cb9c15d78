import { readFileSync } from 'node:fs';
import {
  RETRAINING_RUN_STATUSES,
  type RetrainingPolicyInput,
  type RetrainingPolicyView,
  type RetrainingRun,
  type RetrainingRunStatus,
  take,
  unwrap,
} from '@edgeloop/protocol';
import { UsageError } from './args.ts';
import { type CommandSpec, EXIT, type GroupSpec } from './command.ts';
import { isoTime, json, table } from './output.ts';

/*
 * `edgeloop retraining ...`: the delivery log of retraining runs, policies per model name, a manual
 * run, and the pull side (claim, complete) for a trainer that cannot receive webhooks.
 */

export function formatRuns(items: readonly RetrainingRun[]): string {
  return table(
    ['RUN', 'MODEL', 'STATUS', 'REASON', 'DATASET', 'ATTEMPTS', 'LAST CODE', 'NEXT ATTEMPT', 'CREATED'],
    items.map((run) => [
      run.runId,
      run.modelName,
      run.status,
      run.reason.kind,
      run.datasetId,
      String(run.attempts),
      run.lastStatusCode === null ? '-' : String(run.lastStatusCode),
      run.nextAttemptAt === null ? '-' : isoTime(run.nextAttemptAt),
      isoTime(run.createdAt),
    ]),
  );
}

export function formatRun(run: RetrainingRun): string {
  const lines = [
    `run ${run.runId} of ${run.modelName}: ${run.status}`,
    `  reason:   ${run.reason.kind}: ${run.reason.detail}`,
    `  parent:   ${run.parentModel ? `${run.parentModel.id} (${run.parentModel.sha256.slice(0, 12)})` : '-'}`,
    `  dataset:  ${run.datasetId}  coco ${run.exportUrls.coco}`,
    `  webhook:  ${run.webhookUrl ?? '- (pull: claim it)'}`,
    `  result:   ${run.resultModelId ?? '-'}${run.claimedBy ? `  claimed by ${run.claimedBy}` : ''}`,
  ];
  if (run.deliveries.length > 0) {
    lines.push(
      '',
      table(
        ['ATTEMPT AT', 'CODE', 'MS', 'ERROR'],
        run.deliveries.map((d) => [
          isoTime(d.at),
          d.statusCode === null ? '-' : String(d.statusCode),
          String(Math.round(d.durationMs)),
          d.error ?? '-',
        ]),
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}

export function formatPolicy(policy: RetrainingPolicyView): string {
  const { drift, samples, schedule } = policy.triggers;
  const triggers = [
    drift
      ? `drift ${drift.band}+ for ${drift.windows} windows${drift.sites ? ` at ${drift.sites.join(',')}` : ''}`
      : null,
    samples ? `${samples.min} new ${samples.labelled ? 'labelled ' : ''}samples` : null,
    schedule ? `cron "${schedule.cron}"${schedule.timezone ? ` ${schedule.timezone}` : ''}` : null,
  ].filter((line) => line !== null);
  return [
    `retraining policy of ${policy.modelName}${policy.enabled ? '' : ' (disabled)'}`,
    `  triggers: ${triggers.join('; ') || 'none (manual runs only)'}`,
    `  cooldown: ${policy.cooldownS} s`,
    `  dataset:  ${policy.dataset.name} (query ${JSON.stringify(policy.dataset.query)})`,
    `  webhook:  ${policy.webhook ? `${policy.webhook.url} (secret ${policy.webhook.hasSecret ? 'stored' : 'missing'})` : '- (pull)'}`,
    `  set at:   ${isoTime(policy.updatedAt)} by ${policy.updatedBy ?? '-'}`,
    '',
  ].join('\n');
}

const runs: CommandSpec = {
  words: ['retraining', 'runs'],
  summary: 'List retraining runs with their webhook delivery status, newest first',
  description:
    'Each run froze a dataset version for a trainer. A run with a webhook is delivering until the receiver answers\n' +
    '2xx (delivered) or every attempt failed (failed); one without is pending until a trainer claims it.',
  flags: [
    { name: 'status', value: 'S', help: 'only runs in this status', choices: RETRAINING_RUN_STATUSES },
    { name: 'model', value: 'NAME', help: 'only runs of this model name' },
  ],
  examples: ['edgeloop retraining runs', 'edgeloop retraining runs --status pending --json'],
  async run({ client, flag, io, json: asJson }) {
    const status = flag('status');
    if (status !== undefined && !(RETRAINING_RUN_STATUSES as readonly string[]).includes(status)) {
      throw new UsageError(`--status takes one of ${RETRAINING_RUN_STATUSES.join(', ')}, not "${status}"`);
    }
    const model = flag('model');
    const items = await take(
      client().retraining.eachRun({
        ...(status ? { status: status as RetrainingRunStatus } : {}),
        ...(model ? { model } : {}),
      }),
    );
    io.out(asJson ? json(items) : `${formatRuns(items)}\n`);
    return EXIT.ok;
  },
};

const show: CommandSpec = {
  words: ['retraining', 'run'],
  args: ['RUN_ID'],
  summary: 'Show one retraining run with its delivery log',
  examples: ['edgeloop retraining run rt-4f2a9c0d1e2b3a4c'],
  async run({ args, client, io, json: asJson }) {
    const run = await unwrap(client().retraining.run(args.positional[0]!));
    io.out(asJson ? json(run) : formatRun(run));
    return EXIT.ok;
  },
};

const policy: CommandSpec = {
  words: ['retraining', 'policy'],
  args: ['ACTION', 'MODEL_NAME'],
  summary: "Set (set) or show (get) a model name's retraining policy",
  description:
    'set stores the RetrainingPolicy JSON of --file: triggers (drift, samples, schedule), cooldownS, the dataset\n' +
    'a run freezes ({ name, query, split }), the webhook ({ url, secret }) and enabled. The secret is write-only:\n' +
    'get shows only whether one is stored; a file without it keeps the stored one. A malformed policy or a cron\n' +
    'expression croner refuses is answered 422 and nothing is stored.',
  flags: [{ name: 'file', value: 'FILE', help: 'set: the policy JSON', file: true }],
  completeArgs: [['set', 'get']],
  examples: ['edgeloop retraining policy set det --file retrain-det.json', 'edgeloop retraining policy get det --json'],
  async run(context) {
    const [action, modelName] = context.args.positional as [string, string];
    if (action === 'get') {
      const view = await unwrap(context.client().retraining.policies.get(modelName));
      context.io.out(context.json ? json(view) : formatPolicy(view));
      return EXIT.ok;
    }
    if (action !== 'set') throw new UsageError(`edgeloop retraining policy takes set or get, not "${action}"`);
    const file = context.flag('file');
    if (!file) throw new UsageError('edgeloop retraining policy set needs --file FILE');
    let body: unknown;
    try {
      body = JSON.parse(readFileSync(file, 'utf8'));
    } catch (error) {
      throw new UsageError(`${file} is not a JSON file: ${(error as Error).message}`);
    }
    // The file goes as written: the control plane checks it and names every problem (422).
    const view = await unwrap(context.client().retraining.policies.set(modelName, body as RetrainingPolicyInput));
    context.io.out(context.json ? json(view) : formatPolicy(view));
    return EXIT.ok;
  },
};

const trigger: CommandSpec = {
  words: ['retraining', 'trigger'],
  args: ['MODEL_NAME'],
  summary: "Fire a retraining run of a model name's policy now (the cooldown does not apply)",
  flags: [{ name: 'note', value: 'TEXT', help: 'why, kept in the run reason' }],
  examples: ['edgeloop retraining trigger det --note "new cameras at site b"'],
  async run({ args, client, flag, io, json: asJson }) {
    const note = flag('note');
    const run = await unwrap(
      client().retraining.trigger({ modelName: args.positional[0]!, ...(note !== undefined ? { note } : {}) }),
    );
    io.out(asJson ? json(run) : formatRun(run));
    return EXIT.ok;
  },
};

const claim: CommandSpec = {
  words: ['retraining', 'claim'],
  args: ['RUN_ID'],
  summary: 'Take a retraining run as its trainer (once; webhook retries stop)',
  flags: [{ name: 'trainer', value: 'NAME', help: 'who takes it (default: the token id)' }],
  examples: ['edgeloop retraining claim rt-4f2a9c0d1e2b3a4c --trainer gpu-box-1'],
  async run({ args, client, flag, io, json: asJson }) {
    const trainer = flag('trainer');
    const run = await unwrap(client().retraining.claim(args.positional[0]!, trainer ? { trainer } : {}));
    io.out(asJson ? json(run) : formatRun(run));
    return EXIT.ok;
  },
};

const complete: CommandSpec = {
  words: ['retraining', 'complete'],
  args: ['RUN_ID'],
  summary: 'Link the registered model trained from a run',
  flags: [{ name: 'model', value: 'NAME@VERSION', help: 'the registered model' }],
  examples: ['edgeloop retraining complete rt-4f2a9c0d1e2b3a4c --model det@2.1.0'],
  async run({ args, client, flag, io, json: asJson }) {
    const model = flag('model');
    if (!model) throw new UsageError('edgeloop retraining complete needs --model NAME@VERSION');
    const run = await unwrap(client().retraining.complete(args.positional[0]!, model));
    io.out(asJson ? json(run) : formatRun(run));
    return EXIT.ok;
  },
};

export const retrainingGroup: GroupSpec = {
  name: 'retraining',
  summary: 'Retraining policies, runs and their signed webhook deliveries',
  commands: [runs, show, policy, trigger, claim, complete],
  examples: [
    'edgeloop retraining policy set det --file retrain-det.json',
    'edgeloop retraining runs --status failed',
    'edgeloop retraining trigger det',
  ],
};
