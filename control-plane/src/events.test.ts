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

  it("hands another replica's events to the listeners that asked for them, with this bus's ids", () => {
    const bus = createEventBus({ clock: { now: () => 7 } });
    const sse: string[] = [];
    const inside: string[] = [];
    const unsubscribe = bus.subscribe((m) => sse.push(`${m.id}:${m.type}:${m.at}`), { remote: true });
    bus.subscribe((m) => inside.push(`${m.id}:${m.type}`));
    bus.publish('device.revoked', { deviceId: 'cam-1' });
    bus.relay({ type: 'device.online', at: 3, data: { deviceId: 'cam-2', bootId: null, cause: 'birth' } });
    expect(sse).toEqual(['1:device.revoked:7', '2:device.online:3']);
    expect(inside).toEqual(['1:device.revoked']);
    unsubscribe();
    bus.relay({ type: 'device.online', at: 4, data: { deviceId: 'cam-3', bootId: null, cause: 'birth' } });
    expect(sse).toHaveLength(2);
    expect(bus.listenerCount).toBe(1);
  });

  it('publishes exactly the event types the SSE endpoint documents and filters on', () => {
    expect([...BUS_EVENT_TYPES].sort()).toEqual([...SERVER_EVENT_TYPES].sort());
  });
});
