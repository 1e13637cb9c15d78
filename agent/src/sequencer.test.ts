import { Envelope } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { createBootId, createSequencer, willEnvelope } from './sequencer.ts';

describe('sequencer', () => {
  it('numbers messages from 1 with msgIds built from the boot id and the clock time', () => {
    let now = 1000;
    const sequencer = createSequencer({ clock: { now: () => now }, bootId: 'boot-abcdefgh' });
    expect(sequencer.lastSeq).toBe(0);
    expect(sequencer.next()).toEqual({ msgId: 'boot-abcdefgh-1', bootId: 'boot-abcdefgh', seq: 1, ts: 1000 });
    now = 2000;
    expect(sequencer.next()).toEqual({ msgId: 'boot-abcdefgh-2', bootId: 'boot-abcdefgh', seq: 2, ts: 2000 });
    expect(sequencer.lastSeq).toBe(2);
  });

  it('draws a new random boot id per sequencer that the protocol accepts', () => {
    const clock = { now: () => 0 };
    const a = createSequencer({ clock });
    const b = createSequencer({ clock });
    expect(a.bootId).not.toBe(b.bootId);
    expect(a.bootId.length).toBeGreaterThanOrEqual(16);
    expect(Envelope.safeParse(a.next()).success).toBe(true);
    expect(createBootId(() => new Uint8Array(12))).toBe('AAAAAAAAAAAAAAAA');
  });

  it('gives the will seq 0 and a msgId per connection attempt', () => {
    const will = willEnvelope('boot-abcdefgh', 3, 5);
    expect(will).toEqual({ msgId: 'boot-abcdefgh-will-3', bootId: 'boot-abcdefgh', seq: 0, ts: 5 });
    expect(Envelope.safeParse(will).success).toBe(true);
  });
});
