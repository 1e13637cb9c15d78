import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openFileOutbox, outboxDiskBytes, readOutboxDir, SEGMENT_MAGIC, scanSegment } from './outbox-file.ts';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-outbox-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function open(options: { maxBytes?: number; compactMinBytes?: number } = {}) {
  return openFileOutbox({
    dir,
    maxBytes: options.maxBytes ?? 1 << 20,
    fsync: 'always',
    ...(options.compactMinBytes ? { compactMinBytes: options.compactMinBytes } : {}),
  });
}

function onlySegment(): string {
  const files = readdirSync(dir).filter((name) => name.endsWith('.log'));
  expect(files).toHaveLength(1);
  return path.join(dir, files[0]!);
}

const ids = (entries: { msgId: string }[]) => entries.map((entry) => entry.msgId);

describe('file outbox', () => {
  it('brings back every unacknowledged message after a reopen, in order, and not the acked ones', () => {
    const outbox = open();
    for (let i = 1; i <= 6; i += 1) {
      outbox.append({ channel: 'telemetry', msgId: `boot-${i}`, payload: `{"n":${i}}` });
    }
    outbox.append({ channel: 'status', msgId: 'boot-7', payload: '{"state":"online"}', retain: true });
    const batch = outbox.nextBatch(3);
    expect(ids(batch)).toEqual(['boot-7', 'boot-1', 'boot-2']);
    outbox.ack('boot-7');
    outbox.ack('boot-2');
    outbox.close();

    const reopened = open();
    const entries = [...reopened.entries()];
    expect(ids(entries)).toEqual(['boot-1', 'boot-3', 'boot-4', 'boot-5', 'boot-6']);
    expect(entries[0]).toMatchObject({ channel: 'telemetry', lane: 'telemetry', payload: '{"n":1}', retain: false });
    expect(reopened.recovery).toMatchObject({ corruptRecords: 0, tornTailBytes: 0, pending: 5 });
    reopened.close();
  });

  it('keeps the retain flag and channel of a stored message', () => {
    const outbox = open();
    outbox.append({ channel: 'status', msgId: 'boot-1', payload: '{"s":1}', retain: true });
    outbox.close();
    const { entries } = readOutboxDir(dir);
    expect(entries).toEqual([
      { msgId: 'boot-1', lane: 'control', channel: 'status', payload: '{"s":1}', retain: true },
    ]);
  });

  it('discards a torn last record and keeps every earlier one', () => {
    const outbox = open();
    for (let i = 1; i <= 5; i += 1) outbox.append({ channel: 'events', msgId: `boot-${i}`, payload: `{"n":${i}}` });
    outbox.close();
    const file = onlySegment();
    const size = readFileSync(file).length;
    truncateSync(file, size - 3);

    const { entries, recovery } = readOutboxDir(dir);
    expect(ids(entries)).toEqual(['boot-1', 'boot-2', 'boot-3', 'boot-4']);
    expect(recovery.tornTailBytes).toBeGreaterThan(0);
    expect(recovery.corruptRecords).toBe(0);

    const reopened = open();
    expect(ids([...reopened.entries()])).toEqual(['boot-1', 'boot-2', 'boot-3', 'boot-4']);
    reopened.append({ channel: 'events', msgId: 'boot-6', payload: '{}' });
    reopened.close();
    // The torn bytes are gone after the reopen compacted the log.
    expect(readOutboxDir(dir).recovery.tornTailBytes).toBe(0);
    expect(ids(readOutboxDir(dir).entries)).toEqual(['boot-1', 'boot-2', 'boot-3', 'boot-4', 'boot-6']);
  });

  it('skips a record with a corrupted byte in the middle, counts it and keeps the rest', () => {
    const outbox = open();
    for (let i = 1; i <= 5; i += 1) {
      outbox.append({
        channel: 'telemetry',
        msgId: `boot-${i}`,
        payload: JSON.stringify({ n: i, pad: 'x'.repeat(40) }),
      });
    }
    outbox.close();
    const file = onlySegment();
    const bytes = readFileSync(file);
    const third = bytes.indexOf('"n":3');
    expect(third).toBeGreaterThan(0);
    bytes[third + 2] = bytes[third + 2]! ^ 0xff;
    writeFileSync(file, bytes);

    const reopened = open();
    expect(ids([...reopened.entries()])).toEqual(['boot-1', 'boot-2', 'boot-4', 'boot-5']);
    expect(reopened.recovery.corruptRecords).toBe(1);
    expect(reopened.recovery.skippedBytes).toBeGreaterThan(40);
    expect(reopened.recovery.tornTailBytes).toBe(0);
    reopened.close();
  });

  it('recovers records after a corrupted length field', () => {
    const outbox = open();
    for (let i = 1; i <= 4; i += 1) outbox.append({ channel: 'events', msgId: `boot-${i}`, payload: `{"n":${i}}` });
    outbox.close();
    const file = onlySegment();
    const bytes = readFileSync(file);
    const scan = scanSegment(bytes);
    expect(scan.records).toHaveLength(4);
    // The second record starts right after the first: magic + header + body.
    const firstLength = bytes.readUInt32LE(SEGMENT_MAGIC.length);
    const second = SEGMENT_MAGIC.length + 8 + firstLength;
    bytes.writeUInt32LE(0x7fffffff, second);
    writeFileSync(file, bytes);
    const { entries, recovery } = readOutboxDir(dir);
    expect(ids(entries)).toEqual(['boot-1', 'boot-3', 'boot-4']);
    expect(recovery.corruptRecords).toBe(1);
  });

  it('ignores a zero-filled tail left by a power cut', () => {
    const outbox = open();
    outbox.append({ channel: 'events', msgId: 'boot-1', payload: '{}' });
    outbox.close();
    const file = onlySegment();
    writeFileSync(file, Buffer.concat([readFileSync(file), Buffer.alloc(4096)]));
    const { entries, recovery } = readOutboxDir(dir);
    expect(ids(entries)).toEqual(['boot-1']);
    expect(recovery.tornTailBytes).toBe(4096);
  });

  it('ignores files that are not outbox segments', () => {
    writeFileSync(path.join(dir, 'segment-0000000000000001.log'), 'not an outbox');
    const outbox = open();
    expect(outbox.recovery.badSegments).toBe(1);
    outbox.append({ channel: 'events', msgId: 'boot-1', payload: '{}' });
    outbox.close();
    expect(ids(readOutboxDir(dir).entries)).toEqual(['boot-1']);
  });

  it('does not bring back messages the byte bound dropped', () => {
    const outbox = open({ maxBytes: 64 * 1024 });
    const payload = JSON.stringify({ pad: 'x'.repeat(1000) });
    for (let i = 1; i <= 100; i += 1) outbox.append({ channel: 'telemetry', msgId: `boot-${i}`, payload });
    const kept = ids([...outbox.entries()]);
    expect(outbox.stats().dropped.telemetry).toBe(100 - kept.length);
    expect(kept.at(-1)).toBe('boot-100');
    outbox.close();
    expect(ids(readOutboxDir(dir).entries)).toEqual(kept);
  });

  it('applies a smaller byte bound to the messages it reopens with', () => {
    const outbox = open({ maxBytes: 1 << 20 });
    const payload = JSON.stringify({ pad: 'x'.repeat(1000) });
    for (let i = 1; i <= 100; i += 1) outbox.append({ channel: 'telemetry', msgId: `boot-${i}`, payload });
    outbox.close();
    const smaller = open({ maxBytes: 64 * 1024 });
    expect(smaller.stats().pendingBytes).toBeLessThanOrEqual(64 * 1024);
    expect(smaller.stats().dropped.telemetry).toBeGreaterThan(30);
    expect(ids([...smaller.entries()]).at(-1)).toBe('boot-100');
    smaller.close();
  });

  it('keeps disk use bounded by compacting once messages are acknowledged', () => {
    const outbox = open({ compactMinBytes: 64 * 1024 });
    const payload = JSON.stringify({ pad: 'x'.repeat(500) });
    for (let i = 1; i <= 2000; i += 1) {
      outbox.append({ channel: 'telemetry', msgId: `boot-${i}`, payload });
      if (i % 10 !== 0) for (const entry of outbox.nextBatch(1)) outbox.ack(entry.msgId);
    }
    // 200 messages stay pending (one in ten appends is not acked in its round).
    const stats = outbox.stats();
    expect(stats.pending).toBe(200);
    expect(stats.journal?.compactions).toBeGreaterThan(2);
    const disk = outboxDiskBytes(dir);
    expect(disk).toBeLessThan(Math.max(64 * 1024, 2 * stats.pendingBytes) + 2048);
    outbox.close();
    expect(readOutboxDir(dir).entries).toHaveLength(200);
  });

  it('fsyncs every append under the always policy and on a timer under the interval policy', async () => {
    const always = open();
    for (let i = 1; i <= 3; i += 1) always.append({ channel: 'events', msgId: `boot-${i}`, payload: '{}' });
    expect(always.stats().journal?.fsyncs).toBe(3);
    always.close();

    const intervalDir = path.join(dir, 'interval');
    const interval = openFileOutbox({ dir: intervalDir, maxBytes: 1 << 20, fsync: 'interval', fsyncIntervalMs: 10 });
    interval.append({ channel: 'events', msgId: 'boot-9', payload: '{}' });
    expect(interval.stats().journal?.fsyncs).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(interval.stats().journal?.fsyncs).toBe(1);
    interval.close();
    expect(ids(readOutboxDir(intervalDir).entries)).toEqual(['boot-9']);
  });

  it('reopens an outbox several times without losing or duplicating anything', () => {
    let expected: string[] = [];
    for (let round = 0; round < 5; round += 1) {
      const outbox = open();
      for (let i = 0; i < 10; i += 1) {
        const id = `boot${round}-${i}`;
        outbox.append({ channel: i % 2 ? 'events' : 'telemetry', msgId: id, payload: '{}' });
        expected.push(id);
      }
      const batch = outbox.nextBatch(4);
      for (const entry of batch) outbox.ack(entry.msgId);
      const acked = new Set(ids(batch));
      expected = expected.filter((id) => !acked.has(id));
      outbox.close();
    }
    const { entries } = readOutboxDir(dir);
    expect(new Set(ids(entries))).toEqual(new Set(expected));
    expect(entries).toHaveLength(expected.length);
  });
});
