import {
  CHANNEL_SCHEMAS,
  type DeviceToCloudChannel,
  describeIssues,
  type Envelope,
  fail,
  type MessageInputOf,
  ok,
  type Result,
} from '@edgeloop/protocol';
import type { Outbox } from './outbox.ts';
import type { Sequencer } from './sequencer.ts';

type EnvelopeKey = keyof Envelope;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A message body: what a channel's message holds besides the envelope the publisher stamps. */
export type MessageBody<C extends DeviceToCloudChannel> = DistributiveOmit<MessageInputOf<C>, EnvelopeKey>;

export type PublishError = 'invalid_message' | 'dropped';

export type PublisherStats = {
  readonly published: number;
  readonly invalid: number;
  readonly dropped: number;
};

/**
 * The one way the agent sends: validates a body against its channel's schema, stamps the
 * envelope from the sequencer and appends the encoded message to the outbox (which the link
 * drains). A body that fails validation takes no seq, so seq gaps mean outbox drops only.
 */
export interface Publisher {
  publish<C extends DeviceToCloudChannel>(channel: C, body: MessageBody<C>): Result<Envelope, PublishError>;
  stats(): PublisherStats;
}

export type PublisherDeps = {
  readonly sequencer: Sequencer;
  readonly outbox: Outbox;
  /** Called after every accepted append (the agent wires the link's `flush`). */
  readonly afterAppend?: () => void;
};

/** Channels whose messages the broker keeps (the last status of a device). */
const RETAINED: ReadonlySet<DeviceToCloudChannel> = new Set(['status']);

export function createPublisher(deps: PublisherDeps): Publisher {
  return new OutboxPublisher(deps);
}

class OutboxPublisher implements Publisher {
  readonly #deps: PublisherDeps;
  #published = 0;
  #invalid = 0;
  #dropped = 0;

  constructor(deps: PublisherDeps) {
    this.#deps = deps;
  }

  publish<C extends DeviceToCloudChannel>(channel: C, body: MessageBody<C>): Result<Envelope, PublishError> {
    const { sequencer, outbox } = this.#deps;
    const placeholder = { msgId: 'placeholder', bootId: sequencer.bootId, seq: 0, ts: 0 };
    const parsed = CHANNEL_SCHEMAS[channel].safeParse({ ...(body as object), ...placeholder });
    if (!parsed.success) {
      this.#invalid += 1;
      return fail('invalid_message', `${channel}: ${describeIssues(parsed.error.issues)}`);
    }
    const envelope = sequencer.next();
    const message = Object.assign(parsed.data as Record<string, unknown>, envelope);
    const result = outbox.append({
      channel,
      msgId: envelope.msgId,
      payload: JSON.stringify(message),
      retain: RETAINED.has(channel),
    });
    if (!result.accepted) {
      this.#dropped += 1;
      return fail('dropped', `${channel} message ${envelope.msgId} dropped by the outbox bound`);
    }
    this.#published += 1;
    this.#deps.afterAppend?.();
    return ok(envelope);
  }

  stats(): PublisherStats {
    return { published: this.#published, invalid: this.#invalid, dropped: this.#dropped };
  }
}
