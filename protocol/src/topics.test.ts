import { describe, expect, it } from 'vitest';
import { fleetFilter, parseTopic, topicFor } from './topics.ts';

describe('topics', () => {
  it('builds and parses every channel of a device', () => {
    for (const channel of ['status', 'telemetry', 'events', 'reported', 'reply', 'desired', 'cmd'] as const) {
      const topic = topicFor('cam-001', channel);
      expect(topic).toBe(`fleet/v1/devices/cam-001/${channel}`);
      expect(parseTopic(topic)).toEqual({ deviceId: 'cam-001', channel });
    }
  });

  it.each([
    'fleet/v1/devices/cam-001',
    'fleet/v1/devices/cam-001/telemetry/extra',
    'fleet/v1/devices/+/telemetry',
    'fleet/v1/devices/#',
    'fleet/v1/devices/cam-001/unknown',
    'fleet/v2/devices/cam-001/telemetry',
    '$SYS/broker/clients',
    '#',
    '',
    'fleet/v1/devices//telemetry',
    'fleet/v1/devices/__proto__/telemetry',
    'fleet/v1/devices/constructor/status',
    `fleet/v1/devices/${'a'.repeat(200)}/status`,
  ])('does not parse %j as a device topic', (topic) => {
    expect(parseTopic(topic)).toBeNull();
  });

  it('builds ingest filters, shared when a group is named', () => {
    expect(fleetFilter('telemetry')).toBe('fleet/v1/devices/+/telemetry');
    expect(fleetFilter('telemetry', 'edgeloop')).toBe('$share/edgeloop/fleet/v1/devices/+/telemetry');
  });
});
