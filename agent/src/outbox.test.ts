import type { DeviceToCloudChannel } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { createMemoryOutbox, ENTRY_OVERHEAD_BYTES, entryBytes, type Outbox } from './outbox.ts';

function add(outbox: Outbox, channel: DeviceToCloudChannel, id: string, payload = `{"id":"${id}"}`) {
  return outbox.append({ channel, msgId: id, payload });
}

const ids = (entries: { msgId: string }[]) => entries.map((entry) => entry.msgId);

describe('outbox core', () => {
  it('sends control before events before telemetry, FIFO within each lane', () => {
    const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
    add(outbox, 'telemetry', 't-1');
    add(outbox, 'events', 'e-1');
    add(outbox, 'telemetry', 't-2');
    add(outbox, 'status', 's-1');
    add(outbox, 'reply', 'r-1');
    add(outbox, 'events', 'e-2');
    add(outbox, 'reported', 'p-1');
    expect(ids(outbox.nextBatch(100))).toEqual(['s-1', 'r-1', 'p-1', 'e-1', 'e-2', 't-1', 't-2']);
  });

  it('hands out each waiting message once until it is released or requeued', () => {
    const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
    for (let i = 1; i <= 5; i += 1) add(outbox, 'telemetry', `t-${i}`);
    expect(ids(outbox.nextBatch(2))).toEqual(['t-1', 't-2']);
    expect(ids(outbox.nextBatch(2))).toEqual(['t-3', 't-4']);
    expect(outbox.release('t-2')).toBe(true);
    expect(ids(outbox.nextBatch(10))).toEqual(['t-2', 't-5']);
    expect(outbox.stats().inflight).toBe(5);
    expect(outbox.requeueInflight()).toBe(5);
    expect(outbox.stats().inflight).toBe(0);
    expect(ids(outbox.nextBatch(10))).toEqual(['t-1', 't-2', 't-3', 't-4', 't-5']);
  });

  it('removes a message on ack and keeps the others in order', () => {
    const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
    for (let i = 1; i <= 4; i += 1) add(outbox, 'events', `e-${i}`);
    outbox.nextBatch(4);
    expect(outbox.ack('e-2')).toBe(true);
    expect(outbox.ack('e-2')).toBe(false);
    expect(outbox.ack('unknown')).toBe(false);
    outbox.requeueInflight();
    expect(ids(outbox.nextBatch(10))).toEqual(['e-1', 'e-3', 'e-4']);
    expect(ids([...outbox.entries()])).toEqual(['e-1', 'e-3', 'e-4']);
    expect(outbox.stats()).toMatchObject({ pending: 3, acked: 1, appended: 4 });
  });

  it('does not ack a message that is waiting rather than in flight', () => {
    const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
    add(outbox, 'events', 'e-1');
    expect(outbox.ack('e-1')).toBe(false);
    expect(outbox.stats().pending).toBe(1);
  });

  it('counts bytes per lane and returns to zero when everything is acked', () => {
    const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
    add(outbox, 'telemetry', 't-1', 'x'.repeat(100));
    add(outbox, 'status', 's-1', 'é'.repeat(10));
    const stats = outbox.stats();
    expect(stats.lanes.telemetry).toEqual({ entries: 1, bytes: 100 + 3 + ENTRY_OVERHEAD_BYTES });
    expect(stats.lanes.control).toEqual({ entries: 1, bytes: 20 + 3 + ENTRY_OVERHEAD_BYTES });
    expect(stats.pendingBytes).toBe(stats.lanes.telemetry.bytes + stats.lanes.control.bytes);
    for (const entry of outbox.nextBatch(10)) outbox.ack(entry.msgId);
    expect(outbox.stats()).toMatchObject({ pending: 0, pendingBytes: 0, inflight: 0 });
  });

  it('drops the oldest telemetry first when full and keeps events', () => {
    const size = entryBytes('t-00', 'x'.repeat(84));
    const outbox = createMemoryOutbox({ maxBytes: size * 10 });
    for (let i = 0; i < 3; i += 1) add(outbox, 'events', `e-0${i}`, 'x'.repeat(84));
    for (let i = 0; i < 7; i += 1) add(outbox, 'telemetry', `t-0${i}`, 'x'.repeat(84));
    expect(outbox.stats().pendingBytes).toBe(size * 10);
    const result = add(outbox, 'telemetry', 't-07', 'x'.repeat(84));
    expect(result).toEqual({ accepted: true, evicted: 1 });
    add(outbox, 'events', 'e-03', 'x'.repeat(84));
    expect(ids([...outbox.entries()])).toEqual([
      'e-00',
      'e-01',
      'e-02',
      'e-03',
      't-02',
      't-03',
      't-04',
      't-05',
      't-06',
      't-07',
    ]);
    expect(outbox.stats().dropped).toEqual({ telemetry: 2, events: 0, control: 0 });
    expect(outbox.stats().pendingBytes).toBeLessThanOrEqual(size * 10);
  });

  it('drops the oldest events only when no telemetry is left, and control last', () => {
    const size = entryBytes('x-00', 'x'.repeat(84));
    const outbox = createMemoryOutbox({ maxBytes: size * 4 });
    add(outbox, 'telemetry', 't-00', 'x'.repeat(84));
    add(outbox, 'status', 's-00', 'x'.repeat(84));
    add(outbox, 'events', 'e-00', 'x'.repeat(84));
    add(outbox, 'events', 'e-01', 'x'.repeat(84));
    add(outbox, 'events', 'e-02', 'x'.repeat(84)); // evicts t-00
    add(outbox, 'events', 'e-03', 'x'.repeat(84)); // no telemetry left: evicts e-00
    expect(ids([...outbox.entries()])).toEqual(['s-00', 'e-01', 'e-02', 'e-03']);
    add(outbox, 'reply', 'r-00', 'x'.repeat(84)); // control evicts the oldest event
    expect(ids([...outbox.entries()])).toEqual(['s-00', 'r-00', 'e-02', 'e-03']);
    add(outbox, 'reply', 'r-01', 'x'.repeat(84));
    add(outbox, 'reply', 'r-02', 'x'.repeat(84));
    add(outbox, 'reply', 'r-03', 'x'.repeat(84)); // only control left: the oldest control goes
    expect(ids([...outbox.entries()])).toEqual(['r-00', 'r-01', 'r-02', 'r-03']);
    expect(outbox.stats().dropped).toEqual({ telemetry: 1, events: 4, control: 1 });
  });

  it('drops incoming telemetry rather than evicting events or control', () => {
    const size = entryBytes('x-00', 'x'.repeat(84));
    const outbox = createMemoryOutbox({ maxBytes: size * 2 });
    add(outbox, 'events', 'e-00', 'x'.repeat(84));
    add(outbox, 'status', 's-00', 'x'.repeat(84));
    expect(add(outbox, 'telemetry', 't-00', 'x'.repeat(84))).toEqual({ accepted: false, evicted: 0 });
    expect(ids([...outbox.entries()])).toEqual(['s-00', 'e-00']);
    expect(outbox.stats().dropped).toEqual({ telemetry: 1, events: 0, control: 0 });
  });

  it('never evicts messages in flight', () => {
    const size = entryBytes('t-00', 'x'.repeat(84));
    const outbox = createMemoryOutbox({ maxBytes: size * 2 });
    add(outbox, 'telemetry', 't-00', 'x'.repeat(84));
    add(outbox, 'telemetry', 't-01', 'x'.repeat(84));
    outbox.nextBatch(2);
    expect(add(outbox, 'telemetry', 't-02', 'x'.repeat(84)).accepted).toBe(false);
    expect(outbox.ack('t-00')).toBe(true);
    expect(add(outbox, 'telemetry', 't-02', 'x'.repeat(84)).accepted).toBe(true);
    expect(ids([...outbox.entries()])).toEqual(['t-01', 't-02']);
  });

  it('refuses a message larger than the bound or the protocol payload limit', () => {
    const outbox = createMemoryOutbox({ maxBytes: 1000 });
    expect(add(outbox, 'events', 'e-big', 'x'.repeat(2000)).accepted).toBe(false);
    const roomy = createMemoryOutbox({ maxBytes: 8 << 20 });
    expect(add(roomy, 'events', 'e-huge', 'x'.repeat(300 * 1024)).accepted).toBe(false);
    expect(roomy.stats().dropped.events).toBe(1);
  });

  it('keeps working over many cycles without growing its queues', () => {
    const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
    for (let round = 0; round < 2000; round += 1) {
      add(outbox, 'telemetry', `t-${round}`);
      add(outbox, 'events', `e-${round}`);
      for (const entry of outbox.nextBatch(1)) outbox.ack(entry.msgId);
    }
    // One ack per round of two appends: the backlog is the telemetry lane, FIFO.
    expect(outbox.stats().pending).toBe(2000);
    const first = outbox.nextBatch(3);
    expect(ids(first)).toEqual(['t-0', 't-1', 't-2']);
  });

  it('refuses appends after close and counts them as dropped', () => {
    const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
    outbox.close();
    expect(add(outbox, 'events', 'e-1').accepted).toBe(false);
    expect(outbox.stats().dropped.events).toBe(1);
  });
});
