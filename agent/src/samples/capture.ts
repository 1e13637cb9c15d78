import path from 'node:path';
import type {
  JsonObject,
  SAMPLE_DROP_CAUSES,
  SampleMetadata,
  SamplePolicy,
  SampleStrategyKind,
  SampleTelemetry,
} from '@edgeloop/protocol';
import { type Clock, systemClock, systemTimers, type Timers } from '../clock.ts';
import { type Logger, silentLogger } from '../logger.ts';
import type { FrameResult, VisionSink } from '../vision/pipeline.ts';
import { type Budget, createBudget } from './budget.ts';
import type { EncodedSample } from './encode.ts';
import { createChildEncoder, createInlineEncoder, type SampleEncoder } from './encoder.ts';
import { decidePolicy, type PolicyDecision } from './policy.ts';
import { type BoxLike, type CameraFlags, type Selection, selectFrame, testStrategy } from './select.ts';
import { openSpool, type Spool } from './spool.ts';
import { createSampleUploader, type SampleUploader, type SampleUploaderDeps } from './uploader.ts';

/*
 * The hard-sample sink on the vision pipeline:
 *
 *   vision loop (per frame, cheap)   policy -> selectFrame -> budget.admit (counts) -> copy into a
 *                                    free slot of a bounded queue (none free: dropped 'queue-full')
 *   worker (one at a time, async)    encoder: redact + JPEG (sharp) -> sha256 -> budget.commit
 *                                    (bytes) -> durable spool -> uploader.kick; the encoding and
 *                                    the spool's and budget's file writes run where the encoder
 *                                    runs (this process, or the low-priority child: encoder.ts)
 *   uploader                         spool -> resumable HTTP upload (uploader.ts)
 *
 * The vision loop never waits on the worker: a slot is copied into or the frame is dropped. Drops
 * are counted by cause (SampleTelemetry.dropped), never logged per frame. On-demand: `capture(n)`
 * makes the next n frames candidates of the policy's on-demand strategy (an implicit one with
 * probability 1 when the policy has none). stop() lets the worker finish what is queued, so
 * samples selected before a graceful stop reach the spool.
 */

type DropCause = (typeof SAMPLE_DROP_CAUSES)[number];

export type CaptureFrameInput = {
  data: Uint8Array;
  width: number;
  height: number;
  capturedAt: number;
  detections: readonly (BoxLike & { readonly classId: number })[];
  model: { readonly id: string; readonly sha256: string } | null;
  camera: CameraFlags | null;
  shadow: readonly BoxLike[] | null;
};

export type CaptureOutcome = 'none' | 'queued' | DropCause;

export interface SampleCapture {
  /** The pipeline sink (synchronous: it never holds the loop). */
  readonly sink: VisionSink;
  /** Judges one frame; the sink calls it, and so can a simulator with its own frames. */
  offer(input: CaptureFrameInput): CaptureOutcome;
  /**
   * A frame the shadow comparator compared (model-update/shadow.ts onCompared), with the
   * candidate's detections: only the policy's shadow-disagreement strategies judge it, and not at
   * all when the sink already queued this frame. Returns 'none' at once when the policy has none.
   */
  offerShadow(result: FrameResult, candidate: readonly BoxLike[]): CaptureOutcome;
  /** Applies Desired.samplePolicy (absent: no change; null: capture off; invalid: refused, old kept). */
  applyDesired(samplePolicy: unknown): PolicyDecision;
  /** The capture command: the next `frames` frames are on-demand candidates. Returns frames pending. */
  capture(frames: number): number;
  readonly policy: SamplePolicy | null;
  /** Telemetry.samples while a policy is set (or one was refused, or the spool still holds samples). */
  telemetry(): SampleTelemetry | undefined;
  /** Resolves once the queue is empty and the worker idle (tests, stop). */
  whenIdle(): Promise<void>;
  start(): void;
  stop(): Promise<void>;
  stats(): JsonObject;
}

export type SampleCaptureDeps = {
  /** `<dataDir>/samples`: the spool lives in `spool/`, the budget counters in `budget.json`. */
  readonly dir: string;
  readonly deviceId: string;
  readonly bootId: string;
  readonly site?: () => string | null;
  readonly labels?: () => Record<string, string>;
  /** Upload target; without it samples stay in the spool. */
  readonly upload?: Omit<SampleUploaderDeps, 'spool' | 'timers' | 'random' | 'onRejected' | 'onUploaded'> | null;
  /** Reports a refused policy (the agent emits it on the events channel). */
  readonly onPolicyRefused?: (message: string) => void;
  readonly clock?: Clock;
  readonly timers?: Timers;
  readonly random?: () => number;
  readonly logger?: Logger;
  /**
   * Where redact + JPEG + sha256 run (encoder.ts), owned by the caller (stop() leaves it running).
   * Without it: options.encoder.
   */
  readonly encoder?: SampleEncoder;
  readonly options?: {
    /** Frames waiting for the encoder (default 4). */
    readonly queueCapacity?: number;
    /** Spool bound before any policy sets one (default 64 MiB). */
    readonly spoolMaxBytes?: number;
    /** fsync spool files (default true). */
    readonly fsync?: boolean;
    /**
     * Without deps.encoder: 'inline' (default) encodes in this process; 'child' in a child process
     * at nice `encoderPriority` (default 19) that this capture starts at start() and ends at stop().
     */
    readonly encoder?: 'inline' | 'child';
    readonly encoderPriority?: number;
    /**
     * When the source scales frames for the model (ffmpeg's default), samples are taken only from
     * frames that carry the camera's resolution (`frame.full`): the sink asks for one every this
     * many frames (default 10).
     */
    readonly fullFrameEvery?: number;
  };
};

/**
 * The frame a sample is cut from: the frame itself, or its full-resolution copy when the source
 * scaled it for the model (boxes are then scaled to that copy); null when a scaled frame carries
 * no full-resolution copy (it is not a candidate).
 */
export function sampleFrameOf(
  frame: FrameResult['frame'],
): { frame: FrameResult['frame']; sx: number; sy: number } | null {
  if (frame.full)
    return { frame: frame.full, sx: frame.full.width / frame.width, sy: frame.full.height / frame.height };
  return frame.scaledForModel ? null : { frame, sx: 1, sy: 1 };
}

function scaleBoxes<T extends BoxLike>(boxes: readonly T[], sx: number, sy: number): readonly T[] {
  if (sx === 1 && sy === 1) return boxes;
  return boxes.map((b) => ({ ...b, x1: b.x1 * sx, y1: b.y1 * sy, x2: b.x2 * sx, y2: b.y2 * sy }));
}

type Slot = {
  rgb: Uint8Array;
  width: number;
  height: number;
  capturedAt: number;
  detections: (BoxLike & { classId: number })[];
  model: { id: string; sha256: string } | null;
  policy: SamplePolicy;
  selection: Selection;
};

const IMPLICIT_ON_DEMAND = { kind: 'on-demand', probability: 1, tags: [] as string[] } as const;

export function createSampleCapture(deps: SampleCaptureDeps): SampleCapture {
  const clock = deps.clock ?? systemClock;
  const timers = deps.timers ?? systemTimers;
  const random = deps.random ?? Math.random;
  const log = (deps.logger ?? silentLogger).child({ component: 'samples' });
  const capacity = Math.max(1, deps.options?.queueCapacity ?? 4);
  const dropped: Partial<Record<DropCause, number>> = {};
  const count = (cause: DropCause, n = 1): void => {
    dropped[cause] = (dropped[cause] ?? 0) + n;
  };

  const ownEncoder =
    !deps.encoder && deps.options?.encoder === 'child'
      ? createChildEncoder(deps.options.encoderPriority !== undefined ? { priority: deps.options.encoderPriority } : {})
      : null;
  const encoder: SampleEncoder = deps.encoder ?? ownEncoder ?? createInlineEncoder();
  const budget: Budget = createBudget({
    file: path.join(deps.dir, 'budget.json'),
    clock,
    write: encoder.write,
    onPersistError(error) {
      log.error({ err: error }, 'sample budget counters not persisted');
    },
  });
  const spool: Spool = openSpool({
    dir: path.join(deps.dir, 'spool'),
    maxBytes: deps.options?.spoolMaxBytes ?? 64 * 1024 * 1024,
    fsync: deps.options?.fsync ?? true,
    write: encoder.write,
    onDrop() {
      count('spool-full');
    },
  });
  const uploader: SampleUploader | null = deps.upload
    ? createSampleUploader({
        ...deps.upload,
        spool,
        timers,
        random,
        onRejected(_metadata, reason) {
          count('rejected');
          log.warn({ reason }, 'sample rejected by the control plane; dropped');
        },
      })
    : null;

  let policy: SamplePolicy | null = null;
  let policyError: string | null = null;
  let onDemandLeft = 0;
  let captured = 0;
  let seq = 0;
  let encodeErrors = 0;
  let duplicates = 0;
  let lastEncodeError: string | null = null;
  let running = false;

  const free: Slot[] = [];
  const queue: Slot[] = [];
  let busy = false;
  let idleWaiters: (() => void)[] = [];

  let slotsMade = 0;
  /** The frame the sink queued last (buffer and capture time): the shadow pass skips it. */
  let lastQueuedData: Uint8Array | null = null;
  let lastQueuedAt = -1;
  /** Shadow-disagreement strategies in the policy (0: offerShadow returns at once). */
  let shadowStrategies = 0;

  /** A free slot (buffers reused), a new one while fewer than `capacity` exist, or null. */
  function takeSlot(p: SamplePolicy, selection: Selection): Slot | null {
    const slot = free.pop();
    if (slot) return slot;
    if (slotsMade >= capacity) return null;
    slotsMade++;
    return {
      rgb: new Uint8Array(0),
      width: 0,
      height: 0,
      capturedAt: 0,
      detections: [],
      model: null,
      policy: p,
      selection,
    };
  }

  function offer(input: CaptureFrameInput): CaptureOutcome {
    const p = policy;
    if (!p?.enabled) return 'none';
    let selection = selectFrame(
      p,
      {
        detections: input.detections,
        camera: input.camera,
        shadow: input.shadow,
        onDemand: onDemandLeft > 0,
      },
      random,
    );
    if (!selection && onDemandLeft > 0 && !p.strategies.some((s) => s.kind === 'on-demand')) {
      selection = {
        kind: IMPLICIT_ON_DEMAND.kind,
        index: -1,
        reason: 'capture command',
        tags: IMPLICIT_ON_DEMAND.tags,
      };
    }
    if (!selection) return 'none';
    if (selection.kind === 'on-demand' && onDemandLeft > 0) onDemandLeft--;
    return enqueue(p, selection, input);
  }

  /** Budget, a free slot, a copy of the frame: the selected frame joins the worker's queue. */
  function enqueue(p: SamplePolicy, selection: Selection, input: CaptureFrameInput): CaptureOutcome {
    const kind: SampleStrategyKind = selection.kind;
    const verdict = budget.admit(p.limits, p.strategyLimits[kind], kind);
    if (verdict !== 'ok') {
      count(verdict);
      return verdict;
    }
    const slot = takeSlot(p, selection);
    if (!slot) {
      budget.release(kind);
      count('queue-full');
      return 'queue-full';
    }
    const bytes = input.width * input.height * 3;
    if (slot.rgb.length < bytes) slot.rgb = new Uint8Array(bytes);
    slot.rgb.set(input.data.subarray(0, bytes));
    slot.width = input.width;
    slot.height = input.height;
    slot.capturedAt = input.capturedAt;
    slot.detections = input.detections.map((d) => ({
      x1: d.x1,
      y1: d.y1,
      x2: d.x2,
      y2: d.y2,
      score: d.score,
      classId: d.classId,
      label: d.label,
    }));
    slot.model = input.model ? { id: input.model.id, sha256: input.model.sha256 } : null;
    slot.policy = p;
    slot.selection = selection;
    queue.push(slot);
    lastQueuedData = input.data;
    lastQueuedAt = input.capturedAt;
    if (!busy) void work();
    return 'queued';
  }

  /** The shadow pass over a compared frame: its shadow-disagreement strategies only. */
  function offerShadow(result: FrameResult, candidate: readonly BoxLike[]): CaptureOutcome {
    const p = policy;
    if (!p?.enabled || shadowStrategies === 0) return 'none';
    const picked = sampleFrameOf(result.frame);
    if (!picked) return 'none';
    const frame = picked.frame;
    // The sink queued this very frame already (another strategy): one sample per frame.
    if (lastQueuedData === frame.data && lastQueuedAt === frame.capturedAt) return 'none';
    shadowInput.detections = result.detections;
    shadowInput.shadow = candidate;
    let selection: Selection | null = null;
    for (let i = 0; i < p.strategies.length && !selection; i++) {
      const strategy = p.strategies[i] as SamplePolicy['strategies'][number];
      if (strategy.kind !== 'shadow-disagreement') continue;
      const reason = testStrategy(strategy, shadowInput, random);
      if (reason === null) continue;
      if (strategy.probability < 1 && random() >= strategy.probability) continue;
      selection = { kind: strategy.kind, index: i, reason, tags: strategy.tags };
    }
    shadowInput.detections = [];
    shadowInput.shadow = null;
    if (!selection) return 'none';
    scratch.data = frame.data;
    scratch.width = frame.width;
    scratch.height = frame.height;
    scratch.capturedAt = frame.capturedAt;
    scratch.detections = scaleBoxes(result.detections, picked.sx, picked.sy);
    scratch.model = result.model.ref;
    scratch.camera = result.cameraHealth ?? null;
    scratch.shadow = scaleBoxes(candidate, picked.sx, picked.sy);
    const outcome = enqueue(p, selection, scratch);
    scratch.data = new Uint8Array(0);
    scratch.detections = [];
    scratch.shadow = null;
    return outcome;
  }

  async function work(): Promise<void> {
    busy = true;
    try {
      for (let slot = queue.shift(); slot; slot = queue.shift()) {
        try {
          await encodeAndSpool(slot);
        } finally {
          free.push(slot);
        }
      }
    } finally {
      busy = false;
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  async function encodeAndSpool(slot: Slot): Promise<void> {
    const p = slot.policy;
    const kind = slot.selection.kind;
    let encoded: EncodedSample;
    try {
      encoded = await encoder.encode(
        {
          rgb: slot.rgb.subarray(0, slot.width * slot.height * 3),
          width: slot.width,
          height: slot.height,
          detections: slot.detections,
        },
        p,
      );
    } catch (error) {
      budget.release(kind);
      count('encode-failed');
      encodeErrors++;
      const message = (error as Error).message;
      if (message !== lastEncodeError) log.warn({ reason: message }, 'sample encoding failed');
      lastEncodeError = message;
      return;
    }
    if (spool.has(encoded.sha256)) {
      // The same bytes are waiting already (a frozen camera): one sample, charged once.
      budget.release(kind);
      duplicates++;
      return;
    }
    if (budget.commit(p.limits, p.strategyLimits[kind], kind, encoded.bytes.length) !== 'ok') {
      count('budget');
      return;
    }
    seq++;
    const metadata: SampleMetadata = {
      deviceId: deps.deviceId,
      site: deps.site?.() ?? null,
      labels: deps.labels?.() ?? {},
      model: slot.model,
      strategy: kind,
      reason: slot.selection.reason.slice(0, 512),
      tags: [...slot.selection.tags],
      predictions: encoded.predictions,
      frameTs: Math.max(0, Math.trunc(slot.capturedAt)),
      bootId: deps.bootId,
      seq,
      image: {
        sha256: encoded.sha256,
        bytes: encoded.bytes.length,
        width: encoded.width,
        height: encoded.height,
        contentType: 'image/jpeg',
      },
    };
    let pushed: number;
    try {
      await budget.flush();
      pushed = await spool.put(metadata, encoded.bytes);
    } catch (error) {
      count('spool-full');
      log.error({ err: error }, 'sample spool write failed');
      return;
    }
    if (pushed < 0) {
      count('spool-full');
      return;
    }
    captured++;
    uploader?.kick();
  }

  // The sink reuses these input objects: nothing is allocated for frames nobody selects.
  const shadowInput: { detections: readonly BoxLike[]; shadow: readonly BoxLike[] | null; onDemand: boolean } = {
    detections: [],
    shadow: null,
    onDemand: false,
  };
  const scratch: CaptureFrameInput = {
    data: new Uint8Array(0),
    width: 0,
    height: 0,
    capturedAt: 0,
    detections: [],
    model: null,
    camera: null,
    shadow: null,
  };
  const sink: VisionSink = {
    name: 'hard-samples',
    fullFrames: { everyFrames: Math.max(1, deps.options?.fullFrameEvery ?? 10) },
    onResult(result: FrameResult) {
      if (!policy?.enabled) return;
      const picked = sampleFrameOf(result.frame);
      if (!picked) return;
      scratch.data = picked.frame.data;
      scratch.width = picked.frame.width;
      scratch.height = picked.frame.height;
      scratch.capturedAt = picked.frame.capturedAt;
      scratch.detections = scaleBoxes(result.detections, picked.sx, picked.sy);
      scratch.model = result.model.ref;
      scratch.camera = result.cameraHealth ?? null;
      // Shadow-disagreement judges compared frames later, in offerShadow (the comparator's onCompared).
      scratch.shadow = null;
      offer(scratch);
      scratch.data = new Uint8Array(0);
      scratch.detections = [];
    },
  };

  return {
    sink,
    offer,
    offerShadow,
    applyDesired(samplePolicy) {
      const decision = decidePolicy(policy, samplePolicy);
      if (decision.error !== null) {
        if (decision.error !== policyError) deps.onPolicyRefused?.(decision.error);
        policyError = decision.error;
        log.warn({ reason: decision.error }, 'sample policy refused; the previous one stays');
        return decision;
      }
      if (samplePolicy !== undefined) policyError = null;
      policy = decision.policy;
      shadowStrategies = policy ? policy.strategies.filter((s) => s.kind === 'shadow-disagreement').length : 0;
      if (policy) spool.setMaxBytes(policy.spoolMaxBytes);
      return decision;
    },
    capture(frames) {
      onDemandLeft = Math.max(0, Math.trunc(frames));
      return onDemandLeft;
    },
    get policy() {
      return policy;
    },
    telemetry() {
      const spooled = spool.stats();
      if (policy === null && policyError === null && spooled.count === 0) return undefined;
      const up = uploader?.stats();
      const limits = policy?.limits ?? {};
      return {
        captured,
        dropped: { ...dropped },
        uploaded: up?.uploaded ?? 0,
        uploadedBytes: up?.uploadedBytes ?? 0,
        spooled: spooled.count,
        spooledBytes: spooled.bytes,
        budgetLeft: budget.left(limits),
        policyError,
      };
    },
    whenIdle() {
      if (!busy && queue.length === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
    start() {
      if (running) return;
      running = true;
      uploader?.start();
      // The child starts now, not at the first selected frame; a failed start is retried then.
      ownEncoder?.ready().catch((error: unknown) => {
        log.warn({ reason: (error as Error).message }, 'sample encoder child did not start');
      });
    },
    async stop() {
      running = false;
      await this.whenIdle();
      await uploader?.stop();
      await ownEncoder?.stop();
    },
    stats() {
      return {
        captured,
        dropped: { ...dropped },
        queued: queue.length,
        onDemandLeft,
        encodeErrors,
        duplicates,
        spool: { ...spool.stats(), recovery: { ...spool.recovery } },
        budgetToday: budget.today(),
        encoder: encoder.stats(),
        ...(uploader ? { uploader: uploader.stats() } : {}),
      };
    },
  };
}
