import {
  type DeviceEvent,
  type DeviceStatus,
  type DriftBand,
  type DriftState,
  type GateResultView,
  type HealthState,
  type Reported,
  SERVER_EVENT_TYPES,
  type ServerEventType,
} from '@edgeloop/protocol';

/*
 * The in-process event bus. Components publish typed events; the SSE endpoint, and later the
 * rollout engine and the dashboard, subscribe. Listeners run synchronously and are isolated: one
 * that throws is counted and does not stop the others. Add new event types to BusEvents.
 */

export type BusEvents = {
  'device.enrolled': { deviceId: string; labels: Record<string, string> };
  'device.revoked': { deviceId: string };
  'device.online': { deviceId: string; bootId: string | null; cause: StatusCause };
  'device.offline': { deviceId: string; bootId: string | null; cause: StatusCause };
  'device.health': { deviceId: string; health: HealthState; reasons: readonly string[]; previous: HealthState };
  'device.event': { deviceId: string; event: DeviceEvent };
  'device.reported': { deviceId: string; reported: Reported };
  'ingest.rejected': { deviceId: string | null; topic: string; reason: string; detail: string };
  'model.registered': { modelId: string; sha256: string; sizeBytes: number; releaseCounter: number };
  'rollout.created': RolloutTransitionEvent & {
    modelId: string;
    targetDevices: number;
    canary: readonly string[];
    control: readonly string[];
  };
  'rollout.assigned': {
    rolloutId: string;
    stage: string | null;
    stageIndex: number;
    mode: 'shadow' | 'active';
    deviceIds: readonly string[];
  };
  'rollout.reverting': { rolloutId: string; reason: string; deviceIds: readonly string[] };
  /** Devices whose assignment state changed (confirmed, failed with the reason, back home). */
  'rollout.devices': {
    rolloutId: string;
    changes: readonly { deviceId: string; state: string; reason: string | null }[];
  };
  'rollout.verdict': {
    rolloutId: string;
    stage: string;
    stageIndex: number;
    verdict: 'pass' | 'fail' | 'inconclusive';
    reason: string;
    failingWindows: number;
    window: { index: number; from: number; to: number };
    timedOut: boolean;
    action: 'pause' | 'abort' | 'promote' | null;
    gates: readonly GateResultView[];
    evidence: Readonly<Record<string, number>>;
  };
  'rollout.advanced': RolloutTransitionEvent;
  'rollout.completed': RolloutTransitionEvent;
  'rollout.rolled-back': RolloutTransitionEvent;
  'rollout.aborted': RolloutTransitionEvent;
  'rollout.paused': RolloutTransitionEvent;
  'rollout.resumed': RolloutTransitionEvent;
  'rollout.promoted': RolloutTransitionEvent;
  /** A site's or device's drift band changed (a closed window was judged). */
  'drift.changed': DriftState & { previous: DriftBand; signals: readonly string[] };
  /** Drift raised a site's sampling, restored it, or found nothing to raise. */
  'drift.sampling': {
    site: string;
    action: 'raised' | 'restored' | 'left-as-changed' | 'nothing-to-raise';
    factor: number;
    reason: Readonly<Record<string, unknown>>;
  };
  /** A retraining run was fired, delivered, failed, retried, claimed or linked to its model. */
  'retraining.run': {
    runId: string;
    modelName: string;
    status: string;
    reason: string;
    datasetId: string;
    attempts: number;
    lastStatusCode: number | null;
    resultModelId: string | null;
  };
};

/** A change of a rollout's status or stage. `by` is the API token behind an operator action. */
export type RolloutTransitionEvent = {
  rolloutId: string;
  status: string;
  stage: string | null;
  stageIndex: number;
  reason: string;
  by?: string | null;
};

/** What changed a device's status: a status message (birth, will, shutdown), the broker, or silence. */
export type StatusCause = 'birth' | 'shutdown' | 'connection-lost' | 'connect' | 'disconnect' | 'silence' | 'revoked';

export type BusEventType = keyof BusEvents;

/** The bus carries exactly the server events of the SSE stream (protocol's list), no more, no less. */
export const BUS_EVENT_TYPES: readonly BusEventType[] = SERVER_EVENT_TYPES;
type SameEvents = [BusEventType] extends [ServerEventType]
  ? [ServerEventType] extends [BusEventType]
    ? true
    : 'a server event type has no bus event'
  : 'a bus event type is missing from protocol SERVER_EVENT_TYPES';
const sameEvents: SameEvents = true;
void sameEvents;

export type BusMessage<T extends BusEventType = BusEventType> = {
  [K in T]: { readonly id: number; readonly type: K; readonly at: number; readonly data: BusEvents[K] };
}[T];

export type BusListener = (message: BusMessage) => void;

/** An event another replica published (event-relay.ts), as it arrived. */
export type RelayedEvent = { readonly type: BusEventType; readonly at: number; readonly data: unknown };

export type EventBus = {
  publish<T extends BusEventType>(type: T, data: BusEvents[T]): void;
  /**
   * An event of another replica, for the listeners that asked for them (SSE clients). The
   * listeners inside this replica react to this replica's events only, so no event is acted on
   * twice; the relay never sees a relayed event again.
   */
  relay(event: RelayedEvent): void;
  /** Returns the unsubscribe function. `remote`: also receive other replicas' events (relay). */
  subscribe(listener: BusListener, options?: { readonly remote?: boolean }): () => void;
  readonly listenerCount: number;
  /** Listener exceptions so far. */
  readonly listenerErrors: number;
};

export function createEventBus(deps: { readonly clock: { now(): number } }): EventBus {
  const listeners = new Set<BusListener>();
  const remoteListeners = new Set<BusListener>();
  let nextId = 1;
  let listenerErrors = 0;
  const deliver = (to: Iterable<BusListener>, message: BusMessage) => {
    for (const listener of to) {
      try {
        listener(message);
      } catch {
        listenerErrors++;
      }
    }
  };
  return {
    publish(type, data) {
      deliver(listeners, { id: nextId++, type, at: deps.clock.now(), data } as BusMessage);
    },
    relay(event) {
      deliver(remoteListeners, { id: nextId++, type: event.type, at: event.at, data: event.data } as BusMessage);
    },
    subscribe(listener, options) {
      listeners.add(listener);
      if (options?.remote) remoteListeners.add(listener);
      return () => {
        listeners.delete(listener);
        remoteListeners.delete(listener);
      };
    },
    get listenerCount() {
      return listeners.size;
    },
    get listenerErrors() {
      return listenerErrors;
    },
  };
}

/** Statuses an event type reports. */
export function statusEventType(status: DeviceStatus): 'device.online' | 'device.offline' | null {
  if (status === 'online') return 'device.online';
  if (status === 'offline') return 'device.offline';
  return null;
}
