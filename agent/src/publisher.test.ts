import { decode } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { createMemoryOutbox } from './outbox.ts';
import { createPublisher } from './publisher.ts';
import { createSequencer } from './sequencer.ts';

function setup(maxBytes = 1 << 20) {
  const outbox = createMemoryOutbox({ maxBytes });
  const sequencer = createSequencer({ clock: { now: () => 42 }, bootId: 'boot-publisher' });
  let flushed = 0;
  const publisher = createPublisher({ sequencer, outbox, afterAppend: () => (flushed += 1) });
  return { outbox, sequencer, publisher, flushed: () => flushed };
}

describe('publisher', () => {
  it('stamps the envelope, encodes a valid message and appends it to its lane', () => {
    const { outbox, publisher, flushed } = setup();
    const result = publisher.publish('events', { type: 'agent.started', severity: 'info' });
    expect(result).toEqual({
      ok: true,
      value: { msgId: 'boot-publisher-1', bootId: 'boot-publisher', seq: 1, ts: 42 },
    });
    const [entry] = outbox.nextBatch(1);
    expect(entry).toMatchObject({ lane: 'events', channel: 'events', retain: false, msgId: 'boot-publisher-1' });
    const decoded = decode('events', entry!.payload);
    expect(decoded.ok && decoded.value).toMatchObject({ type: 'agent.started', data: {}, seq: 1 });
    expect(flushed()).toBe(1);
  });

  it('marks status messages retained and puts them on the control lane', () => {
    const { outbox, publisher } = setup();
    publisher.publish('status', { state: 'online', reason: 'birth' });
    expect(outbox.nextBatch(1)[0]).toMatchObject({ lane: 'control', retain: true });
  });

  it('refuses an invalid body without using a seq number', () => {
    const { outbox, publisher, sequencer } = setup();
    const result = publisher.publish('events', { type: 'Not Valid', severity: 'info' });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.code).toBe('invalid_message');
    expect(sequencer.lastSeq).toBe(0);
    expect(outbox.stats().pending).toBe(0);
    expect(publisher.stats()).toEqual({ published: 0, invalid: 1, dropped: 0 });
  });

  it('reports a message the outbox bound dropped', () => {
    const { publisher } = setup(64);
    const result = publisher.publish('events', { type: 'agent.started', severity: 'info', message: 'x'.repeat(100) });
    expect(!result.ok && result.error.code).toBe('dropped');
    expect(publisher.stats().dropped).toBe(1);
  });
});
