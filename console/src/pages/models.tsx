import type { FleetSummary, ModelList } from '@edgeloop/protocol';
import { ErrorNote, useResult } from '../components.tsx';
import { useSession } from '../context.tsx';
import { formatBytes, formatTime } from '../format.ts';
import { Pager, useCursorPages } from '../pager.tsx';

export function ModelsPage() {
  const { client } = useSession();
  const pages = useCursorPages();
  const { cursor } = pages;
  const list = useResult<ModelList>(
    (signal) => client.models.list({ limit: 100, ...(cursor ? { cursor } : {}) }, signal),
    [client, cursor],
  );
  const summary = useResult<FleetSummary>((signal) => client.fleet.summary(signal), [client]);
  const running = summary.value?.pipeline.models ?? {};
  const now = Date.now();
  return (
    <section>
      <h1>Models</h1>
      <ErrorNote error={list.error} />
      <div class="table-wrap">
        <table data-testid="model-table">
          <thead>
            <tr>
              <th scope="col">Model</th>
              <th scope="col">Adapter</th>
              <th scope="col">Size</th>
              <th scope="col">Signed by</th>
              <th scope="col">Release</th>
              <th scope="col">Expires</th>
              <th scope="col">Hardware</th>
              <th scope="col">Running on</th>
              <th scope="col">Uploaded</th>
            </tr>
          </thead>
          <tbody>
            {(list.value?.items ?? []).map((model) => (
              <tr key={model.id}>
                <th scope="row">{model.id}</th>
                <td>{model.adapter}</td>
                <td>{formatBytes(model.sizeBytes)}</td>
                <td>
                  <code>{model.keyId}</code>
                </td>
                <td>#{model.releaseCounter}</td>
                <td>
                  {model.expiresAt < now ? '✗ expired ' : ''}
                  {formatTime(model.expiresAt)}
                </td>
                <td>{model.hardware.length > 0 ? model.hardware.join(', ') : 'any'}</td>
                <td>{running[model.id] ?? 0} online devices</td>
                <td>{formatTime(model.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {list.value && list.value.items.length === 0 ? <p>No models registered.</p> : null}
      <Pager pages={pages} nextCursor={list.value?.nextCursor} />
    </section>
  );
}
