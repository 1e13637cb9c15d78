import type { DeviceView, Failure } from '@edgeloop/protocol';
import { ApiRequestError } from '@edgeloop/protocol';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { ErrorNote } from '../components.tsx';
import { useLiveEvents, useSession } from '../context.tsx';
import { applyDevicePatches, devicePatches } from '../live.ts';
import { groupBySite } from '../sites.ts';

/** Every device, page by page (500 a page), grouped by its `site` label; rows follow the live events. */
export function SitesPage() {
  const { client } = useSession();
  const [devices, setDevices] = useState<DeviceView[] | null>(null);
  const [error, setError] = useState<Failure | null>(null);
  useEffect(() => {
    let stopped = false;
    void (async () => {
      const all: DeviceView[] = [];
      try {
        for await (const device of client.devices.each({ limit: 500 })) {
          if (stopped) return;
          all.push(device);
        }
        if (!stopped) setDevices(all);
      } catch (caught) {
        if (!stopped) {
          setError(
            caught instanceof ApiRequestError
              ? { code: caught.code, message: caught.message }
              : { code: 'internal', message: String(caught) },
          );
        }
      }
    })();
    return () => {
      stopped = true;
    };
  }, [client]);
  useLiveEvents(
    (batch) => {
      if (devices) setDevices(applyDevicePatches(devices, devicePatches(batch)));
    },
    [devices],
  );
  const rows = useMemo(() => (devices ? groupBySite(devices) : []), [devices]);
  return (
    <section>
      <h1>Sites</h1>
      <ErrorNote error={error} />
      {devices === null && !error ? <p>Loading…</p> : null}
      <div class="table-wrap">
        <table data-testid="site-table">
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
              <tr key={row.site} data-site={row.site}>
                <th scope="row">{row.site}</th>
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
    </section>
  );
}
