import { SERVER_EVENT_TYPES } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { BUS_EVENT_TYPES, createEventBus } from './events.ts';

describe('event bus', () => {
  it('delivers typed events with increasing ids and isolates a throwing listener', () => {
    const bus = createEventBus({ clock: { now: () => 42 } });
    const seen: string[] = [];
    bus.subscribe(() => {
      throw new Error('boom');
    });
    const unsubscribe = bus.subscribe((message) => seen.push(`${message.id}:${message.type}:${message.at}`));
    bus.publish('device.revoked', { deviceId: 'cam-1' });
    bus.publish('device.enrolled', { deviceId: 'cam-2', labels: {} });
    unsubscribe();
    bus.publish('device.revoked', { deviceId: 'cam-3' });
    expect(seen).toEqual(['1:device.revoked:42', '2:device.enrolled:42']);
    expect(bus.listenerErrors).toBe(3);
    expect(bus.listenerCount).toBe(1);
  });

  it('publishes exactly the event types the SSE endpoint documents and filters on', () => {
    expect([...BUS_EVENT_TYPES].sort()).toEqual([...SERVER_EVENT_TYPES].sort());
  });
});
