import type {
  CohortMeasure,
  GateResultView,
  RolloutDeviceView,
  RolloutDryRun,
  RolloutEventView,
  RolloutView,
  VerdictView,
} from '@edgeloop/protocol';
import { duration, isoTime, num, pairs, table } from './output.ts';

/*
 * Pure text renderers of rollouts and their verdicts, shared by `rollouts get`, `rollouts watch`,
 * `rollouts list` and the dry run. They read only the protocol's view types.
 */

/** `0.95 [0.91, 0.98] (12 dev, 3400 fr)`; `-` without data. */
export function formatCohort(measure: CohortMeasure | null): string {
  if (measure === null || typeof measure !== 'object') return typeof measure === 'number' ? num(measure) : '-';
  const interval = measure.lo === null && measure.hi === null ? '' : ` [${num(measure.lo)}, ${num(measure.hi)}]`;
  return `${num(measure.median)}${interval} (${measure.devices} dev, ${num(measure.frames)} fr)`;
}

/** `ratio 0.97 [0.93, 1.01] @95%`; `-` when the gate made no comparison. */
export function formatComparison(comparison: GateResultView['comparison']): string {
  if (!comparison) return '-';
  const interval =
    comparison.lo === null && comparison.hi === null ? '' : ` [${num(comparison.lo)}, ${num(comparison.hi)}]`;
  return `${comparison.kind} ${num(comparison.estimate)}${interval} @${Math.round(comparison.confidence * 100)}%`;
}

export function formatGates(gates: readonly GateResultView[]): string {
  return table(
    [
      'GATE',
      'VERDICT',
      'CANARY median [lo, hi]',
      'CONTROL median [lo, hi]',
      'COMPARISON [lo, hi]',
      'THRESHOLD',
      'DECISION',
    ],
    gates.map((gate) => [
      gate.gate,
      gate.verdict,
      formatCohort(gate.canary),
      formatCohort(gate.control),
      formatComparison(gate.comparison),
      num(gate.threshold),
      gate.decision || gate.detail || '-',
    ]),
  );
}

/** A verdict: one line with its window and evidence, then the gate table. */
export function formatVerdict(verdict: VerdictView): string {
  const e = verdict.evidence;
  const window = verdict.window
    ? `window ${verdict.window.index} ${isoTime(verdict.window.from)} .. ${isoTime(verdict.window.to)}`
    : '';
  const lines = [
    `verdict ${verdict.verdict.toUpperCase()} at ${isoTime(verdict.at)}, stage ${verdict.stage} (#${verdict.stageIndex})${window ? `, ${window}` : ''}`,
    `  ${verdict.reason}`,
    `  evidence: ${e.reporting}/${e.stageDevices} stage devices reporting, ${num(e.frames)} frames, soaked ${duration(e.soakedS)}, ${e.failed} failed${e.unchanged ? `, ${e.unchanged} unchanged (same bytes)` : ''}; control ${e.controlDevices} devices, ${num(e.controlFrames)} frames`,
    `  failing windows: ${verdict.failingWindows}`,
  ];
  if (verdict.timedOut) lines.push(`  stage deadline reached: action ${verdict.action ?? 'none'}`);
  if (verdict.gates.length > 0) lines.push('', formatGates(verdict.gates));
  return lines.join('\n');
}

export function formatRollouts(items: readonly RolloutView[]): string {
  return table(
    ['ID', 'MODEL', 'STATUS', 'STAGE', 'DEVICES', 'LAST VERDICT'],
    items.map((r) => [
      r.id,
      r.modelId,
      r.status,
      r.stage ?? '-',
      pairs(r.counts as Record<string, number>),
      r.lastVerdict ? `${r.lastVerdict.verdict}: ${r.lastVerdict.reason}` : '-',
    ]),
  );
}

/** `rollouts get` and each redraw of `rollouts watch`. */
export function formatRolloutDetail(rollout: RolloutView): string {
  const rows: [string, string][] = [
    ['rollout', rollout.id],
    ['model', rollout.modelId],
    ['status', rollout.status + (rollout.reason ? ` (${rollout.reason})` : '')],
    [
      'stage',
      rollout.stage === null
        ? `done (${rollout.spec.stages.length} stages)`
        : `${rollout.stage} (${rollout.stageIndex + 1} of ${rollout.spec.stages.length}), since ${isoTime(rollout.stageStartedAt)}`,
    ],
    [
      'cohorts',
      `canary ${rollout.cohorts.canary.length}, control ${rollout.cohorts.control.length}, target ${rollout.cohorts.targetDevices}`,
    ],
    ['devices', pairs(rollout.counts as Record<string, number>)],
    ['failing windows', String(rollout.failingWindows)],
    ['last evaluated', isoTime(rollout.lastEvaluatedAt)],
  ];
  const head = table(['ROLLOUT', ''], rows).split('\n').slice(1).join('\n');
  return `${head}\n\n${rollout.lastVerdict ? formatVerdict(rollout.lastVerdict) : 'no verdict yet'}`;
}

/** The dry run: cohorts, each stage's size and gate feasibility, then every warning. */
export function formatDryRun(dry: RolloutDryRun): string {
  const stages = dry.stages ?? [];
  const lines = [
    `dry run for ${dry.modelId}: ${dry.targetDevices} target devices (${dry.incompatibleDevices} incompatible left out, ${dry.unchangedDevices} already on these bytes), canary ${dry.canary.length}, control ${dry.control.length}`,
    `feasibility assumes ${num(dry.fps.value)} fps per device (${dry.fps.source}) and a shadow sample share of ${num(dry.shadowSampleShare * 100)}%`,
    `earliest completion ${duration(dry.earliestDurationS)}, ${num(dry.bytesToDownload)} bytes to download`,
    '',
    table(
      ['STAGE', 'KIND', 'DEVICES', 'NEW', 'CONTROL', 'DEADLINE', 'GATES'],
      stages.map((stage) => [
        stage.name,
        stage.kind,
        String(stage.devices),
        String(stage.newDevices),
        String(stage.controlDevices),
        duration(stage.maxDurationS),
        (stage.gates ?? []).map((gate) => `${gate.gate}:${gate.feasible ? 'ok' : 'INFEASIBLE'}`).join(' ') || '-',
      ]),
    ),
  ];
  const infeasible = stages.flatMap((stage) =>
    (stage.gates ?? []).filter((gate) => !gate.feasible).map((gate) => `  ${stage.name} ${gate.gate}: ${gate.reason}`),
  );
  if (infeasible.length > 0)
    lines.push('', 'gates that cannot collect their minimum evidence in one window:', ...infeasible);
  const warnings = dry.warnings ?? [];
  lines.push('', warnings.length === 0 ? 'no warnings' : `warnings (${warnings.length}):`);
  for (const warning of warnings) lines.push(`  - ${warning}`);
  return lines.join('\n');
}

export function formatRolloutEvents(items: readonly RolloutEventView[]): string {
  return table(
    ['AT', 'TYPE', 'STAGE', 'DATA'],
    items.map((event) => {
      const { reason, ...rest } = event.data as Record<string, unknown>;
      const summary = typeof reason === 'string' ? reason : JSON.stringify(rest);
      return [
        isoTime(event.at),
        event.type,
        event.stage ?? '-',
        summary.length > 100 ? `${summary.slice(0, 97)}...` : summary,
      ];
    }),
  );
}

export function formatRolloutDevices(items: readonly RolloutDeviceView[]): string {
  return table(
    ['DEVICE', 'MODE', 'STAGE', 'STATE', 'PREVIOUS', 'REASON', 'UPDATE'],
    items.map((device) => [
      device.deviceId,
      device.mode,
      String(device.stageIndex),
      device.state,
      device.previous ? device.previous.id : '-',
      device.reason ?? '-',
      device.update ? `${device.update.state}${device.update.reason ? ` (${device.update.reason})` : ''}` : '-',
    ]),
  );
}
