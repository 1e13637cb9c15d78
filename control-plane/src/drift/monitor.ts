import {
  CONFIDENCE_BINS,
  type DriftBand,
  type DriftList,
  type DriftNumbers,
  type DriftQuery,
  type DriftScope,
  type DriftState,
  driftBandRank,
  fail,
  ok,
  type Result,
  SamplePolicy,
  SamplePrediction,
  type SetDriftReferenceRequest,
  type SetSamplePolicyRequest,
  type Telemetry,
} from '@edgeloop/protocol';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit.ts';
import type { DriftConfig } from '../config.ts';
import type {
  DatasetRepository,
  DeviceRepository,
  DriftBoostRecord,
  DriftReferenceRecord,
  DriftRepository,
  MessageRepository,
  SamplePolicyRecord,
  TelemetrySample,
} from '../db/repositories.ts';
import { selectorKey } from '../db/sample-policies.ts';
import type { EventBus } from '../events.ts';
import type { MetricsRegistry } from '../metrics.ts';
import { effectivePolicy, sameJson } from '../samples/policy-selectors.ts';
import type { Clock, Timers } from '../time.ts';
import {
  addPipelineTo,
  advance,
  type DriftJudgeConfig,
  type DriftProgress,
  type DriftSums,
  emptySums,
  judgeWindow,
  parseSums,
  STABLE_PROGRESS,
  sustainedWindows,
  windowIndex,
  windowRange,
} from './maths.ts';
import { planSampling, raiseSampling } from './sampling.ts';

/*
 * The drift monitor: accumulates every stored telemetry message (the ingest writer's onTelemetry,
 * after commit) into a track per (site, model sha) and per (device, model sha), and judges each
 * track's current window against its reference when the window closes (maths.ts). Nothing is
 * re-read from stored messages per tick: observe() is O(bins + classes) per message, and a tick
 * only walks the tracks. References and the last judged states are written to the database
 * (drift_references), so a restart keeps them: a site's when its band or a streak changes, a
 * device's (and a filling auto reference) at most every 15 minutes and at stop, a reference the
 * operator sets at once. The latest numbers of a track live in memory.
 *
 * Only the leader (the rollout engine's lock) accumulates and judges; a replica that becomes leader
 * loads the tracks from the database first. With several replicas splitting the ingest, the leader
 * sees only its share of the telemetry (see the README).
 *
 * Adaptive sampling: when a site's track has been moderate or worse for `samplingWindows` windows,
 * the `{ site }` selector policy is raised (sampling.ts, never the byte budget) through the sample
 * policy service (desired state), and the policy it had is kept (drift_sampling_boosts); after as
 * many stable windows it is put back (unless an operator changed it meanwhile). Each change is an
 * audit entry of `system:drift` with its reason and numbers, and a `drift.sampling` event.
 */

/** The actor of drift's own changes in the audit log. */
export const SYSTEM_DRIFT = 'system:drift';

export type DriftMonitorDeps = {
  readonly repo: DriftRepository;
  /** Device labels: the site of each device (read at start and at each window close). */
  readonly devices: Pick<DeviceRepository, 'snapshots'>;
  /** Stored telemetry, read once when an operator pins a reference to a time range. */
  readonly messages: Pick<MessageRepository, 'telemetrySamples'>;
  readonly datasets: Pick<DatasetRepository, 'get' | 'members'>;
  readonly samplePolicies: {
    list(): Promise<SamplePolicyRecord[]>;
    set(request: SetSamplePolicyRequest, by: string | null): Promise<unknown>;
  };
  readonly audit: AuditLog;
  readonly bus: EventBus;
  readonly metrics: MetricsRegistry;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly logger: Logger;
  readonly config: DriftConfig;
  /** Whether this replica leads (drift runs on the leader only). */
  readonly isLeader: () => boolean;
};

export type DriftMonitor = {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** One stored telemetry message (after commit). Never throws. */
  observe(deviceId: string, telemetry: Telemetry, receivedAt: number): void;
  /** Closes and judges the windows that ended, writes what changed, acts on sampling. */
  tick(): Promise<void>;
  list(query: DriftQuery): DriftList;
  setReference(
    request: SetDriftReferenceRequest,
    by: string | null,
  ): Promise<Result<DriftState, 'not_found' | 'invalid_reference'>>;
  /** The site a device's telemetry counts for (tests). */
  noteDeviceSite(deviceId: string, site: string | null): void;
};

type Reference = {
  source: 'auto' | 'dataset' | 'pinned';
  datasetId: string | null;
  from: number | null;
  to: number | null;
  complete: boolean;
  sums: DriftSums;
  updatedBy: string | null;
};

type Track = {
  readonly scope: DriftScope;
  readonly key: string;
  readonly modelSha256: string;
  modelId: string | null;
  reference: Reference;
  /** The open current window (after the reference is complete). */
  window: { index: number; sums: DriftSums } | null;
  progress: DriftProgress;
  numbers: DriftNumbers;
  lastWindow: { index: number; from: number; to: number } | null;
  updatedAt: number;
  lastSeenAt: number;
  /** To be written at the next window close: the reference completed or was set, the band or a streak changed. */
  dirty: boolean;
  /** A filling auto reference gained telemetry since it was last written. */
  filling: boolean;
  /** When the track was last written. */
  savedAt: number;
};

/**
 * Device tracks, and auto references still filling, are written at most this often (and at stop);
 * site tracks whenever their band or a streak changes (adaptive sampling acts on them).
 */
const DEFERRED_SAVE_MS = 15 * 60_000;
/** Device sites (labels) are read again at a window close at most this often. */
const SITE_REFRESH_MS = 5 * 60_000;

const EMPTY_NUMBERS: DriftNumbers = Object.freeze({
  confidencePsi: null,
  classMixPsi: null,
  nearThresholdShare: Object.freeze({ reference: null, current: null }),
  sceneChangeRate: Object.freeze({ reference: null, current: null }),
});

function trackId(scope: DriftScope, key: string, modelSha256: string): string {
  return `${scope}\u0000${key}\u0000${modelSha256}`;
}

/** The sums of stored telemetry rows (a pinned reference): no near-threshold or scene-change counts. */
export function sumsOfTelemetry(samples: Iterable<TelemetrySample>): DriftSums {
  const sums = emptySums();
  for (const sample of samples) {
    sums.frames += sample.frames;
    sums.messages += 1;
    for (let bin = 0; bin < CONFIDENCE_BINS; bin++) {
      const count = sample.confidence[bin] ?? 0;
      sums.confidence[bin] = (sums.confidence[bin] ?? 0) + count;
      sums.detections += count;
    }
    for (const [label, per1000] of Object.entries(sample.detectionsPer1000)) {
      sums.classes[label] = (sums.classes[label] ?? 0) + (per1000 * sample.frames) / 1000;
    }
  }
  return sums;
}

/** The sums of a dataset version's predictions (one frame per image; no near-threshold share). */
export function sumsOfPredictions(images: Iterable<unknown>): DriftSums {
  const sums = emptySums();
  for (const predictions of images) {
    sums.frames += 1;
    sums.messages += 1;
    if (!Array.isArray(predictions)) continue;
    for (const raw of predictions) {
      const parsed = SamplePrediction.safeParse(raw);
      if (!parsed.success) continue;
      const bin = Math.min(CONFIDENCE_BINS - 1, Math.floor(parsed.data.score * CONFIDENCE_BINS));
      sums.confidence[bin] = (sums.confidence[bin] ?? 0) + 1;
      sums.detections += 1;
      sums.classes[parsed.data.label] = (sums.classes[parsed.data.label] ?? 0) + 1;
    }
  }
  return sums;
}

function parseProgress(value: unknown): {
  progress: DriftProgress;
  numbers: DriftNumbers;
  lastWindow: Track['lastWindow'];
} {
  const state = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const p = (state.progress ?? {}) as Record<string, unknown>;
  const count = (x: unknown) => (typeof x === 'number' && Number.isInteger(x) && x >= 0 ? x : 0);
  const band: DriftBand = p.band === 'moderate' || p.band === 'major' ? p.band : 'stable';
  const window = state.window as Track['lastWindow'] | undefined;
  return {
    progress: {
      band,
      moderateStreak: count(p.moderateStreak),
      majorStreak: count(p.majorStreak),
      stableStreak: count(p.stableStreak),
      since: typeof p.since === 'number' ? p.since : null,
    },
    numbers: (state.numbers as DriftNumbers | undefined) ?? EMPTY_NUMBERS,
    lastWindow:
      window && typeof window.index === 'number' && typeof window.from === 'number' && typeof window.to === 'number'
        ? { index: window.index, from: window.from, to: window.to }
        : null,
  };
}

export function createDriftMonitor(deps: DriftMonitorDeps): DriftMonitor {
  const { config, clock, logger } = deps;
  const windowMs = config.windowS * 1000;
  const referenceMs = config.referenceS * 1000;
  const judge: DriftJudgeConfig = {
    bands: { moderate: config.psiModerate, major: config.psiMajor },
    nearThresholdDelta: config.nearThresholdDelta,
    sceneChangeDelta: config.sceneChangeDelta,
    minDetections: config.minDetections,
  };
  const metrics = {
    observed: deps.metrics.counter('edgeloop_drift_observed_total', 'Telemetry messages drift accumulated'),
    observeErrors: deps.metrics.counter(
      'edgeloop_drift_observe_errors_total',
      'Telemetry messages drift could not accumulate (counted, skipped)',
    ),
    windows: deps.metrics.counter('edgeloop_drift_windows_total', 'Drift windows closed, by outcome'),
    sampling: deps.metrics.counter(
      'edgeloop_drift_sampling_changes_total',
      'Site sampling changes by drift, by action',
    ),
    tickErrors: deps.metrics.counter('edgeloop_drift_tick_errors_total', 'Drift ticks that failed'),
  };

  const tracks = new Map<string, Track>();
  /** Per device: the tracks its last message went to, so the next one with the same model and site skips the lookups. */
  const routes = new Map<string, { sha: string; site: string | null; device: Track; siteTrack: Track | null }>();
  const sites = new Map<string, string | null>();
  const boosts = new Map<string, DriftBoostRecord>();
  /** Sites whose raise found no policy to raise (not retried until the site is stable again). */
  const nothingToRaise = new Set<string>();
  let loaded = false;
  /** Messages accumulated since the last tick (the counter is bumped once per tick, not per message). */
  let pendingObserved = 0;
  let handle: unknown = null;
  let running: Promise<void> | null = null;
  let stopped = false;
  let lastClosedIndex = windowIndex(clock.now(), windowMs);

  const toState = (track: Track): DriftState => ({
    scope: track.scope,
    key: track.key,
    modelSha256: track.modelSha256,
    modelId: track.modelId,
    band: track.progress.band,
    sustainedWindows: sustainedWindows(track.progress),
    since: track.progress.since,
    reference: {
      source: track.reference.source,
      from: track.reference.from,
      to: track.reference.to,
      frames: track.reference.sums.frames,
      complete: track.reference.complete,
      datasetId: track.reference.datasetId,
    },
    numbers: track.numbers,
    window: track.lastWindow,
    updatedAt: track.updatedAt,
  });

  const toRecord = (track: Track): DriftReferenceRecord => ({
    scope: track.scope,
    key: track.key,
    modelSha256: track.modelSha256,
    modelId: track.modelId,
    source: track.reference.source,
    datasetId: track.reference.datasetId,
    from: track.reference.from,
    to: track.reference.to,
    complete: track.reference.complete,
    sums: track.reference.sums,
    state: { progress: track.progress, numbers: track.numbers, window: track.lastWindow },
    updatedAt: track.updatedAt,
    updatedBy: track.reference.updatedBy,
  });

  const newTrack = (scope: DriftScope, key: string, modelSha256: string, modelId: string | null, at: number) => {
    const track: Track = {
      scope,
      key,
      modelSha256,
      modelId,
      reference: {
        source: 'auto',
        datasetId: null,
        from: null,
        to: null,
        complete: false,
        sums: emptySums(),
        updatedBy: null,
      },
      window: null,
      progress: STABLE_PROGRESS,
      numbers: EMPTY_NUMBERS,
      lastWindow: null,
      updatedAt: at,
      lastSeenAt: at,
      dirty: true,
      filling: false,
      savedAt: at,
    };
    tracks.set(trackId(scope, key, modelSha256), track);
    return track;
  };

  let sitesReadAt = Number.NEGATIVE_INFINITY;
  const refreshSites = async () => {
    sitesReadAt = clock.now();
    const snapshots = await deps.devices.snapshots({ labels: [] });
    sites.clear();
    for (const device of snapshots) sites.set(device.id, device.labels.site ?? null);
  };

  const load = async () => {
    tracks.clear();
    routes.clear();
    boosts.clear();
    for (const record of await deps.repo.listReferences()) {
      const { progress, numbers, lastWindow } = parseProgress(record.state);
      tracks.set(trackId(record.scope, record.key, record.modelSha256), {
        scope: record.scope,
        key: record.key,
        modelSha256: record.modelSha256,
        modelId: record.modelId,
        reference: {
          source: record.source,
          datasetId: record.datasetId,
          from: record.from,
          to: record.to,
          complete: record.complete,
          sums: parseSums(record.sums),
          updatedBy: record.updatedBy,
        },
        window: null,
        progress,
        numbers,
        lastWindow,
        updatedAt: record.updatedAt,
        lastSeenAt: record.updatedAt,
        dirty: false,
        filling: false,
        savedAt: record.updatedAt,
      });
    }
    for (const boost of await deps.repo.listBoosts()) boosts.set(boost.site, boost);
    await refreshSites();
    loaded = true;
  };

  /** Sites with a judged window since the last sampling decision. */
  const judgedSites = new Set<string>();
  /** Windows closed since the last tick by outcome (counted into the metric once per tick). */
  const outcomes = new Map<string, number>();
  /** Pending events of this tick: band changes, published after the write. */
  let changes: { track: Track; previous: DriftBand; signals: readonly string[] }[] = [];

  const closeWindow = (track: Track, now: number) => {
    const window = track.window;
    if (!window) return;
    track.window = null;
    const judged = judgeWindow(track.reference.sums, window.sums, judge);
    const outcome = judged.judged ? judged.band : judged.reason;
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    if (!judged.judged) return;
    if (track.scope === 'site') judgedSites.add(track.key);
    const range = windowRange(window.index, windowMs);
    const before = track.progress;
    const previous = before.band;
    track.progress = advance(before, judged.band, range.to, config.samplingWindows);
    track.numbers = judged.numbers;
    track.lastWindow = range;
    track.updatedAt = now;
    // The latest numbers live in memory; the row is written when the band or a streak changes.
    if (
      track.progress.band !== previous ||
      track.progress.moderateStreak !== before.moderateStreak ||
      track.progress.stableStreak !== before.stableStreak
    ) {
      track.dirty = true;
    }
    if (judged.band !== previous) changes.push({ track, previous, signals: judged.signals });
  };

  /** The sums a message received at `at` goes into on this track: its filling reference or its current window. */
  const sumsFor = (track: Track, at: number): DriftSums | null => {
    track.lastSeenAt = at;
    const reference = track.reference;
    if (!reference.complete) {
      if (reference.source !== 'auto') return null; // a dataset or pinned reference is being read
      if (reference.from === null) {
        reference.from = at;
        reference.to = at + referenceMs;
      }
      if (at < (reference.to ?? 0)) {
        track.filling = true;
        return reference.sums;
      }
      reference.complete = true;
      track.dirty = true;
    }
    const index = windowIndex(at, windowMs);
    if (track.window && index > track.window.index) closeWindow(track, at);
    track.window ??= { index, sums: emptySums() };
    return track.window.sums;
  };

  const trackFor = (scope: DriftScope, key: string, telemetry: Telemetry, at: number) => {
    const model = telemetry.pipeline!.model!;
    const track = tracks.get(trackId(scope, key, model.sha256)) ?? newTrack(scope, key, model.sha256, model.id, at);
    if (track.modelId === null) track.modelId = model.id;
    return track;
  };

  /* ------------------------------------- adaptive sampling ------------------------------------ */

  const siteTracks = (site: string, now: number) =>
    [...tracks.values()].filter(
      (track) => track.scope === 'site' && track.key === site && now - track.lastSeenAt <= 2 * windowMs,
    );

  const decideSampling = async (site: string, now: number) => {
    if (config.samplingFactor <= 1) return;
    const live = siteTracks(site, now);
    if (live.length === 0) return;
    const worst = live.reduce((a, b) => (driftBandRank(b.progress.band) > driftBandRank(a.progress.band) ? b : a));
    const raised = boosts.has(site);
    // Restore only when every model judged at the site is stable for long enough.
    const action = raised
      ? live.every((track) => planSampling(track.progress, true, config.samplingWindows) === 'restore')
        ? 'restore'
        : null
      : planSampling(worst.progress, false, config.samplingWindows);
    if (action === 'raise') {
      if (nothingToRaise.has(site)) return;
      await raise(site, worst, now);
    } else if (action === 'restore') {
      await restore(site, worst, now);
    } else if (!raised && worst.progress.band === 'stable') {
      nothingToRaise.delete(site);
    }
  };

  const reasonOf = (track: Track) => ({
    band: track.progress.band,
    sustainedWindows: sustainedWindows(track.progress),
    modelSha256: track.modelSha256,
    modelId: track.modelId,
    numbers: track.numbers,
    window: track.lastWindow,
  });

  const raise = async (site: string, track: Track, now: number) => {
    const records = await deps.samplePolicies.list();
    const key = selectorKey({ site });
    const own = records.find((record) => selectorKey(record.selector) === key) ?? null;
    const base = own?.policy ?? effectivePolicy(records, { site });
    const reason = reasonOf(track);
    if (base === null) {
      nothingToRaise.add(site);
      metrics.sampling.inc({ action: 'nothing-to-raise' });
      deps.bus.publish('drift.sampling', { site, action: 'nothing-to-raise', factor: config.samplingFactor, reason });
      return;
    }
    const parsed = SamplePolicy.safeParse(base);
    if (!parsed.success) {
      nothingToRaise.add(site);
      metrics.sampling.inc({ action: 'invalid-policy' });
      return;
    }
    const raised = raiseSampling(parsed.data, config.samplingFactor);
    const boost: DriftBoostRecord = { site, previous: own?.policy ?? null, raised, raisedAt: now, reason };
    // The previous policy is kept first: a crash between the two writes leaves a boost to undo, never a lost policy.
    await deps.repo.putBoost(boost);
    boosts.set(site, boost);
    await deps.samplePolicies.set({ selector: { labels: { site } }, policy: raised }, SYSTEM_DRIFT);
    metrics.sampling.inc({ action: 'raised' });
    const summary = {
      site,
      factor: config.samplingFactor,
      previous: own ? 'the site policy' : 'a less specific policy',
      ...reason,
    };
    await deps.audit.record({
      at: now,
      actor: SYSTEM_DRIFT,
      actorRole: 'system',
      action: 'drift.sampling-raised',
      resource: 'sample-policy',
      target: `site=${site}`,
      requestId: null,
      source: null,
      status: null,
      summary: JSON.parse(JSON.stringify(summary)),
    });
    deps.bus.publish('drift.sampling', { site, action: 'raised', factor: config.samplingFactor, reason });
  };

  const restore = async (site: string, track: Track, now: number) => {
    const boost = boosts.get(site);
    if (!boost) return;
    const records = await deps.samplePolicies.list();
    const key = selectorKey({ site });
    const own = records.find((record) => selectorKey(record.selector) === key) ?? null;
    // An operator who set the site's policy meanwhile wins: it is left as they set it.
    const untouched = own !== null && sameJson(own.policy, boost.raised);
    if (untouched) {
      await deps.samplePolicies.set(
        { selector: { labels: { site } }, policy: boost.previous === null ? null : (boost.previous as SamplePolicy) },
        SYSTEM_DRIFT,
      );
    }
    await deps.repo.removeBoost(site);
    boosts.delete(site);
    nothingToRaise.delete(site);
    const action = untouched ? 'restored' : 'left-as-changed';
    metrics.sampling.inc({ action });
    const reason = reasonOf(track);
    await deps.audit.record({
      at: now,
      actor: SYSTEM_DRIFT,
      actorRole: 'system',
      action: untouched ? 'drift.sampling-restored' : 'drift.sampling-released',
      resource: 'sample-policy',
      target: `site=${site}`,
      requestId: null,
      source: null,
      status: null,
      summary: JSON.parse(
        JSON.stringify({
          site,
          restored: untouched ? (boost.previous === null ? 'removed the site policy' : 'the site policy') : 'nothing',
          why: untouched ? 'stable again' : 'stable again; the site policy was changed meanwhile and is kept',
          ...reason,
        }),
      ),
    });
    deps.bus.publish('drift.sampling', { site, action, factor: config.samplingFactor, reason });
  };

  /* ------------------------------------------- tick ------------------------------------------- */

  const tick = async () => {
    if (stopped || !deps.isLeader()) {
      if (!deps.isLeader()) loaded = false; // a replica that becomes leader again reloads
      return;
    }
    if (!loaded) await load();
    const now = clock.now();
    const index = windowIndex(now, windowMs);
    const closing = index > lastClosedIndex;
    for (const track of tracks.values()) {
      const reference = track.reference;
      if (!reference.complete && reference.source === 'auto' && reference.to !== null && now >= reference.to) {
        reference.complete = true;
        track.dirty = true;
      }
      if (track.window && track.window.index < index) {
        closeWindow(track, now);
      }
    }
    if (!closing) {
      publishChanges();
      return;
    }
    lastClosedIndex = index;
    if (pendingObserved > 0) {
      metrics.observed.inc(undefined, pendingObserved);
      pendingObserved = 0;
    }
    const dirty = [...tracks.values()].filter(
      (track) =>
        (track.dirty && track.scope === 'site') ||
        ((track.dirty || track.filling) && now - track.savedAt >= DEFERRED_SAVE_MS),
    );
    await deps.repo.putReferences(dirty.map(toRecord));
    for (const track of dirty) {
      track.dirty = false;
      track.filling = false;
      track.savedAt = now;
    }
    publishChanges();
    // Sites judged since the last decision (by this tick, or inline when a later window's first message came first).
    const sitesToDecide = new Set([...judgedSites, ...boosts.keys()]);
    judgedSites.clear();
    for (const site of sitesToDecide) {
      try {
        await decideSampling(site, now);
      } catch (error) {
        metrics.tickErrors.inc({ kind: 'sampling' });
        logger.error({ err: error, site }, 'drift sampling change failed');
      }
    }
    if (now - sitesReadAt >= Math.max(windowMs, SITE_REFRESH_MS)) await refreshSites();
  };

  const publishChanges = () => {
    for (const [outcome, count] of outcomes) metrics.windows.inc({ outcome }, count);
    outcomes.clear();
    const pending = changes;
    changes = [];
    for (const { track, previous, signals } of pending) {
      deps.bus.publish('drift.changed', { ...toState(track), previous, signals });
    }
  };

  const runTick = (): Promise<void> => {
    if (running) return running;
    running = tick().finally(() => {
      running = null;
    });
    return running;
  };

  /* -------------------------------------------- gauges ------------------------------------------ */

  const gaugeTracks = () => {
    // One series per (scope, key): the worst model there. Sites always; devices not stable, worst first, capped.
    const worst = new Map<string, Track>();
    for (const track of tracks.values()) {
      if (track.scope === 'device' && track.progress.band === 'stable') continue;
      const id = `${track.scope}\u0000${track.key}`;
      const seen = worst.get(id);
      if (!seen || driftBandRank(track.progress.band) > driftBandRank(seen.progress.band)) worst.set(id, track);
    }
    const all = [...worst.values()];
    const siteSeries = all.filter((track) => track.scope === 'site');
    const deviceSeries = all
      .filter((track) => track.scope === 'device')
      .sort((a, b) => driftBandRank(b.progress.band) - driftBandRank(a.progress.band) || (a.key < b.key ? -1 : 1))
      .slice(0, config.deviceGauges);
    return [...siteSeries, ...deviceSeries];
  };
  deps.metrics.gauge(
    'edgeloop_drift_band',
    'Drift band per site (and per device not stable, capped by --drift-device-gauges): 0 stable, 1 moderate, 2 major',
    () => gaugeTracks().map((track) => [{ scope: track.scope, key: track.key }, driftBandRank(track.progress.band)]),
  );
  deps.metrics.gauge(
    'edgeloop_drift_psi',
    'PSI of the last judged drift window against its reference, by signal (confidence, class-mix)',
    () =>
      gaugeTracks().flatMap((track) => {
        const series: [Record<string, string>, number][] = [];
        if (track.numbers.confidencePsi !== null) {
          series.push([{ scope: track.scope, key: track.key, signal: 'confidence' }, track.numbers.confidencePsi]);
        }
        if (track.numbers.classMixPsi !== null) {
          series.push([{ scope: track.scope, key: track.key, signal: 'class-mix' }, track.numbers.classMixPsi]);
        }
        return series;
      }),
  );
  deps.metrics.gauge('edgeloop_drift_tracks', 'Drift tracks held (scope, key and model)', () => tracks.size);

  /* -------------------------------------------- API ------------------------------------------- */

  const matchesModel = (track: Track, model: string) =>
    track.modelSha256 === model || track.modelId === model || track.modelId?.startsWith(`${model}@`) === true;

  return {
    async start() {
      if (deps.isLeader()) await load();
      handle = deps.timers.setInterval(() => {
        runTick().catch((error: unknown) => {
          metrics.tickErrors.inc({ kind: 'tick' });
          logger.error({ err: error }, 'drift tick failed');
        });
      }, config.tickMs);
    },

    async stop() {
      stopped = true;
      if (handle !== null) deps.timers.clearInterval(handle);
      handle = null;
      await running?.catch(() => undefined);
      // What accumulated since the last window close is kept.
      const dirty = [...tracks.values()].filter((track) => track.dirty || track.filling);
      if (loaded && dirty.length > 0) await deps.repo.putReferences(dirty.map(toRecord)).catch(() => undefined);
    },

    observe(deviceId, telemetry, receivedAt) {
      if (!loaded || stopped || !deps.isLeader()) return;
      const model = telemetry.pipeline?.model;
      if (!model) return;
      try {
        const site = sites.get(deviceId) ?? null;
        let route = routes.get(deviceId);
        if (!route || route.sha !== model.sha256 || route.site !== site) {
          route = {
            sha: model.sha256,
            site,
            device: trackFor('device', deviceId, telemetry, receivedAt),
            siteTrack: site ? trackFor('site', site, telemetry, receivedAt) : null,
          };
          routes.set(deviceId, route);
        }
        const deviceSums = sumsFor(route.device, receivedAt);
        const siteSums = route.siteTrack ? sumsFor(route.siteTrack, receivedAt) : null;
        if (deviceSums) addPipelineTo(telemetry.pipeline!, deviceSums, siteSums);
        else if (siteSums) addPipelineTo(telemetry.pipeline!, siteSums, null);
        pendingObserved++;
      } catch (error) {
        metrics.observeErrors.inc();
        logger.debug({ err: error, deviceId }, 'drift could not accumulate a telemetry message');
      }
    },

    tick: runTick,

    list(query) {
      const items: DriftState[] = [];
      for (const track of tracks.values()) {
        if (query.scope !== undefined && track.scope !== query.scope) continue;
        if (query.band !== undefined && track.progress.band !== query.band) continue;
        if (query.model !== undefined && !matchesModel(track, query.model)) continue;
        if (query.device !== undefined && !(track.scope === 'device' && track.key === query.device)) continue;
        if (query.site !== undefined) {
          const site = track.scope === 'site' ? track.key : sites.get(track.key);
          if (site !== query.site) continue;
        }
        items.push(toState(track));
      }
      items.sort(
        (a, b) =>
          driftBandRank(b.band) - driftBandRank(a.band) ||
          (a.scope === b.scope ? 0 : a.scope === 'site' ? -1 : 1) ||
          (a.key < b.key ? -1 : a.key > b.key ? 1 : 0) ||
          (a.modelSha256 < b.modelSha256 ? -1 : 1),
      );
      return { items };
    },

    async setReference(request, by) {
      if (!loaded) await load();
      const now = clock.now();
      let sums: DriftSums;
      let reference: Reference;
      if (request.source === 'auto') {
        sums = emptySums();
        reference = { source: 'auto', datasetId: null, from: null, to: null, complete: false, sums, updatedBy: by };
      } else if (request.source === 'dataset') {
        const datasetId = request.datasetId!;
        const dataset = await deps.datasets.get(datasetId);
        if (!dataset) return fail('not_found', `no dataset version ${datasetId}`);
        const predictions: unknown[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await deps.datasets.members(datasetId, {
            ...(after ? { afterSampleId: after } : {}),
            limit: 500,
          });
          for (const member of page) predictions.push(member.sample.predictions);
          if (page.length < 500) break;
          after = page[page.length - 1]!.sampleId;
        }
        sums = sumsOfPredictions(predictions);
        reference = { source: 'dataset', datasetId, from: null, to: null, complete: true, sums, updatedBy: by };
      } else {
        const from = request.from!;
        const to = request.to!;
        const rows: TelemetrySample[] = [];
        // Read once, in slices of an hour (a turn of the event loop between them).
        for (let start = from; start < to; start += 3_600_000) {
          const end = Math.min(to, start + 3_600_000) - 1;
          for (const row of await deps.messages.telemetrySamples({ from: start, to: end })) {
            if (row.modelSha256 !== request.modelSha256) continue;
            const key = request.scope === 'device' ? row.deviceId : sites.get(row.deviceId);
            if (key === request.key) rows.push(row);
          }
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        sums = sumsOfTelemetry(rows);
        reference = { source: 'pinned', datasetId: null, from, to, complete: true, sums, updatedBy: by };
      }
      if (request.source !== 'auto' && sums.detections < config.minDetections) {
        return fail(
          'invalid_reference',
          `the reference holds ${sums.detections} detections; at least ${config.minDetections} (--drift-min-detections) are needed`,
        );
      }
      const id = trackId(request.scope, request.key, request.modelSha256);
      const track = tracks.get(id) ?? newTrack(request.scope, request.key, request.modelSha256, null, now);
      track.reference = reference;
      track.window = null;
      track.progress = STABLE_PROGRESS;
      track.numbers = EMPTY_NUMBERS;
      track.lastWindow = null;
      track.updatedAt = now;
      await deps.repo.putReferences([toRecord(track)]);
      track.dirty = false;
      return ok(toState(track));
    },

    noteDeviceSite(deviceId, site) {
      sites.set(deviceId, site);
    },
  };
}
