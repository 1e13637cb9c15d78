import type { RolloutList, RolloutStatus } from '@edgeloop/protocol';
import { ROLLOUT_STATUSES } from '@edgeloop/protocol';
import { useMemo, useState } from 'preact/hooks';
import { ErrorNote, StateBadge, useResult } from '../components.tsx';
import { Link, useLiveEvents, useSession } from '../context.tsx';
import { formatTime } from '../format.ts';
import { createThrottle, pageTimers } from '../live.ts';
import { Pager, useCursorPages } from '../pager.tsx';
import { RolloutPlanner } from './rollout-planner.tsx';

export function RolloutsPage() {
  const { client, canAct } = useSession();
  const [status, setStatus] = useState<RolloutStatus | ''>('');
  const pages = useCursorPages();
  const { cursor } = pages;
  const list = useResult<RolloutList>(
    (signal) =>
      client.rollouts.list({ limit: 50, ...(status ? { status } : {}), ...(cursor ? { cursor } : {}) }, signal),
    [client, status, cursor],
  );
  const refetch = useMemo(() => createThrottle(() => list.reload(), 1000, pageTimers), [list.reload]);
  useLiveEvents(
    (batch) => {
      if (batch.some((event) => event.type.startsWith('rollout.'))) refetch();
    },
    [refetch],
  );
  return (
    <section>
      <h1>Rollouts</h1>
      {canAct ? <RolloutPlanner /> : null}
      <form class="filters" aria-label="Rollout filters" onSubmit={(event) => event.preventDefault()}>
        <label>
          Status
          <select
            value={status}
            onChange={(event) => {
              setStatus(event.currentTarget.value as RolloutStatus | '');
              pages.reset();
            }}
          >
            <option value="">any</option>
            {ROLLOUT_STATUSES.map((s) => (
              <option key={s} value={s}>
                {s.replace('_', ' ')}
              </option>
            ))}
          </select>
        </label>
      </form>
      <ErrorNote error={list.error} />
      <div class="table-wrap">
        <table data-testid="rollout-table">
          <thead>
            <tr>
              <th scope="col">Rollout</th>
              <th scope="col">Model</th>
              <th scope="col">Status</th>
              <th scope="col">Stage</th>
              <th scope="col">Devices</th>
              <th scope="col">Last verdict</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {(list.value?.items ?? []).map((rollout) => (
              <tr key={rollout.id} data-rollout={rollout.id}>
                <th scope="row">
                  <Link href={`/rollouts/${encodeURIComponent(rollout.id)}`}>{rollout.id}</Link>
                </th>
                <td>{rollout.modelId}</td>
                <td>
                  <StateBadge state={rollout.status} />
                </td>
                <td>
                  {rollout.stage ?? 'done'} ({Math.min(rollout.stageIndex + 1, rollout.spec.stages.length)}/
                  {rollout.spec.stages.length})
                </td>
                <td>{rollout.cohorts.targetDevices}</td>
                <td>{rollout.lastVerdict ? <StateBadge state={rollout.lastVerdict.verdict} /> : '—'}</td>
                <td>{formatTime(rollout.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {list.value && list.value.items.length === 0 ? <p>No rollouts yet.</p> : null}
      <Pager pages={pages} nextCursor={list.value?.nextCursor} previousLabel="Newer" nextLabel="Older" />
    </section>
  );
}
