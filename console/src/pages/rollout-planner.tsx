import type { Failure, ModelList, RolloutDryRun } from '@edgeloop/protocol';
import { useState } from 'preact/hooks';
import { ConfirmButton, ErrorNote, useResult } from '../components.tsx';
import { navigate, useSession } from '../context.tsx';
import { formatBytes, formatDuration } from '../format.ts';

/** `key=value` pairs (space or comma separated) as a label selector; null when one is malformed. */
export function parseSelector(text: string): Record<string, string> | null {
  const labels: Record<string, string> = {};
  for (const pair of text.split(/[\s,]+/).filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) return null;
    labels[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return labels;
}

/**
 * The dry-run planner: a model and a label selector, the plan the control plane answers (cohorts,
 * stages, gate feasibility, warnings), and only then a confirmed start with the same spec.
 */
export function RolloutPlanner() {
  const { client } = useSession();
  const models = useResult<ModelList>((signal) => client.models.list({ limit: 500 }, signal), [client]);
  const [modelId, setModelId] = useState('');
  const [selector, setSelector] = useState('');
  const [plan, setPlan] = useState<RolloutDryRun | null>(null);
  const [error, setError] = useState<Failure | null>(null);
  const [busy, setBusy] = useState(false);
  const chosen = modelId || models.value?.items[0]?.id || '';
  const spec = () => {
    const labels = parseSelector(selector);
    return labels ? { modelId: chosen, selector: { labels } } : null;
  };
  return (
    <section class="panel" aria-label="Plan a rollout">
      <h2>Plan a rollout</h2>
      <form
        onSubmit={async (event) => {
          event.preventDefault();
          const request = spec();
          setPlan(null);
          if (!request) {
            setError({ code: 'bad_request', message: 'labels look like key=value' });
            return;
          }
          setBusy(true);
          const result = await client.rollouts.plan(request);
          setBusy(false);
          if (result.ok) {
            setError(null);
            setPlan(result.value);
          } else setError(result.error);
        }}
      >
        <div class="row">
          <label>
            Model
            <select value={chosen} onChange={(event) => setModelId(event.currentTarget.value)} required>
              {(models.value?.items ?? []).map((model) => (
                <option key={model.id} value={model.id}>
                  {model.id}
                </option>
              ))}
            </select>
          </label>
          <label class="grow">
            Devices with labels (key=value)
            <input
              value={selector}
              placeholder="fleet=demo site=north"
              onInput={(e) => setSelector(e.currentTarget.value)}
            />
          </label>
          <button type="submit" disabled={busy || !chosen}>
            {busy ? 'Planning…' : 'Plan (dry run)'}
          </button>
        </div>
      </form>
      <ErrorNote error={error ?? models.error} />
      {plan ? (
        <div data-testid="plan">
          <p>
            <strong>{plan.targetDevices} target devices</strong> ({plan.incompatibleDevices} incompatible left out,{' '}
            {plan.unchangedDevices} already run it); {formatBytes(plan.bytesToDownload)} to download; at the earliest{' '}
            {formatDuration(plan.earliestDurationS)} to the last verdict at {plan.fps.value} fps ({plan.fps.source}).
          </p>
          <p>
            Canary: {plan.canary.join(', ') || 'none'}
            <br />
            Control: {plan.control.join(', ') || 'none'}
          </p>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Stage</th>
                  <th scope="col">Devices</th>
                  <th scope="col">New</th>
                  <th scope="col">Control</th>
                  <th scope="col">Deadline</th>
                  <th scope="col">Gates</th>
                </tr>
              </thead>
              <tbody>
                {plan.stages.map((stage) => (
                  <tr key={stage.name}>
                    <th scope="row">
                      {stage.name} <span class="stage-kind">{stage.kind}</span>
                    </th>
                    <td>{stage.devices}</td>
                    <td>{stage.newDevices}</td>
                    <td>{stage.controlDevices}</td>
                    <td>{formatDuration(stage.maxDurationS)}</td>
                    <td>
                      {stage.gates.map((gate) => (
                        <span key={gate.gate} class="chip" title={gate.reason}>
                          {gate.feasible ? '✓' : '✗'} {gate.gate}
                        </span>
                      ))}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {plan.warnings.length > 0 ? (
            <ul class="warnings">
              {plan.warnings.map((warning) => (
                <li key={warning}>▲ {warning}</li>
              ))}
            </ul>
          ) : null}
          <div class="actions">
            <ConfirmButton
              label="Start"
              title={`Start rolling out ${plan.modelId} to ${plan.targetDevices} devices?`}
              run={async () => {
                const request = spec();
                if (!request) return { code: 'bad_request', message: 'labels look like key=value' };
                const created = await client.rollouts.create(request);
                if (!created.ok) return created.error;
                navigate(`/rollouts/${encodeURIComponent(created.value.id)}`);
                return null;
              }}
            >
              <p>The canary cohort gets the model first; later stages follow as their gates pass.</p>
            </ConfirmButton>
          </div>
        </div>
      ) : null}
    </section>
  );
}
