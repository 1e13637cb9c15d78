import type {
  CommandResponse,
  DeviceDetail,
  Failure,
  MessageList,
  SampleList,
  TelemetryHistory,
} from '@edgeloop/protocol';
import { useMemo, useState } from 'preact/hooks';
import { TimeChart } from '../chart.tsx';
import { ErrorNote, HealthBadge, StatusBadge, useResult } from '../components.tsx';
import { Link, useLiveEvents, useSession } from '../context.tsx';
import { formatAgo, formatBytes, formatNumber, formatTime } from '../format.ts';
import { createThrottle, pageTimers } from '../live.ts';
import { SampleCard } from '../sample-card.tsx';
import { telemetryCharts, telemetrySeries } from '../telemetry-charts.ts';

const RANGES = [
  { label: '15 min', ms: 15 * 60_000 },
  { label: '1 h', ms: 3_600_000 },
  { label: '6 h', ms: 6 * 3_600_000 },
  { label: '24 h', ms: 86_400_000 },
] as const;

export function DevicePage(props: { id: string }) {
  const { client, canAct } = useSession();
  const detail = useResult<DeviceDetail>((signal) => client.devices.get(props.id, signal), [client, props.id]);
  const [rangeMs, setRangeMs] = useState<number>(RANGES[1].ms);
  const history = useResult<{ items: TelemetryHistory['items']; from: number }>(
    async (signal) => {
      const from = Date.now() - rangeMs;
      const items: TelemetryHistory['items'] = [];
      let cursor: string | undefined;
      // Newest first: page back until the range start (at most 5 pages of 1000).
      for (let pageNo = 0; pageNo < 5; pageNo++) {
        const page = await client.devices.telemetry(props.id, { limit: 1000, ...(cursor ? { cursor } : {}) }, signal);
        if (!page.ok) return page;
        items.push(...page.value.items);
        const oldest = page.value.items.at(-1);
        if (!page.value.nextCursor || !oldest || oldest.message.ts < from) break;
        cursor = page.value.nextCursor;
      }
      return { ok: true, value: { items, from } };
    },
    [client, props.id, rangeMs],
  );
  const refetch = useMemo(
    () =>
      createThrottle(
        () => {
          detail.reload();
        },
        2000,
        pageTimers,
      ),
    [detail.reload],
  );
  useLiveEvents(
    (batch) => {
      if (batch.some((event) => event.data.deviceId === props.id)) refetch();
    },
    [props.id, refetch],
  );
  const series = useMemo(
    () => (history.value ? telemetrySeries(history.value.items, history.value.from) : null),
    [history.value],
  );
  // Memoised: a chart is rebuilt only when its data changes, not on every refetch of the device.
  const charts = useMemo(() => (series ? telemetryCharts(series) : []), [series]);

  const d = detail.value;
  const telemetry = d?.telemetry?.message;
  const pipeline = telemetry?.pipeline;
  const reported = d?.reported?.message;
  return (
    <section>
      <p class="crumbs">
        <Link href="/">Fleet</Link> / {props.id}
      </p>
      <h1>{props.id}</h1>
      <ErrorNote error={detail.error} />
      {d ? (
        <>
          <div class="cards">
            <div class="card" data-testid="device-status">
              <div class="card-value">
                <StatusBadge status={d.device.status} />
              </div>
              <div class="card-label">since {formatTime(d.statusChangedAt)}</div>
            </div>
            <div class="card">
              <div class="card-value">
                <HealthBadge health={d.device.health} reasons={d.device.healthReasons} />
              </div>
              <div class="card-label">health</div>
            </div>
            <div class="card">
              <div class="card-value">{formatAgo(d.device.lastSeen, Date.now())}</div>
              <div class="card-label">last seen ({formatTime(d.device.lastSeen)})</div>
            </div>
            <div class="card">
              <div class="card-value">{formatNumber(pipeline?.fps)}</div>
              <div class="card-label">fps</div>
            </div>
            <div class="card">
              <div class="card-value">{formatNumber(pipeline?.latencyMs.inference?.p95)} ms</div>
              <div class="card-label">inference p95</div>
            </div>
          </div>
          <div class="grid2">
            <div class="panel">
              <h2>Labels</h2>
              <p class="labels">
                {Object.entries(d.device.labels).map(([key, value]) => (
                  <span class="chip" key={key}>
                    {key}={value}
                  </span>
                ))}
                {Object.keys(d.device.labels).length === 0 ? 'none' : null}
              </p>
              <dl>
                <dt>Enrolled</dt>
                <dd>{formatTime(d.device.enrolledAt)}</dd>
                <dt>Agent</dt>
                <dd>{d.device.agentVersion ?? '—'}</dd>
                <dt>Boot</dt>
                <dd>{d.device.bootId ?? '—'}</dd>
                <dt>Telemetry every</dt>
                <dd>{d.telemetryIntervalS ?? '—'} s</dd>
              </dl>
            </div>
            <div class="panel">
              <h2>Latest telemetry</h2>
              {telemetry ? (
                <dl>
                  <dt>Received</dt>
                  <dd>{formatTime(d.telemetry?.receivedAt)}</dd>
                  <dt>CPU</dt>
                  <dd>
                    {formatNumber(telemetry.system.cpu.loadPct)} % of {telemetry.system.cpu.cores} cores,{' '}
                    {formatNumber(telemetry.system.temperatures.cpuC)} °C
                  </dd>
                  <dt>GPU</dt>
                  <dd>
                    {formatNumber(telemetry.system.gpu?.loadPct)} %, {formatNumber(telemetry.system.temperatures.gpuC)}{' '}
                    °C
                  </dd>
                  <dt>Memory</dt>
                  <dd>
                    {formatBytes(telemetry.system.memory.usedBytes)} of{' '}
                    {formatBytes(telemetry.system.memory.totalBytes)}
                  </dd>
                  <dt>Disk</dt>
                  <dd>
                    {formatBytes(telemetry.system.disk.usedBytes)} of {formatBytes(telemetry.system.disk.totalBytes)}
                  </dd>
                  {pipeline ? (
                    <>
                      <dt>Model</dt>
                      <dd>{pipeline.model ? `${pipeline.model.name}@${pipeline.model.version}` : '—'}</dd>
                      <dt>Provider</dt>
                      <dd>{pipeline.provider.active}</dd>
                      <dt>Frames</dt>
                      <dd>
                        {pipeline.framesProcessed} processed, {pipeline.framesDropped} dropped,{' '}
                        {pipeline.inferenceErrors} errors in {pipeline.windowS} s
                      </dd>
                    </>
                  ) : null}
                </dl>
              ) : (
                <p>No telemetry yet.</p>
              )}
            </div>
          </div>
          {reported?.model ? (
            <div class="panel">
              <h2>Model slots</h2>
              <dl>
                <dt>Active</dt>
                <dd>
                  {reported.model.active ? `${reported.model.active.name}@${reported.model.active.version}` : '—'}
                </dd>
                <dt>Shadow</dt>
                <dd>
                  {reported.model.shadow ? `${reported.model.shadow.name}@${reported.model.shadow.version}` : '—'}
                </dd>
                <dt>Update</dt>
                <dd>
                  {reported.model.update
                    ? `${reported.model.update.state} ${reported.model.update.target.name}@${reported.model.update.target.version}`
                    : '—'}
                </dd>
              </dl>
            </div>
          ) : null}
        </>
      ) : null}

      <div class="panel">
        <div class="panel-head">
          <h2>Telemetry</h2>
          <label>
            Range{' '}
            <select value={rangeMs} onChange={(event) => setRangeMs(Number(event.currentTarget.value))}>
              {RANGES.map((range) => (
                <option key={range.ms} value={range.ms}>
                  last {range.label}
                </option>
              ))}
            </select>
          </label>
        </div>
        <ErrorNote error={history.error} />
        {series && series.times.length > 0 ? (
          <div class="grid2">
            {charts.map((chart) => (
              <TimeChart key={chart.title} title={chart.title} times={series.times} series={chart.series} />
            ))}
          </div>
        ) : history.loading ? (
          <p>Loading…</p>
        ) : (
          <p>No telemetry in this range.</p>
        )}
      </div>
      <LastSamples id={props.id} />
      <div class="grid2">
        <MessageLog id={props.id} channel="status" title="Status history" />
        <MessageLog id={props.id} channel="events" title="Events" />
      </div>
      {canAct ? <CommandBox id={props.id} /> : null}
    </section>
  );
}

/** What a stored status or event message says, in a few words. */
export function describeMessage(body: Record<string, unknown>): string {
  if (typeof body.state === 'string')
    return `${body.state}${typeof body.reason === 'string' ? ` (${body.reason})` : ''}`;
  const type = typeof body.type === 'string' ? body.type : 'event';
  const severity = typeof body.severity === 'string' ? `${body.severity} ` : '';
  return `${severity}${type}${typeof body.message === 'string' ? `: ${body.message}` : ''}`;
}

/** The device's newest hard samples with their boxes, refetched (at most every 5 s) on its events. */
function LastSamples(props: { id: string }) {
  const { client } = useSession();
  const samples = useResult<SampleList>(
    (signal) => client.samples.list({ deviceId: props.id, limit: 6 }, signal),
    [client, props.id],
  );
  const refetch = useMemo(() => createThrottle(() => samples.reload(), 5000, pageTimers), [samples.reload]);
  useLiveEvents(
    (batch) => {
      // A device announces its captures as events (sample.ready); the upload lands soon after.
      if (batch.some((event) => event.type === 'device.event' && event.data.deviceId === props.id)) refetch();
    },
    [props.id, refetch],
  );
  const items = samples.value?.items ?? [];
  return (
    <div class="panel">
      <div class="panel-head">
        <h2>Last samples</h2>
        <Link href={`/samples?deviceId=${encodeURIComponent(props.id)}`}>All samples of {props.id} →</Link>
      </div>
      <ErrorNote error={samples.error} />
      <div class="gallery compact" data-testid="device-samples">
        {items.map((sample) => (
          <SampleCard key={sample.id} client={client} sample={sample} compact />
        ))}
      </div>
      {samples.value && items.length === 0 ? <p>No hard samples from this device.</p> : null}
    </div>
  );
}

function MessageLog(props: { id: string; channel: 'status' | 'events'; title: string }) {
  const { client } = useSession();
  const log = useResult<MessageList>(
    (signal) => client.devices.messages(props.id, { channel: props.channel, limit: 20 }, signal),
    [client, props.id, props.channel],
  );
  const refetch = useMemo(() => createThrottle(() => log.reload(), 2000, pageTimers), [log.reload]);
  useLiveEvents(
    (batch) => {
      if (batch.some((event) => event.data.deviceId === props.id)) refetch();
    },
    [props.id, refetch],
  );
  return (
    <div class="panel">
      <h2>{props.title}</h2>
      <ErrorNote error={log.error} />
      <ol class="log" data-testid={`log-${props.channel}`}>
        {(log.value?.items ?? []).map((message) => (
          <li key={message.msgId}>
            <time dateTime={new Date(message.deviceTs).toISOString()}>{formatTime(message.deviceTs)}</time>{' '}
            {describeMessage(message.body)}
          </li>
        ))}
      </ol>
      {log.value && log.value.items.length === 0 ? <p>None yet.</p> : null}
    </div>
  );
}

function CommandBox(props: { id: string }) {
  const { client } = useSession();
  const [name, setName] = useState('ping');
  const [args, setArgs] = useState('{}');
  const [busy, setBusy] = useState(false);
  const [reply, setReply] = useState<CommandResponse['reply'] | null>(null);
  const [error, setError] = useState<Failure | null>(null);
  return (
    <form
      class="panel command"
      aria-label="Send a command"
      onSubmit={async (event) => {
        event.preventDefault();
        setError(null);
        setReply(null);
        let parsed: unknown;
        try {
          parsed = JSON.parse(args || '{}');
        } catch {
          setError({ code: 'bad_request', message: 'the arguments are not JSON' });
          return;
        }
        setBusy(true);
        const result = await client.devices.command(props.id, {
          name,
          args: parsed as Record<string, never>,
          timeoutMs: 10_000,
        });
        setBusy(false);
        if (result.ok) setReply(result.value.reply);
        else setError(result.error);
      }}
    >
      <h2>Command</h2>
      <div class="row">
        <label>
          Name
          <input list="command-names" value={name} onInput={(event) => setName(event.currentTarget.value)} required />
          <datalist id="command-names">
            <option value="ping" />
            <option value="reload-config" />
            <option value="set-telemetry-interval" />
          </datalist>
        </label>
        <label class="grow">
          Arguments (JSON)
          <input value={args} onInput={(event) => setArgs(event.currentTarget.value)} />
        </label>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Waiting for the reply…' : 'Send'}
        </button>
      </div>
      <ErrorNote error={error} />
      {reply ? (
        <pre class="reply" data-testid="command-reply">
          {reply.ok ? '✓ ok' : `✗ ${reply.error.code}: ${reply.error.message}`}
          {'\n'}
          {JSON.stringify(reply, null, 2)}
        </pre>
      ) : null}
    </form>
  );
}
