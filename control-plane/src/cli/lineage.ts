import {
  LINEAGE_MAX_DEPTH,
  type LineageModel,
  type LineageRollout,
  type ModelLineage,
  unwrap,
} from '@edgeloop/protocol';
import { UsageError } from './args.ts';
import { type CommandSpec, EXIT } from './command.ts';
import { isoTime, json } from './output.ts';

/*
 * `edgeloop models lineage MODEL`: the chain a model sits in, read top to bottom the way the loop
 * runs: samples -> dataset -> run -> parent -> model -> rollouts -> outcome, then its children.
 */

const short = (sha: string) => sha.slice(0, 12);

const counts = (record: Readonly<Record<string, number>>) =>
  Object.entries(record)
    .sort(([a, x], [b, y]) => y - x || a.localeCompare(b))
    .map(([key, n]) => `${key} ${n}`)
    .join(', ');

const flagsOf = (model: LineageModel) => (model.lineageFlags.length > 0 ? ` [${model.lineageFlags.join(', ')}]` : '');

/** A run's reason `{ kind, numbers }` in one line: `drift (psi 0.31, windows 3)`. */
function reasonText(reason: unknown): string {
  if (typeof reason !== 'object' || reason === null) return reason === null ? '-' : String(reason);
  const { kind, numbers } = reason as { kind?: unknown; numbers?: unknown };
  const figures =
    typeof numbers === 'object' && numbers !== null
      ? Object.entries(numbers)
          .filter(([, value]) => typeof value === 'number' || typeof value === 'string')
          .map(([key, value]) => `${key} ${value}`)
          .join(', ')
      : '';
  return `${typeof kind === 'string' ? kind : 'unknown'}${figures ? ` (${figures})` : ''}`;
}

function rolloutLines(rollout: LineageRollout): string[] {
  const stages = rollout.stages.map((stage) => {
    const { pass, fail, inconclusive } = stage.verdicts;
    const failing = stage.last.gates.filter((gate) => gate.verdict === 'fail').map((gate) => gate.gate);
    return (
      `${stage.stage}: ${stage.last.verdict} (pass ${pass}, fail ${fail}, inconclusive ${inconclusive})` +
      (failing.length > 0 ? ` failing ${failing.join(', ')}` : '')
    );
  });
  const state = rollout.terminal ? rollout.status : `${rollout.status}, in progress`;
  return [
    `${rollout.id}  ${isoTime(rollout.createdAt)}`,
    ...stages.map((line) => `    ${line}`),
    `    => ${state}${rollout.reason ? `: ${rollout.reason}` : ''}`,
  ];
}

/** The lineage as the readable chain `edgeloop models lineage` prints (pure). */
export function formatLineage(lineage: ModelLineage): string {
  const { model, upstream, downstream } = lineage;
  const lines: string[] = [];
  const step = (label: string, text: string, more: readonly string[] = []) => {
    lines.push(`${label.padEnd(9)} ${text}`);
    for (const line of more) lines.push(`${' '.repeat(10)}${line}`);
    lines.push('   |');
  };

  const dataset = upstream.dataset;
  if (dataset?.samples) {
    const samples = dataset.samples;
    step(
      'samples',
      `${samples.count} in ${dataset.id}`,
      [
        samples.count > 0 ? `by strategy: ${counts(samples.byStrategy)}` : '',
        samples.count > 0 ? `by site: ${counts(samples.bySite)}` : '',
        samples.sampleIds.length > 0 ? `e.g. ${samples.sampleIds.join(', ')}` : '',
      ].filter((line) => line !== ''),
    );
  }
  if (dataset) {
    const labelled = dataset.parents.map((parent) => `${parent.id}${parent.found ? '' : ' (unknown)'}`);
    step(
      'dataset',
      dataset.found
        ? `${dataset.id}  ${dataset.sampleCount} samples, frozen ${isoTime(dataset.createdAt)} by ${dataset.createdBy ?? '-'}`
        : `${dataset.id}  UNKNOWN: no such dataset version`,
      labelled.length > 0 ? [`labels ${labelled.join(' <- ')}`] : [],
    );
  } else {
    step('dataset', '-  (the release names none)');
  }
  const run = upstream.run;
  if (run) {
    step(
      'run',
      run.found
        ? `${run.runId}  ${reasonText(run.reason)}  status ${run.status}`
        : `${run.runId}  UNKNOWN: no such retraining run`,
      run.found ? [`fired ${isoTime(run.createdAt)} for ${run.modelName}, froze ${run.datasetId}`] : [],
    );
  } else {
    step('run', '-  (the release names none)');
  }
  if (upstream.parents.length > 0) {
    const chain = upstream.parents.map((parent) =>
      parent.model
        ? `${parent.model.id} (${short(parent.sha256)})${flagsOf(parent.model)}`
        : `${short(parent.sha256)} UNKNOWN`,
    );
    step('parent', chain.join(' <- ') + (upstream.parentsTruncated ? ' <- ...' : ''));
  } else {
    step('parent', upstream.parentsTruncated ? '... (depth 0)' : '-  (none)');
  }
  const trainer = model.lineage?.trainer;
  lines.push(
    `${'model'.padEnd(9)} ${model.id}  sha256 ${short(model.sha256)}  registered ${isoTime(model.createdAt)}` +
      (trainer ? `  trainer "${trainer}"` : ''),
  );
  lines.push(`${' '.repeat(10)}flags: ${model.lineageFlags.length > 0 ? model.lineageFlags.join(', ') : 'none'}`);
  lines.push('   |');
  if (downstream.rollouts.length === 0) lines.push(`${'rollouts'.padEnd(9)} -  (none)`);
  else {
    lines.push('rollouts');
    for (const rollout of downstream.rollouts) for (const line of rolloutLines(rollout)) lines.push(`  ${line}`);
  }
  lines.push(
    `${'children'.padEnd(9)} ${
      downstream.children.length === 0
        ? '-  (none)'
        : downstream.children.map((child) => `${child.id}${flagsOf(child)}`).join(', ')
    }`,
  );
  return `${lines.join('\n')}\n`;
}

/** `det@2.0.0` or `det 2.0.0` as name and version. */
export function parseModelArgs(positional: readonly string[]): { name: string; version: string } {
  const [first = '', second] = positional;
  if (second !== undefined) return { name: first, version: second };
  const at = first.lastIndexOf('@');
  if (at <= 0 || at === first.length - 1) {
    throw new UsageError(`"${first}" is not a model id NAME@VERSION (or give NAME VERSION)`);
  }
  return { name: first.slice(0, at), version: first.slice(at + 1) };
}

export const lineageCommand: CommandSpec = {
  words: ['models', 'lineage'],
  args: ['MODEL', '[VERSION]'],
  summary: "Show a release's lineage: samples -> dataset -> run -> model -> rollouts -> outcome",
  description:
    'MODEL is NAME@VERSION (or NAME VERSION). Upstream: the dataset version its signed release names, with\n' +
    'the hard samples behind it, the retraining run and the parent models; downstream: its rollouts with\n' +
    'the gate verdicts of each stage and where they ended, and the models trained from it. Names the\n' +
    'control plane did not know at upload are shown as UNKNOWN and listed under flags.',
  flags: [{ name: 'depth', value: 'N', help: `parent models to walk up (0 to ${LINEAGE_MAX_DEPTH}, default 8)` }],
  examples: ['edgeloop models lineage det@2.0.0', 'edgeloop models lineage det 2.0.0 --depth 3 --json'],
  async run({ args, client, flag, io, json: asJson }) {
    const { name, version } = parseModelArgs(args.positional);
    const depthText = flag('depth');
    let depth: number | undefined;
    if (depthText !== undefined) {
      depth = Number(depthText);
      if (!/^\d+$/.test(depthText) || depth > LINEAGE_MAX_DEPTH) {
        throw new UsageError(`--depth ${depthText} is not a whole number from 0 to ${LINEAGE_MAX_DEPTH}`);
      }
    }
    const lineage = await unwrap(client().models.lineage(name, version, depth === undefined ? {} : { depth }));
    io.out(asJson ? json(lineage) : formatLineage(lineage));
    return EXIT.ok;
  },
};
