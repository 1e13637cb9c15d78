import type { Reply } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { createCommandWaiters } from './command-waiters.ts';

const reply = (requestId: string): Reply => ({
  msgId: 'boot0001-9',
  bootId: 'boot0001',
  seq: 9,
  ts: 1,
  requestId,
  ok: true,
  data: { pong: true },
});

describe('command waiters', () => {
  it('hands a reply to the waiter of the same device and requestId only', async () => {
    const waiters = createCommandWaiters();
    const waiting = waiters.wait('cam-1', 'req-1', 5_000);
    expect(waiters.resolve('cam-2', reply('req-1'))).toBe(false);
    expect(waiters.resolve('cam-1', reply('req-1'))).toBe(true);
    expect(await waiting).toEqual(reply('req-1'));
    expect(waiters.resolve('cam-1', reply('req-1'))).toBe(false);
    expect(waiters.size).toBe(0);
  });

  it('gives up after the timeout, on abort, and on cancelAll', async () => {
    const waiters = createCommandWaiters();
    expect(await waiters.wait('cam-1', 'late', 10)).toBeNull();
    const controller = new AbortController();
    const aborted = waiters.wait('cam-1', 'aborted', 5_000, controller.signal);
    controller.abort();
    expect(await aborted).toBeNull();
    const cancelled = waiters.wait('cam-1', 'cancelled', 5_000);
    waiters.cancelAll();
    expect(await cancelled).toBeNull();
    expect(waiters.size).toBe(0);
  });
});
