import { readFileSync } from 'node:fs';
import {
  ApiRequestError,
  ROLLOUT_STATUSES,
  type RolloutDeviceQuery,
  type RolloutListQuery,
  type RolloutSpecInput,
  type RolloutStatus,
  type RolloutView,
  SERVER_EVENT_TYPES,
  type ServerEventType,
  unwrap,
} from '@edgeloop/protocol';
import { parsePairs, UsageError } from './args.ts';
import { type CommandContext, type CommandSpec, EXIT, type GroupSpec } from './command.ts';
import { json } from './output.ts';
import {
  formatDryRun,
  formatRolloutDetail,
  formatRolloutDevices,
  formatRolloutEvents,
  formatRollouts,
} from './rollout-tables.ts';

const TERMINAL: ReadonlySet<RolloutStatus> = new Set(['completed', 'rolled_back', 'aborted']);
/** Server events that end a watch (the rollout reached a terminal status). */
const TERMINAL_EVENTS: ReadonlySet<string> = new Set(['rollout.completed', 'rollout.rolled-back', 'rollout.aborted']);
/** Every rollout event but `rollout.created` (watch starts from an existing rollout). */
const WATCHED_EVENTS: readonly ServerEventType[] = SERVER_EVENT_TYPES.filter(
  (type) => type.startsWith('rollout.') && type !== 'rollout.created',
);
/** Events after which `watch` redraws the table (a verdict or a change of status or stage). */
const REDRAW_EVENTS: ReadonlySet<string> = new Set(WATCHED_EVENTS.filter((type) => type !== 'rollout.devices'));

const list: CommandSpec = {
  words: ['rollouts', 'list'],
  summary: 'List rollouts, newest first',
  flags: [{ name: 'status', value: 'S', help: 'only rollouts in this status', choices: ROLLOUT_STATUSES }],
  examples: ['edgeloop rollouts list', 'edgeloop rollouts list --status running --json'],
  async run({ client, flag, io, json: asJson }) {
    const status = flag('status') as RolloutListQuery['status'];
    const page = await unwrap(client().rollouts.list(status ? { status } : {}));
    io.out(asJson ? json(page.items) : `${formatRollouts(page.items)}\n`);
    return EXIT.ok;
  },
};

const get: CommandSpec = {
  words: ['rollouts', 'get'],
  args: ['ID'],
  summary: 'Show a rollout and its last verdict with the numbers behind each gate',
  description:
    'The gate table shows, for canary and control, the median of the per-device window values with its\n' +
    'interval and the devices and frames behind it; then the comparison with its confidence interval,\n' +
    'the threshold and the decision.',
  examples: ['edgeloop rollouts get ro_123', 'edgeloop rollouts get ro_123 --json | jq .lastVerdict.gates'],
  async run({ args, client, io, json: asJson }) {
    const rollout = await unwrap(client().rollouts.get(args.positional[0]!));
    io.out(asJson ? json(rollout) : `${formatRolloutDetail(rollout)}\n`);
    return EXIT.ok;
  },
};

const events: CommandSpec = {
  words: ['rollouts', 'events'],
  args: ['ID'],
  summary: "List a rollout's audit events, oldest first (created, verdict, advanced, paused, ...)",
  flags: [{ name: 'type', value: 'TYPE', help: 'only events of this type (verdict, advanced, ...)' }],
  examples: ['edgeloop rollouts events ro_123', 'edgeloop rollouts events ro_123 --type verdict --json'],
  async run({ args, client, flag, io, json: asJson }) {
    const type = flag('type');
    const page = await unwrap(client().rollouts.events(args.positional[0]!, { limit: 1000, type }));
    io.out(asJson ? json(page) : `${formatRolloutEvents(page.items)}\n`);
    return EXIT.ok;
  },
};

const devices: CommandSpec = {
  words: ['rollouts', 'devices'],
  args: ['ID'],
  summary: "List a rollout's device assignments and each device's update state",
  flags: [
    {
      name: 'state',
      value: 'STATE',
      help: 'only assignments in this state',
      choices: ['assigned', 'active', 'failed', 'reverting', 'rolled_back'],
    },
  ],
  examples: ['edgeloop rollouts devices ro_123', 'edgeloop rollouts devices ro_123 --state failed'],
  async run({ args, client, flag, io, json: asJson }) {
    const state = flag('state') as RolloutDeviceQuery['state'];
    const page = await unwrap(client().rollouts.devices(args.positional[0]!, { limit: 1000, state }));
    io.out(asJson ? json(page) : `${formatRolloutDevices(page.items)}\n`);
    return EXIT.ok;
  },
};

const create: CommandSpec = {
  words: ['rollouts', 'create'],
  summary: 'Start a rollout from a spec file, or of a model to the devices a selector matches',
  description:
    'With --dry-run nothing is created: it prints the cohorts, each stage with its deadline and whether\n' +
    'each gate can collect its minimum evidence in one window, and every warning (a stage that would\n' +
    'stall or end at its deadline). The spec format is protocol/schemas/api.rollout-spec.json.\n' +
    'A spec with validation {dataset, metric, minDelta} is created pending: it touches no device until an\n' +
    'evaluation of the model on that dataset version (edgeloop-agent eval --baseline) shows it at least\n' +
    'minDelta better than the champion, and is rolled back if one shows less.',
  flags: [
    { name: 'spec', value: 'FILE', help: 'a rollout spec (JSON)', file: true },
    { name: 'model', value: 'NAME@VERSION', help: 'the release to roll out (without --spec)' },
    { name: 'selector', value: 'KEY=VALUE', help: 'target devices with this label (without --spec)', repeatable: true },
    { name: 'dry-run', help: 'plan only: show stages, gate feasibility and warnings' },
  ],
  examples: [
    'edgeloop rollouts create --model det@2.0.0 --selector site=lab --dry-run',
    'edgeloop rollouts create --model det@2.0.0 --selector site=lab',
    'edgeloop rollouts create --spec rollout.json --json | jq -r .id',
  ],
  async run({ args, client, flag, io, json: asJson }) {
    const specFile = flag('spec');
    let spec: Record<string, unknown>;
    if (specFile) {
      if (flag('model') || args.flags.has('selector')) {
        throw new UsageError('give either --spec FILE or --model/--selector, not both');
      }
      try {
        spec = JSON.parse(readFileSync(specFile, 'utf8')) as Record<string, unknown>;
      } catch (error) {
        throw new UsageError(
          `cannot read the spec ${specFile}: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    } else {
      const modelId = flag('model');
      if (!modelId) throw new UsageError('edgeloop rollouts create needs --spec FILE or --model NAME@VERSION');
      spec = { modelId, selector: { labels: parsePairs(args.flags.get('selector') ?? [], 'selector') } };
    }
    // The spec goes as written: the control plane checks it and answers every problem (422).
    const { dryRun: specDryRun, ...rest } = spec;
    const body = rest as RolloutSpecInput;
    if (args.booleans.has('dry-run') || specDryRun === true) {
      const plan = await unwrap(client().rollouts.plan(body));
      io.out(asJson ? json(plan) : `${formatDryRun(plan)}\n`);
    } else {
      const created = await unwrap(client().rollouts.create(body));
      io.out(asJson ? json(created) : `created rollout ${created.id}\n${formatRollouts([created])}\n`);
    }
    return EXIT.ok;
  },
};

function action(name: 'pause' | 'resume' | 'abort' | 'promote', summary: string): CommandSpec {
  return {
    words: ['rollouts', name],
    args: ['ID'],
    summary,
    flags: [{ name: 'reason', value: 'TEXT', help: 'why, for the audit record' }],
    examples: [`edgeloop rollouts ${name} ro_123 --reason "${name === 'promote' ? 'looks good' : 'investigating'}"`],
    async run({ args, client, flag, io, json: asJson }) {
      const reason = flag('reason');
      const rollout = await unwrap(client().rollouts.act(args.positional[0]!, name, reason || undefined));
      io.out(asJson ? json(rollout) : `${formatRollouts([rollout])}\n`);
      return EXIT.ok;
    },
  };
}

/** Follows the event stream; returns when the rollout is terminal, the stream ends or the user stops. */
async function watch({ args, client, io, json: asJson }: CommandContext): Promise<number> {
  const id = args.positional[0]!;
  const http = client();
  const stop = new AbortController();
  let interrupted = false;
  void io.waitForShutdown().then(() => {
    interrupted = true;
    stop.abort();
  });
  const show = (rollout: RolloutView) => {
    if (asJson) return;
    // Live on a terminal: the table redrawn in place; otherwise appended.
    io.out(io.isTty ? `\x1b[H\x1b[2J${formatRolloutDetail(rollout)}\n` : `${formatRolloutDetail(rollout)}\n\n`);
  };
  // Subscribe first, then read the state: nothing that happens in between is missed.
  const opened = await http.openEvents({ types: WATCHED_EVENTS, signal: stop.signal });
  if (!opened.ok) {
    if (interrupted) return EXIT.ok;
    throw new ApiRequestError(opened.error);
  }
  try {
    const first = await unwrap(http.rollouts.get(id));
    if (asJson) io.out(`${JSON.stringify({ type: 'rollout', at: Date.now(), data: first })}\n`);
    else show(first);
    if (TERMINAL.has(first.status)) return EXIT.ok;
    for await (const event of opened.value) {
      if (event.data.rolloutId !== id) continue;
      if (asJson) io.out(`${JSON.stringify(event)}\n`);
      else if (REDRAW_EVENTS.has(event.type)) show(await unwrap(http.rollouts.get(id)));
      // A promote of the last stage completes the rollout with a `rollout.promoted` event.
      const status = event.data.status as RolloutStatus | undefined;
      if (TERMINAL_EVENTS.has(event.type) || (status !== undefined && TERMINAL.has(status))) return EXIT.ok;
    }
    if (interrupted) return EXIT.ok;
    throw new Error(`the event stream of ${http.baseUrl} ended before rollout ${id} finished`);
  } catch (error) {
    if (interrupted) return EXIT.ok;
    if (error instanceof ApiRequestError && error.code === 'overflow') {
      throw new Error(`the event stream of ${http.baseUrl} overflowed; run watch again`);
    }
    throw error;
  } finally {
    stop.abort();
  }
}

const watchCommand: CommandSpec = {
  words: ['rollouts', 'watch'],
  args: ['ID'],
  summary: 'Follow a rollout live: the verdict table again on every verdict and change of stage',
  description:
    'Reads the server-sent event stream. On a terminal the table is redrawn in place; with --json each\n' +
    'event is one JSON line ({type, at, data}; the first line is the rollout). Ends with exit code 0 when\n' +
    'the rollout is completed, rolled_back or aborted, or on Ctrl-C.',
  examples: [
    'edgeloop rollouts watch ro_123',
    'edgeloop rollouts watch ro_123 --json | jq -c "select(.type==\\"rollout.verdict\\")"',
  ],
  run: watch,
};

export const rolloutsGroup: GroupSpec = {
  name: 'rollouts',
  summary: 'Roll a model out in stages with gates, watch the verdicts, pause, resume, promote or abort',
  commands: [
    list,
    get,
    watchCommand,
    events,
    devices,
    create,
    action('pause', 'Pause: no new stage, no new assignments'),
    action('resume', 'Resume a paused rollout'),
    action('abort', 'Abort: every device goes back to the model it had before'),
    action('promote', 'Skip the current stage gates and advance to the next stage'),
  ],
  examples: [
    'edgeloop rollouts create --model det@2.0.0 --selector site=lab --dry-run',
    'edgeloop rollouts create --model det@2.0.0 --selector site=lab',
    'edgeloop rollouts watch ro_123',
    'edgeloop rollouts abort ro_123 --reason "false positives at site lab"',
  ],
};
