import { type DatasetView, type Failure, SAMPLE_STRATEGY_KINDS, type SampleList } from '@edgeloop/protocol';
import { useMemo, useState } from 'preact/hooks';
import { ErrorNote, useResult } from '../components.tsx';
import { Link, useSession } from '../context.tsx';
import { Pager, useCursorPages } from '../pager.tsx';
import { SampleCard } from '../sample-card.tsx';
import { filtersFromSearch, type SampleFilters, sampleQuery } from '../samples.ts';

const PAGE_SIZE = 24;

/**
 * The hard-sample gallery: thumbnails with the model's boxes, filtered as GET /api/v1/samples
 * allows (device, site, labels, model, strategy, time range, labelled or not), paged by cursor.
 * Operators select samples (across pages) and freeze them as a new dataset version.
 */
export function SamplesPage() {
  const { client, canAct } = useSession();
  const [filters, setFilters] = useState<SampleFilters>(() => filtersFromSearch(location.search));
  const [applied, setApplied] = useState<SampleFilters>(filters);
  const pages = useCursorPages();
  const { cursor } = pages;
  const query = useMemo(() => sampleQuery(applied, PAGE_SIZE, cursor), [applied, cursor]);
  const page = useResult<SampleList>((signal) => client.samples.list(query, signal), [client, query]);
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const items = page.value?.items ?? [];
  const field = (key: keyof SampleFilters) => ({
    value: filters[key],
    onInput: (event: { currentTarget: { value: string } }) =>
      setFilters({ ...filters, [key]: event.currentTarget.value }),
  });
  const toggle = (id: string, on: boolean) => {
    const next = new Set(selected);
    if (on) next.add(id);
    else next.delete(id);
    setSelected(next);
  };

  return (
    <section>
      <h1>Samples</h1>
      <form
        class="filters"
        aria-label="Sample filters"
        onSubmit={(event) => {
          event.preventDefault();
          setApplied(filters);
          pages.reset();
        }}
      >
        <label>
          Device
          <input {...field('deviceId')} />
        </label>
        <label>
          Site
          <input {...field('site')} />
        </label>
        <label>
          Labels (key=value)
          <input {...field('labels')} placeholder="hardware=rpi5" />
        </label>
        <label>
          Model
          <input {...field('modelId')} placeholder="det@1.0.0" />
        </label>
        <label>
          Strategy
          <select
            value={filters.strategy}
            onChange={(e) => setFilters({ ...filters, strategy: e.currentTarget.value as SampleFilters['strategy'] })}
          >
            <option value="">any</option>
            {SAMPLE_STRATEGY_KINDS.map((kind) => (
              <option key={kind} value={kind}>
                {kind}
              </option>
            ))}
          </select>
        </label>
        <label>
          From
          <input type="datetime-local" {...field('from')} />
        </label>
        <label>
          To
          <input type="datetime-local" {...field('to')} />
        </label>
        <label>
          Has labels
          <select
            value={filters.hasLabels}
            onChange={(e) => setFilters({ ...filters, hasLabels: e.currentTarget.value as SampleFilters['hasLabels'] })}
          >
            <option value="">any</option>
            <option value="true">labelled</option>
            <option value="false">not labelled</option>
          </select>
        </label>
        <button type="submit">Filter</button>
      </form>

      {canAct ? (
        <CreateDataset
          selected={selected}
          onSelectPage={() => setSelected(new Set([...selected, ...items.map((s) => s.id)]))}
          onClear={() => setSelected(new Set())}
        />
      ) : null}

      <ErrorNote error={page.error} />
      <div class="gallery" data-testid="gallery" aria-busy={page.loading}>
        {items.map((sample) => (
          <SampleCard
            key={sample.id}
            client={client}
            sample={sample}
            select={
              canAct ? (
                <label class="pick">
                  <input
                    type="checkbox"
                    checked={selected.has(sample.id)}
                    onChange={(event) => toggle(sample.id, event.currentTarget.checked)}
                    aria-label={`Select sample ${sample.id}`}
                  />
                </label>
              ) : undefined
            }
          />
        ))}
      </div>
      {page.value && items.length === 0 ? <p>No sample matches.</p> : null}
      <Pager pages={pages} nextCursor={page.value?.nextCursor} />
    </section>
  );
}

/** Select-to-dataset: the selected samples frozen as the next version of a named dataset. */
function CreateDataset(props: { selected: ReadonlySet<string>; onSelectPage: () => void; onClear: () => void }) {
  const { client } = useSession();
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Failure | null>(null);
  const [created, setCreated] = useState<DatasetView | null>(null);
  const count = props.selected.size;
  return (
    <form
      class="panel select-bar"
      aria-label="Create a dataset from the selection"
      onSubmit={async (event) => {
        event.preventDefault();
        setError(null);
        setCreated(null);
        setBusy(true);
        const result = await client.datasets.create({ name: name.trim(), sampleIds: [...props.selected] });
        setBusy(false);
        if (!result.ok) {
          setError(result.error);
          return;
        }
        setCreated(result.value);
        props.onClear();
      }}
    >
      <span data-testid="selected-count">{count} selected</span>
      <button type="button" onClick={props.onSelectPage}>
        Select this page
      </button>
      <button type="button" onClick={props.onClear} disabled={count === 0}>
        Clear
      </button>
      <label>
        Dataset name
        <input
          value={name}
          required
          pattern="[a-z0-9][a-z0-9._\-]{0,62}"
          title="lower-case letters, digits, dot, dash and underscore"
          placeholder="hard-cases"
          onInput={(event) => setName(event.currentTarget.value)}
        />
      </label>
      <button type="submit" class="primary" disabled={busy || count === 0}>
        {busy ? 'Creating…' : 'Create dataset'}
      </button>
      <ErrorNote error={error} />
      {created ? (
        <p role="status" data-testid="dataset-created">
          Created <Link href="/datasets">{created.id}</Link> with {created.counts.total} samples (train{' '}
          {created.counts.train}, val {created.counts.val}, test {created.counts.test}).
        </p>
      ) : null}
    </form>
  );
}
