import type { DatasetList, DatasetView, Failure } from '@edgeloop/protocol';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ErrorNote, useResult } from '../components.tsx';
import { Link, useSession } from '../context.tsx';
import { formatBytes, formatTime } from '../format.ts';
import { Pager, useCursorPages } from '../pager.tsx';
import { readWithProgress } from '../samples.ts';

const PAGE_SIZE = 50;

/** Every dataset version, newest first, with its parent, sizes and splits, and an export with progress. */
export function DatasetsPage() {
  const { client } = useSession();
  const pages = useCursorPages();
  const { cursor } = pages;
  const page = useResult<DatasetList>(
    (signal) => client.datasets.list({ limit: PAGE_SIZE, ...(cursor ? { cursor } : {}) }, signal),
    [client, cursor],
  );
  const items = page.value?.items ?? [];
  return (
    <section>
      <h1>Datasets</h1>
      <p class="muted">
        Versions are immutable: a version made from samples has no parent; importing labels makes a new version whose
        parent is the one labelled. Pick samples for a new one in the <Link href="/samples">gallery</Link>.
      </p>
      <ErrorNote error={page.error} />
      <div class="table-wrap">
        <table data-testid="dataset-table" aria-busy={page.loading}>
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Parent</th>
              <th scope="col">Samples</th>
              <th scope="col">Splits (train / val / test)</th>
              <th scope="col">Labels</th>
              <th scope="col">Created</th>
              <th scope="col">Export</th>
            </tr>
          </thead>
          <tbody>
            {items.map((dataset) => (
              <tr key={dataset.id} data-dataset={dataset.id}>
                <th scope="row">{dataset.id}</th>
                <td>{dataset.parentId ?? '—'}</td>
                <td>{dataset.counts.total}</td>
                <td>
                  {dataset.counts.train} / {dataset.counts.val} / {dataset.counts.test}
                </td>
                <td>
                  {dataset.labelled
                    ? `✓ ${dataset.counts.annotations} annotations (${dataset.categories.join(', ')})`
                    : '– predictions only'}
                </td>
                <td>
                  {formatTime(dataset.createdAt)}
                  {dataset.createdBy ? <span class="muted"> by {dataset.createdBy}</span> : null}
                </td>
                <td>
                  <ExportButton dataset={dataset} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {page.value && items.length === 0 ? <p>No dataset yet.</p> : null}
      <Pager pages={pages} nextCursor={page.value?.nextCursor} />
    </section>
  );
}

type ExportState =
  | { readonly phase: 'idle' }
  | { readonly phase: 'running'; readonly received: number; readonly total: number | null }
  | { readonly phase: 'done'; readonly url: string; readonly fileName: string; readonly bytes: number }
  | { readonly phase: 'failed'; readonly error: Failure };

/**
 * Downloads the version's tar (COCO or YOLO) through the typed client, with a progress bar: a
 * share of Content-Length when the server sends one, otherwise the bytes so far (the export is
 * streamed as it is written, so its size is not known up front). The file is then saved.
 */
function ExportButton(props: { dataset: DatasetView }) {
  const { client } = useSession();
  const [format, setFormat] = useState<'coco' | 'yolo'>('coco');
  const [state, setState] = useState<ExportState>({ phase: 'idle' });
  const controller = useRef<AbortController | null>(null);
  const link = useRef<HTMLAnchorElement>(null);
  useEffect(
    () => () => {
      controller.current?.abort();
    },
    [],
  );
  useEffect(() => {
    if (state.phase !== 'done') return;
    link.current?.click();
    return () => URL.revokeObjectURL(state.url);
  }, [state]);

  const run = async () => {
    controller.current?.abort();
    const abort = new AbortController();
    controller.current = abort;
    setState({ phase: 'running', received: 0, total: null });
    const download = await client.datasets.export(props.dataset.id, format, abort.signal);
    if (!download.ok) {
      if (!abort.signal.aborted) setState({ phase: 'failed', error: download.error });
      return;
    }
    const total = download.value.contentLength;
    try {
      const chunks = await readWithProgress(
        download.value.body,
        (received) => setState({ phase: 'running', received, total }),
        abort.signal,
      );
      const blob = new Blob(chunks as BlobPart[], { type: download.value.contentType ?? 'application/x-tar' });
      const fileName = download.value.fileName ?? `${props.dataset.id.replace('@', '-')}-${format}.tar`;
      setState({ phase: 'done', url: URL.createObjectURL(blob), fileName, bytes: blob.size });
    } catch (error) {
      if (!abort.signal.aborted) setState({ phase: 'failed', error: { code: 'network', message: String(error) } });
    }
  };

  return (
    <div class="export" data-testid={`export-${props.dataset.id}`}>
      <select
        aria-label={`Export format of ${props.dataset.id}`}
        value={format}
        onChange={(event) => setFormat(event.currentTarget.value === 'yolo' ? 'yolo' : 'coco')}
      >
        <option value="coco">COCO</option>
        <option value="yolo">YOLO</option>
      </select>
      {state.phase === 'running' ? (
        <>
          <progress
            max={state.total ?? undefined}
            value={state.total ? state.received : undefined}
            aria-label={`Exporting ${props.dataset.id}`}
          />
          <span class="muted" data-testid="export-progress">
            {formatBytes(state.received)}
            {state.total ? ` of ${formatBytes(state.total)}` : ''}
          </span>
          <button
            type="button"
            onClick={() => {
              controller.current?.abort();
              setState({ phase: 'idle' });
            }}
          >
            Cancel
          </button>
        </>
      ) : (
        <button type="button" onClick={() => void run()}>
          Export
        </button>
      )}
      {state.phase === 'done' ? (
        <a ref={link} href={state.url} download={state.fileName} data-testid="export-done">
          ✓ {state.fileName} ({formatBytes(state.bytes)})
        </a>
      ) : null}
      {state.phase === 'failed' ? <ErrorNote error={state.error} /> : null}
    </div>
  );
}
