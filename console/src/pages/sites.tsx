import type { SiteList } from '@edgeloop/protocol';
import { useMemo } from 'preact/hooks';
import { ErrorNote, useResult } from '../components.tsx';
import { useLiveEvents, useSession } from '../context.tsx';
import { createThrottle, pageTimers, touchesFleet } from '../live.ts';
import { Pager, useCursorPages } from '../pager.tsx';

const PAGE_SIZE = 200;

/**
 * Devices grouped by their `site` label, counted by the server (a page of sites, so a fleet of
 * 10,000 devices costs one small answer); the counts are refetched at most every 2 s while
 * devices come, go or change health.
 */
export function SitesPage() {
  const { client } = useSession();
  const pages = useCursorPages();
  const { cursor } = pages;
  const page = useResult<SiteList>(
    (signal) => client.fleet.sites({ limit: PAGE_SIZE, ...(cursor ? { cursor } : {}) }, signal),
    [client, cursor],
  );
  const refetch = useMemo(() => createThrottle(() => page.reload(), 2000, pageTimers), [page.reload]);
  useLiveEvents(
    (batch) => {
      if (touchesFleet(batch)) refetch();
    },
    [refetch],
  );
  const rows = page.value?.items ?? [];
  return (
    <section>
      <h1>Sites</h1>
      <ErrorNote error={page.error} />
      {page.value === null && !page.error ? <p>Loading…</p> : null}
      <div class="table-wrap">
        <table data-testid="site-table" aria-busy={page.loading}>
          <thead>
            <tr>
              <th scope="col">Site</th>
              <th scope="col">Devices</th>
              <th scope="col">● Online</th>
              <th scope="col">○ Offline</th>
              <th scope="col">◌ Never connected</th>
              <th scope="col">▲ Degraded</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={row.site ?? ''} data-site={row.site ?? ''}>
                <th scope="row">{row.site ?? '(no site)'}</th>
                <td>{row.total}</td>
                <td>{row.online}</td>
                <td>{row.offline}</td>
                <td>{row.unknown}</td>
                <td>{row.degraded}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {page.value && rows.length === 0 ? <p>No devices enrolled.</p> : null}
      <Pager pages={pages} nextCursor={page.value?.nextCursor} hideAlone />
    </section>
  );
}
