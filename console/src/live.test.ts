import type { DeviceView, ServerEvent } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import {
  applyDevicePatches,
  createEventHub,
  createFrameBatcher,
  createThrottle,
  devicePatches,
  touchesFleet,
} from './live.ts';

const event = (type: ServerEvent['type'], data: ServerEvent['data'], at = 1): ServerEvent => ({ type, at, data });

const row = (id: string): DeviceView => ({
  id,
  labels: {},
  status: 'online',
  health: 'healthy',
  healthReasons: [],
  lastSeen: 0,
  enrolledAt: 0,
  bootId: null,
  agentVersion: null,
});

describe('createFrameBatcher', () => {
  it('hands every item pushed before a frame to one flush', () => {
    const frames: (() => void)[] = [];
    const flushed: number[][] = [];
    const batcher = createFrameBatcher<number>(
      (items) => flushed.push(items),
      (run) => frames.push(run),
    );
    for (let i = 0; i < 1000; i++) batcher.push(i);
    expect(frames).toHaveLength(1);
    frames.shift()!();
    batcher.push(1000);
    frames.shift()!();
    expect(flushed.map((items) => items.length)).toEqual([1000, 1]);
  });
});

describe('devicePatches', () => {
  it('folds a batch into one patch per device, later events winning', () => {
    const patches = devicePatches([
      event('device.offline', { deviceId: 'a' }),
      event('device.health', { deviceId: 'a', health: 'offline', reasons: ['offline'] }),
      event('device.online', { deviceId: 'b' }, 7),
      event('device.offline', { deviceId: 'b' }),
      event('rollout.created', { id: 'r1' }),
    ]);
    expect(Object.fromEntries(patches)).toEqual({
      a: { status: 'offline', health: 'offline', healthReasons: ['offline'] },
      b: { status: 'offline', lastSeen: 7 },
    });
  });

  it('changes only the rows a patch names and keeps the array when none', () => {
    const rows = [row('a'), row('b')];
    const next = applyDevicePatches(rows, new Map([['b', { status: 'offline' as const }]]));
    expect(next.map((r) => r.status)).toEqual(['online', 'offline']);
    expect(next[0]).toBe(rows[0]);
    expect(applyDevicePatches(rows, new Map([['zz', { status: 'offline' as const }]]))).toBe(rows);
  });

  it('tells fleet-changing batches from others', () => {
    expect(touchesFleet([event('device.reported', { deviceId: 'a' })])).toBe(false);
    expect(touchesFleet([event('device.enrolled', { deviceId: 'a' })])).toBe(true);
  });
});

describe('createThrottle', () => {
  it('runs at once, then at most once per interval with the last call trailing', () => {
    let now = 0;
    const timers: { fn: () => void; at: number }[] = [];
    let runs = 0;
    const throttled = createThrottle(() => runs++, 1000, {
      now: () => now,
      setTimeout: (fn, ms) => timers.push({ fn, at: now + ms }),
    });
    throttled();
    throttled();
    throttled();
    expect(runs).toBe(1);
    expect(timers).toHaveLength(1);
    now = timers[0]!.at;
    timers.shift()!.fn();
    expect(runs).toBe(2);
  });
});

describe('createEventHub', () => {
  it('reopens a failed stream and delivers events in frame batches', async () => {
    let opens = 0;
    const frames: (() => void)[] = [];
    const batches: string[][] = [];
    const hub = createEventHub({
      async *open(_signal, onOpen) {
        opens++;
        if (opens === 1) throw new Error('refused');
        onOpen();
        yield event('device.online', { deviceId: 'a' });
        yield event('device.offline', { deviceId: 'a' });
        await new Promise(() => {});
      },
      schedule: (run) => frames.push(run),
      sleep: () => Promise.resolve(),
    });
    hub.subscribe((batch) => batches.push(batch.map((e) => e.type)));
    await expect.poll(() => frames.length).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 0));
    frames.shift()!();
    expect(opens).toBe(2);
    expect(batches).toEqual([['device.online', 'device.offline']]);
    expect(hub.state()).toBe('live');
    hub.stop();
  });
});
