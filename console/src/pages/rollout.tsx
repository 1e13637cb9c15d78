import type { GateResultView, RolloutEventList, RolloutView, VerdictView } from '@edgeloop/protocol';
import { useMemo } from 'preact/hooks';
import { TimeChart } from '../chart.tsx';
import { ConfirmButton, ErrorNote, StateBadge, useResult } from '../components.tsx';
import { Link, useLiveEvents, useSession } from '../context.tsx';
import { formatDuration, formatNumber, formatTime } from '../format.ts';
import { createThrottle, pageTimers } from '../live.ts';

type StageState = 'done' | 'current' | 'pending';

/** Each stage's place: done before the current index, current at it, pending after. */
export function stageStates(rollout: Pick<RolloutView, 'stageIndex' | 'status' | 'spec'>): StageState[] {
  return rollout.spec.stages.map((_, index) => {
    if (rollout.status === 'completed' || index < rollout.stageIndex) return 'done';
    if (index === rollout.stageIndex) return 'current';
    return 'pending';
  });
}

/** The actions a rollout in this status takes. */
export function actionsFor(status: RolloutView['status']): ('pause' | 'resume' | 'abort' | 'promote')[] {
  if (status === 'running') return ['pause', 'promote', 'abort'];
  if (status === 'paused') return ['resume', 'promote', 'abort'];
  if (status === 'pending') return ['abort'];
  return [];
}

const STAGE_SHAPE: Record<StageState, string> = { done: '✓', current: '●', pending: '○' };

/** Per gate, the canary-vs-control comparison of each window of one stage, for the charts. */
export function gateSeries(verdicts: readonly VerdictView[], stageIndex: number) {
  const windows = verdicts.filter((v) => v.stageIndex === stageIndex).sort((a, b) => a.window.to - b.window.to);
  const gates = new Map<string, { times: number[]; estimate: (number | null)[]; threshold: number; kind: string }>();
  for (const verdict of windows) {
    for (const gate of verdict.gates) {
      const entry = gates.get(gate.gate) ?? { times: [], estimate: [], threshold: gate.threshold, kind: gate.gate };
      entry.times.push(verdict.window.to / 1000);
      entry.estimate.push(gate.comparison?.estimate ?? null);
      entry.threshold = gate.threshold;
      gates.set(gate.gate, entry);
    }
  }
  return gates;
}

export function RolloutPage(props: { id: string }) {
  const { client, canAct } = useSession();
  const rollout = useResult<RolloutView>((signal) => client.rollouts.get(props.id, signal), [client, props.id]);
  const events = useResult<RolloutEventList>(
    (signal) => client.rollouts.events(props.id, { limit: 1000 }, signal),
    [client, props.id],
  );
  const refetch = useMemo(
    () =>
      createThrottle(
        () => {
          rollout.reload();
          events.reload();
        },
        1000,
        pageTimers,
      ),
    [rollout.reload, events.reload],
  );
  useLiveEvents(
    (batch) => {
      if (batch.some((event) => event.type.startsWith('rollout.') && event.data.rolloutId === props.id)) refetch();
    },
    [props.id, refetch],
  );
  const verdicts = useMemo(
    () =>
      (events.value?.items ?? [])
        .filter((event) => event.type === 'verdict')
        .map((event) => event.data as unknown as VerdictView),
    [events.value],
  );

  const r = rollout.value;
  return (
    <section>
      <p class="crumbs">
        <Link href="/rollouts">Rollouts</Link> / {props.id}
      </p>
      <h1>
        Rollout {props.id} {r ? <StateBadge state={r.status} /> : null}
      </h1>
      <ErrorNote error={rollout.error} />
      {r ? (
        <>
          <p>
            <strong>{r.modelId}</strong> to {r.cohorts.targetDevices} devices (canary {r.cohorts.canary.length}, control{' '}
            {r.cohorts.control.length}). Created {formatTime(r.createdAt)}
            {r.reason ? ` — ${r.reason}` : ''}
          </p>
          {canAct && actionsFor(r.status).length > 0 ? (
            <div class="actions" data-testid="rollout-actions">
              {actionsFor(r.status).map((action) => (
                <ConfirmButton
                  key={action}
                  label={action[0]!.toUpperCase() + action.slice(1)}
                  title={`${action[0]!.toUpperCase() + action.slice(1)} rollout ${r.id}?`}
                  danger={action === 'abort'}
                  run={async (reason) => {
                    const result = await client.rollouts.act(r.id, action, reason || undefined);
                    if (!result.ok) return result.error;
                    rollout.setValue(result.value);
                    events.reload();
                    return null;
                  }}
                >
                  <p>
                    {action === 'abort'
                      ? 'Every device that took the candidate returns to its previous model. This cannot be undone.'
                      : action === 'promote'
                        ? 'Skips the remaining gates: every target device gets the candidate.'
                        : action === 'pause'
                          ? 'No stage advances and no new device is assigned until it is resumed.'
                          : 'Windows are judged again from now on.'}
                  </p>
                </ConfirmButton>
              ))}
            </div>
          ) : null}

          <h2>Stages</h2>
          <ol class="timeline" data-testid="stages">
            {r.spec.stages.map((stage, index) => {
              const state = stageStates(r)[index]!;
              return (
                <li key={stage.name} class={`stage stage-${state}`} data-stage-state={state}>
                  <span class="stage-shape" aria-hidden="true">
                    {STAGE_SHAPE[state]}
                  </span>
                  <span class="stage-name">{stage.name}</span>
                  <span class="stage-kind">
                    {stage.kind}
                    {stage.percent !== undefined ? ` ${stage.percent}%` : ''}
                  </span>
                  <span class="stage-state">{state}</span>
                  {state === 'current' && r.status !== 'completed' ? (
                    <span class="stage-since">since {formatTime(r.stageStartedAt)}</span>
                  ) : null}
                </li>
              );
            })}
          </ol>

          <h2>Devices by state</h2>
          <p class="labels">
            {Object.entries(r.counts).map(([state, count]) => (
              <span class="chip" key={state}>
                {state}: {count}
              </span>
            ))}
            {Object.keys(r.counts).length === 0 ? 'none yet' : null}
          </p>

          {r.lastVerdict ? <Verdict verdict={r.lastVerdict} /> : <p>No window judged yet in this stage.</p>}
          <GateCharts verdicts={verdicts} stageIndex={r.lastVerdict?.stageIndex ?? r.stageIndex} />
        </>
      ) : null}

      <h2>Log</h2>
      <ErrorNote error={events.error} />
      <ol class="log" reversed>
        {(events.value?.items ?? [])
          .slice(-50)
          .reverse()
          .map((event) => (
            <li key={event.id}>
              <time dateTime={new Date(event.at).toISOString()}>{formatTime(event.at)}</time>{' '}
              <strong>{event.type}</strong>
              {event.stage ? ` (${event.stage})` : ''}
              {typeof event.data.reason === 'string' ? ` — ${event.data.reason}` : ''}
            </li>
          ))}
      </ol>
    </section>
  );
}

function measure(m: GateResultView['canary']): string {
  if (!m || m.median === null) return '—';
  const interval = m.lo !== null && m.hi !== null ? ` [${formatNumber(m.lo, 2)}, ${formatNumber(m.hi, 2)}]` : '';
  return `${formatNumber(m.median, 2)}${interval} (${m.devices} dev)`;
}

function Verdict(props: { verdict: VerdictView }) {
  const v = props.verdict;
  return (
    <div class="panel">
      <h2>
        Last verdict: <StateBadge state={v.verdict} /> window {v.window.index + 1} of stage {v.stage}
      </h2>
      <p>
        {v.reason}. Window {formatTime(v.window.from)} – {formatTime(v.window.to)}; soaked{' '}
        {formatDuration(v.evidence.soakedS)}; {v.evidence.reporting}/{v.evidence.stageDevices} stage devices and{' '}
        {v.evidence.controlDevices} control devices reported.
      </p>
      <div class="table-wrap">
        <table data-testid="gates">
          <thead>
            <tr>
              <th scope="col">Gate</th>
              <th scope="col">Verdict</th>
              <th scope="col">Canary</th>
              <th scope="col">Control</th>
              <th scope="col">Comparison [interval]</th>
              <th scope="col">Threshold</th>
              <th scope="col">Why</th>
            </tr>
          </thead>
          <tbody>
            {v.gates.map((gate) => (
              <tr key={gate.gate}>
                <th scope="row">{gate.gate}</th>
                <td>
                  <StateBadge state={gate.verdict} />
                </td>
                <td>{measure(gate.canary)}</td>
                <td>{measure(gate.control)}</td>
                <td>
                  {gate.comparison
                    ? `${formatNumber(gate.comparison.estimate, 3)} [${formatNumber(gate.comparison.lo, 3)}, ${formatNumber(gate.comparison.hi, 3)}]`
                    : '—'}
                </td>
                <td>{formatNumber(gate.threshold, 3)}</td>
                <td>{gate.decision}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

/** Where a gate's comparison fails: above the threshold, below it, or (detections) outside 1 +- it. */
function failingBands(gate: string, threshold: number, span: number): { from: number; to: number }[] {
  if (gate === 'fps-ratio' || gate === 'shadow-precision' || gate === 'shadow-recall') {
    return [{ from: threshold - span, to: threshold }];
  }
  if (gate === 'detections-change') {
    return [
      { from: 1 - threshold - span, to: 1 - threshold },
      { from: 1 + threshold, to: 1 + threshold + span },
    ];
  }
  return [{ from: threshold, to: threshold + span }];
}

function GateCharts(props: { verdicts: readonly VerdictView[]; stageIndex: number }) {
  const gates = useMemo(() => gateSeries(props.verdicts, props.stageIndex), [props.verdicts, props.stageIndex]);
  const withData = [...gates.values()].filter((g) => g.estimate.some((e) => e !== null));
  if (withData.length === 0) return null;
  return (
    <div class="panel">
      <h2>Canary against control, per window</h2>
      <div class="grid2">
        {withData.map((gate) => {
          const values = gate.estimate.filter((e): e is number => e !== null);
          const span = Math.max(
            ...values.map((v) => Math.abs(v - gate.threshold)),
            Math.abs(gate.threshold) * 0.2,
            0.05,
          );
          return (
            <TimeChart
              key={gate.kind}
              title={`${gate.kind} (threshold ${formatNumber(gate.threshold, 3)}, shaded past it)`}
              times={gate.times}
              series={[{ label: gate.kind, values: gate.estimate }]}
              height={180}
              bands={failingBands(gate.kind, gate.threshold, span * 2)}
            />
          );
        })}
      </div>
    </div>
  );
}
