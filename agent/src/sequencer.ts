import { randomBytes } from 'node:crypto';
import { type Envelope, messageId } from '@edgeloop/protocol';
import type { Clock } from './clock.ts';

/**
 * The per-boot envelope source. Every message the agent publishes takes its (bootId, seq) from the
 * one sequencer of its process, so the control plane can order a device's messages by
 * (bootId, seq) whatever the arrival order. The last will is the exception: the broker publishes
 * it, so it carries seq 0 (see `willEnvelope`).
 */
export interface Sequencer {
  readonly bootId: string;
  /** The seq the last `next()` handed out (0 before the first). */
  readonly lastSeq: number;
  next(): Envelope;
}

export type SequencerDeps = {
  readonly clock: Clock;
  /** A fixed boot id (tests); random otherwise. */
  readonly bootId?: string;
  /** Random bytes source (tests, simulator); node:crypto otherwise. */
  readonly randomBytes?: (size: number) => Uint8Array;
};

/** 12 random bytes as base64url: 16 characters, 96 bits, valid as a protocol BootId. */
export function createBootId(random: (size: number) => Uint8Array = randomBytes): string {
  return Buffer.from(random(12)).toString('base64url');
}

export function createSequencer(deps: SequencerDeps): Sequencer {
  return new BootSequencer(deps.bootId ?? createBootId(deps.randomBytes), deps.clock);
}

class BootSequencer implements Sequencer {
  readonly bootId: string;
  readonly #clock: Clock;
  #seq = 0;

  constructor(bootId: string, clock: Clock) {
    this.bootId = bootId;
    this.#clock = clock;
  }

  get lastSeq(): number {
    return this.#seq;
  }

  next(): Envelope {
    this.#seq += 1;
    return { msgId: messageId(this.bootId, this.#seq), bootId: this.bootId, seq: this.#seq, ts: this.#clock.now() };
  }
}

/**
 * The envelope of the last will registered with connection attempt `connection` (1, 2, ...).
 * It lies outside the per-boot sequence: seq 0 and msgId `${bootId}-will-${connection}`.
 */
export function willEnvelope(bootId: string, connection: number, ts: number): Envelope {
  return { msgId: `${bootId}-will-${connection}`, bootId, seq: 0, ts };
}
