import { randomBytes } from 'node:crypto';
import {
  CONFIDENCE_BINS,
  type DeviceToCloudChannel,
  encode,
  type MessageInputOf,
  type ModelRef,
  messageId,
  topicFor,
} from '@edgeloop/protocol';
import type { TestControlPlane } from './harness.ts';
import { SYSTEM } from './harness.ts';

/*
 * Devices that obey desired state, for rollout tests. Each round every (non-silent) device reads
 * its desired state, switches or shadows the model it names (or refuses it), reports its model
 * state when it changed and sends one telemetry window whose numbers depend on the model it runs.
 * Messages enter through the control plane's real ingest writer (validation, dedupe, live state,
 * received-at time from the injected clock); only the MQTT socket is skipped.
 */

export type ModelBehaviour = {
  readonly latencyP95: number;
  readonly detectionsPer1000: number;
  readonly fps?: number;
  /** Shadow agreement of this model (as candidate) against the current one. */
  readonly precision?: number;
  readonly recall?: number;
};

export type VirtualDevice = {
  readonly id: string;
  readonly labels: Record<string, string>;
  readonly hardware: string;
};

export type VirtualFleet = {
  /** Enrolls every device and sends its birth and first report. */
  enroll(): Promise<void>;
  /** One round: obey desired state, report, send a telemetry window of `windowS` seconds. */
  round(options?: { silent?: ReadonlySet<string>; windowS?: number }): Promise<void>;
  modelOf(id: string): { active: ModelRef | null; shadow: ModelRef | null };
  /** The devices reconnect to another control plane (a restarted one on the same data). */
  attach(t: TestControlPlane): void;
};

type DeviceState = {
  readonly device: VirtualDevice;
  readonly bootId: string;
  seq: number;
  active: ModelRef | null;
  shadow: ModelRef | null;
  update: { rolloutId: string | null; target: ModelRef; state: string; reason?: string } | null;
  desiredVersion: number;
  reportedKey: string;
};

export function createVirtualFleet(options: {
  readonly t: TestControlPlane;
  readonly devices: readonly VirtualDevice[];
  /** The model each device runs from its local configuration. */
  readonly initial: ModelRef;
  readonly behaviour: (sha256: string) => ModelBehaviour;
  /** A reason to refuse an assignment (the device then reports `reverted`), or null to take it. */
  readonly refuse?: (deviceId: string, model: ModelRef) => string | null;
}): VirtualFleet {
  let t = options.t;
  const states = new Map<string, DeviceState>();

  const send = <C extends DeviceToCloudChannel>(
    state: DeviceState,
    channel: C,
    body: Omit<MessageInputOf<C>, 'msgId' | 'bootId' | 'seq' | 'ts'>,
  ) =>
    new Promise<void>((resolve, reject) => {
      const seq = ++state.seq;
      const payload = encode(channel, {
        ...body,
        msgId: messageId(state.bootId, seq),
        bootId: state.bootId,
        seq,
        ts: Date.now(),
      } as MessageInputOf<C>);
      const outcome = t.cp.internals.ingest.offer(
        {
          deviceId: state.device.id,
          channel,
          topic: topicFor(state.device.id, channel),
          payload: Buffer.from(payload),
          qos: 1,
          will: false,
          liveSession: true,
        },
        (error) => (error ? reject(error) : resolve()),
      );
      if (outcome !== 'queued') reject(new Error(`ingest ${outcome} a ${channel} message of ${state.device.id}`));
    });

  const report = async (state: DeviceState) => {
    const model = { active: state.active, shadow: state.shadow, update: state.update };
    const key = JSON.stringify([model, state.desiredVersion]);
    if (key === state.reportedKey) return;
    state.reportedKey = key;
    await send(state, 'reported', {
      agentVersion: '1.0.0',
      desiredVersion: state.desiredVersion,
      telemetryIntervalS: 5,
      hardware: { profile: state.device.hardware },
      model,
    });
  };

  const telemetry = async (state: DeviceState, windowS: number) => {
    const active = state.active;
    if (!active) return;
    const behaviour = options.behaviour(active.sha256);
    const fps = behaviour.fps ?? 50;
    const frames = Math.round(fps * windowS);
    const histogram = Array.from({ length: CONFIDENCE_BINS }, (_, bin) => (bin === 15 ? 80 : 5));
    const latency = (p95: number) => ({ count: frames, p50: p95 * 0.7, p95, p99: p95 * 1.2, max: p95 * 1.5 });
    const shadow = state.shadow;
    const candidate = shadow ? options.behaviour(shadow.sha256) : null;
    await send(state, 'telemetry', {
      intervalS: windowS,
      system: SYSTEM,
      pipeline: {
        windowS,
        framesIn: frames,
        framesProcessed: frames,
        framesDropped: 0,
        inferenceErrors: 0,
        fps,
        latencyMs: { inference: latency(behaviour.latencyP95) },
        detectionsPer1000: { car: behaviour.detectionsPer1000 },
        confidenceHistogram: histogram,
        nearThresholdShare: 0.1,
        lastInferenceAt: Date.now(),
        provider: { requested: ['cpu'], active: 'cpu' },
        model: active,
        camera: null,
      },
      ...(shadow && candidate
        ? {
            shadow: {
              candidate: shadow,
              framesCompared: Math.round(frames / 2),
              framesSkipped: 0,
              precision: candidate.precision ?? 0.95,
              recall: candidate.recall ?? 0.95,
              perClass: {},
              candidateLatencyMs: latency(candidate.latencyP95),
            },
          }
        : {}),
    });
  };

  /** Applies desired state the way an agent would (download, verify, switch: all instant here). */
  const obey = (state: DeviceState, desired: { version: number; model?: unknown } | null) => {
    if (!desired || desired.version === state.desiredVersion) return;
    state.desiredVersion = desired.version;
    const assignment = desired.model as
      | { rolloutId: string | null; model: ModelRef; mode: 'active' | 'shadow' }
      | null
      | undefined;
    if (assignment === undefined) return;
    if (assignment === null) {
      state.active = options.initial;
      state.shadow = null;
      return;
    }
    const refusal = options.refuse?.(state.device.id, assignment.model) ?? null;
    if (refusal !== null) {
      state.update = { rolloutId: assignment.rolloutId, target: assignment.model, state: 'reverted', reason: refusal };
      return;
    }
    if (assignment.mode === 'shadow') {
      if (state.active?.sha256 !== assignment.model.sha256) state.shadow = assignment.model;
      state.update = { rolloutId: assignment.rolloutId, target: assignment.model, state: 'shadow' };
    } else {
      state.active = assignment.model;
      state.shadow = null;
      state.update = { rolloutId: assignment.rolloutId, target: assignment.model, state: 'committed' };
    }
  };

  return {
    async enroll() {
      for (const device of options.devices) {
        const enrolled = await t.cp.internals.fleet.enroll({ id: device.id, labels: device.labels });
        if (!enrolled.ok) throw new Error(enrolled.error.message);
        const state: DeviceState = {
          device,
          bootId: `boot${randomBytes(6).toString('hex')}`,
          seq: 0,
          active: options.initial,
          shadow: null,
          update: null,
          desiredVersion: 0,
          reportedKey: '',
        };
        states.set(device.id, state);
        await Promise.all([send(state, 'status', { state: 'online', reason: 'birth', keepaliveS: 30 }), report(state)]);
      }
      await t.cp.internals.ingest.flush();
    },

    async round(roundOptions = {}) {
      const windowS = roundOptions.windowS ?? 5;
      const snapshots = await t.cp.internals.store.devices.snapshots({ ids: [...states.keys()] });
      const desired = new Map(snapshots.map((snapshot) => [snapshot.id, snapshot.desired]));
      const sends: Promise<void>[] = [];
      for (const state of states.values()) {
        if (roundOptions.silent?.has(state.device.id)) continue;
        obey(state, desired.get(state.device.id) ?? null);
        sends.push(report(state), telemetry(state, windowS));
      }
      // Resolves once the ingest writer committed every message.
      await Promise.all(sends);
    },

    attach(next) {
      t = next;
      // A reconnect: the new control plane hears the birth and the current report.
      for (const state of states.values()) state.reportedKey = '';
    },

    modelOf(id) {
      const state = states.get(id);
      return { active: state?.active ?? null, shadow: state?.shadow ?? null };
    },
  };
}
