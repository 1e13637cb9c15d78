import type { DeviceList, DeviceListQuery, DeviceView, FleetSummary } from '@edgeloop/protocol';
import { memo } from 'preact/compat';
import { useMemo, useState } from 'preact/hooks';
import { ErrorNote, HealthBadge, StatusBadge, useResult } from '../components.tsx';
import { Link, useLiveEvents, useSession } from '../context.tsx';
import { formatAgo, formatNumber } from '../format.ts';
import { applyDevicePatches, createThrottle, devicePatches, pageTimers, touchesFleet } from '../live.ts';
import { Pager, useCursorPages } from '../pager.tsx';

const PAGE_SIZE = 50;

type Filters = { status: string; health: string; labels: string; site: string; model: string };

/** The label filters of the form: `key=value` or `key:value`, comma or space separated, plus the site. */
export function labelFilters(filters: Filters): string[] {
  const labels = filters.labels
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((pair) => pair.replace('=', ':'));
  if (filters.site.trim()) labels.push(`site:${filters.site.trim()}`);
  return labels;
}

export function FleetPage() {
  const { client } = useSession();
  const summary = useResult<FleetSummary>((signal) => client.fleet.summary(signal), [client]);
  const [filters, setFilters] = useState<Filters>({ status: '', health: '', labels: '', site: '', model: '' });
  const [applied, setApplied] = useState<Filters>(filters);
  const pages = useCursorPages();
  const { cursor } = pages;
  const query = useMemo(() => {
    const q: Partial<DeviceListQuery> = { limit: PAGE_SIZE };
    if (applied.status) q.status = applied.status as DeviceListQuery['status'];
    if (applied.health) q.health = applied.health as DeviceListQuery['health'];
    if (applied.model.trim()) q.model = applied.model.trim();
    const labels = labelFilters(applied);
    if (labels.length > 0) q.label = labels;
    if (cursor) q.cursor = cursor;
    return q;
  }, [applied, cursor]);
  const page = useResult<DeviceList>((signal) => client.devices.list(query, signal), [client, query]);

  // Live: patch the rows in place each frame; refetch the counts (and the page on enrolment) at most once a second.
  const refetchSummary = useMemo(() => createThrottle(() => summary.reload(), 1000, pageTimers), [summary.reload]);
  useLiveEvents(
    (batch) => {
      if (!touchesFleet(batch)) return;
      refetchSummary();
      if (batch.some((event) => event.type === 'device.enrolled' || event.type === 'device.revoked')) page.reload();
      const patches = devicePatches(batch);
      if (patches.size === 0) return;
      page.update((value) => {
        const items = applyDevicePatches(value.items, patches);
        return items === value.items ? value : { ...value, items };
      });
    },
    [page.reload, page.update, refetchSummary],
  );

  const s = summary.value;
  const now = Date.now();
  return (
    <section>
      <h1>Fleet</h1>
      <ErrorNote error={summary.error} />
      {s ? (
        <div class="cards" data-testid="fleet-counts">
          <Count label="Devices" value={s.total} />
          <Count label="● Online" value={s.online} testId="count-online" />
          <Count label="○ Offline" value={s.offline} testId="count-offline" />
          <Count label="◌ Never connected" value={s.unknown} />
          <Count label="✓ Healthy" value={s.healthy} />
          <Count label="▲ Degraded" value={s.degraded} />
          <Count label="Fleet fps" value={formatNumber(s.pipeline.fps)} />
          <Count label="Inference p95, median" value={`${formatNumber(s.pipeline.inferenceP95Ms.median)} ms`} />
        </div>
      ) : null}
      {s && Object.keys(s.byHealthReason).length > 0 ? (
        <div class="panel">
          <h2>Why devices are degraded</h2>
          <ul class="bars">
            {Object.entries(s.byHealthReason)
              .sort((a, b) => b[1] - a[1])
              .map(([reason, count]) => (
                <li key={reason}>
                  <span class="bar-label">{reason}</span>
                  <span class="bar" style={{ width: `${Math.max(2, (count / Math.max(1, s.degraded)) * 100)}%` }} />
                  <span class="bar-value">{count}</span>
                </li>
              ))}
          </ul>
        </div>
      ) : null}

      <form
        class="filters"
        aria-label="Device filters"
        onSubmit={(event) => {
          event.preventDefault();
          setApplied(filters);
          pages.reset();
        }}
      >
        <label>
          Status
          <select value={filters.status} onChange={(e) => setFilters({ ...filters, status: e.currentTarget.value })}>
            <option value="">any</option>
            <option value="online">online</option>
            <option value="offline">offline</option>
            <option value="unknown">unknown</option>
          </select>
        </label>
        <label>
          Health
          <select value={filters.health} onChange={(e) => setFilters({ ...filters, health: e.currentTarget.value })}>
            <option value="">any</option>
            <option value="healthy">healthy</option>
            <option value="degraded">degraded</option>
            <option value="offline">offline</option>
            <option value="unknown">unknown</option>
          </select>
        </label>
        <label>
          Site
          <input value={filters.site} onInput={(e) => setFilters({ ...filters, site: e.currentTarget.value })} />
        </label>
        <label>
          Model
          <input
            value={filters.model}
            placeholder="det or det@2.0.0"
            onInput={(e) => setFilters({ ...filters, model: e.currentTarget.value })}
          />
        </label>
        <label>
          Labels (key=value)
          <input
            value={filters.labels}
            placeholder="model=det hardware=rpi5"
            onInput={(e) => setFilters({ ...filters, labels: e.currentTarget.value })}
          />
        </label>
        <button type="submit">Filter</button>
      </form>

      <ErrorNote error={page.error} />
      <div class="table-wrap">
        <table class="devices" data-testid="device-table" aria-busy={page.loading}>
          <thead>
            <tr>
              <th scope="col">Device</th>
              <th scope="col">Status</th>
              <th scope="col">Health</th>
              <th scope="col">Site</th>
              <th scope="col">Labels</th>
              <th scope="col">Last seen</th>
              <th scope="col">Agent</th>
            </tr>
          </thead>
          <tbody>
            {(page.value?.items ?? []).map((device) => (
              <DeviceRow key={device.id} device={device} ago={formatAgo(device.lastSeen, now)} />
            ))}
          </tbody>
        </table>
      </div>
      {page.value && page.value.items.length === 0 ? <p>No device matches.</p> : null}
      <Pager pages={pages} nextCursor={page.value?.nextCursor} />
    </section>
  );
}

/**
 * One table row, rendered again only when its device changed (the live patches keep unchanged
 * rows' objects) or its "last seen" words did: a burst of events repaints the rows it touches.
 */
const DeviceRow = memo(
  function DeviceRow(props: { device: DeviceView; ago: string }) {
    const { device } = props;
    return (
      <tr data-device={device.id}>
        <th scope="row">
          <Link href={`/devices/${encodeURIComponent(device.id)}`}>{device.id}</Link>
        </th>
        <td>
          <StatusBadge status={device.status} />
        </td>
        <td>
          <HealthBadge health={device.health} reasons={device.healthReasons} />
        </td>
        <td>{device.labels.site ?? '—'}</td>
        <td class="labels">
          {Object.entries(device.labels)
            .filter(([key]) => key !== 'site')
            .map(([key, value]) => (
              <span class="chip" key={key}>
                {key}={value}
              </span>
            ))}
        </td>
        <td title={device.lastSeen ? new Date(device.lastSeen).toLocaleString() : undefined}>{props.ago}</td>
        <td>{device.agentVersion ?? '—'}</td>
      </tr>
    );
  },
  (before, after) => before.device === after.device && before.ago === after.ago,
);

function Count(props: { label: string; value: number | string; testId?: string }) {
  return (
    <div class="card" data-testid={props.testId}>
      <div class="card-value">{props.value}</div>
      <div class="card-label">{props.label}</div>
    </div>
  );
}
