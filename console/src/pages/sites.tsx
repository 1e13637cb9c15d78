import { type Result, type SiteList, SiteList as SiteListSchema } from '@edgeloop/protocol';
import { useMemo, useState } from 'preact/hooks';
import { ErrorNote, useResult } from '../components.tsx';
import { useLiveEvents } from '../context.tsx';
import { createThrottle, pageTimers, touchesFleet } from '../live.ts';
import { storedToken } from '../session.ts';

const PAGE_SIZE = 200;

/**
 * GET /api/v1/fleet/sites. The typed client (protocol/src/client.ts) has no method for this route
 * yet; this one function stands in for `client.fleet.sites(query, signal)` until it does.
 */
export async function listSites(
  query: { limit: number; cursor?: string | undefined },
  signal: AbortSignal,
  fetchImpl: typeof fetch = fetch,
): Promise<Result<SiteList>> {
  const params = new URLSearchParams({ limit: String(query.limit) });
  if (query.cursor) params.set('cursor', query.cursor);
  const url = `/api/v1/fleet/sites?${params}`;
  const token = storedToken();
  try {
    const response = await fetchImpl(url, {
      headers: { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      signal,
    });
    const body: unknown = await response.json().catch(() => null);
    if (!response.ok) {
      const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
      return {
        ok: false,
        error: {
          code: typeof error?.code === 'string' ? error.code : `http_${response.status}`,
          message: typeof error?.message === 'string' ? error.message : `HTTP ${response.status} from ${url}`,
        },
      };
    }
    const parsed = SiteListSchema.safeParse(body);
    if (!parsed.success) return { ok: false, error: { code: 'bad_response', message: parsed.error.message } };
    return { ok: true, value: parsed.data };
  } catch (error) {
    if (signal.aborted) return { ok: false, error: { code: 'aborted', message: 'the request was aborted' } };
    return { ok: false, error: { code: 'network', message: String(error) } };
  }
}

/**
 * Devices grouped by their `site` label, counted by the server (a page of sites, so a fleet of
 * 10,000 devices costs one small answer); the counts are refetched at most every 2 s while
 * devices come, go or change health.
 */
export function SitesPage() {
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const cursor = cursors.at(-1);
  const page = useResult<SiteList>((signal) => listSites({ limit: PAGE_SIZE, cursor }, signal), [cursor]);
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
      {cursors.length > 1 || page.value?.nextCursor ? (
        <nav class="pager" aria-label="Pages">
          <button type="button" disabled={cursors.length <= 1} onClick={() => setCursors(cursors.slice(0, -1))}>
            ← Previous
          </button>
          <span>Page {cursors.length}</span>
          <button
            type="button"
            disabled={!page.value?.nextCursor}
            onClick={() => page.value?.nextCursor && setCursors([...cursors, page.value.nextCursor])}
          >
            Next →
          </button>
        </nav>
      ) : null}
    </section>
  );
}
