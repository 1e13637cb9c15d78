import { AgentConfig } from '@edgeloop/agent';
import { describe, expect, it } from 'vitest';
import { createInterner, shareConfigSections } from './shared-config.ts';

const parse = (deviceId: string, password: string, intervalS = 10) =>
  AgentConfig.parse({
    deviceId,
    mqtt: { url: 'mqtt://127.0.0.1:1883', password, keepaliveS: 60 },
    dataDir: '/nonexistent/simulated',
    telemetry: { intervalS },
    hardware: { profile: 'rpi5' },
    logLevel: 'silent',
  });

describe('shareConfigSections', () => {
  it('gives two devices the same section objects and keeps what differs per device their own', () => {
    const intern = createInterner();
    const a = shareConfigSections(parse('dev-a', 'secret-a'), intern);
    const b = shareConfigSections(parse('dev-b', 'secret-b'), intern);
    expect(b.telemetry).toBe(a.telemetry);
    expect(b.outbox).toBe(a.outbox);
    expect(b.hardware).toBe(a.hardware);
    expect(b.models).toBe(a.models);
    expect(b.mqtt.reconnect).toBe(a.mqtt.reconnect);
    expect(b.mqtt).not.toBe(a.mqtt);
    expect([a.deviceId, a.mqtt.username, a.mqtt.password]).toEqual(['dev-a', 'dev-a', 'secret-a']);
    expect([b.deviceId, b.mqtt.username, b.mqtt.password]).toEqual(['dev-b', 'dev-b', 'secret-b']);
  });

  it('leaves the config equal to what AgentConfig.parse returned', () => {
    const parsed = parse('dev-a', 'secret-a');
    expect(shareConfigSections(structuredClone(parsed), createInterner())).toEqual(parsed);
  });

  it('keeps a section that differs apart (another telemetry interval is not the shared one)', () => {
    const intern = createInterner();
    const a = shareConfigSections(parse('dev-a', 'x', 10), intern);
    const b = shareConfigSections(parse('dev-b', 'x', 30), intern);
    expect(b.telemetry).not.toBe(a.telemetry);
    expect(b.telemetry.intervalS).toBe(30);
    expect(b.outbox).toBe(a.outbox);
  });

  it('freezes a shared section, so a device that changes it throws instead of changing its neighbours', () => {
    const a = shareConfigSections(parse('dev-a', 'x'), createInterner());
    expect(() => {
      (a.telemetry as { intervalS: number }).intervalS = 1;
    }).toThrow(TypeError);
    expect(() => {
      (a.models.trustedKeyPems as string[]).push('pem');
    }).toThrow(TypeError);
  });
});

describe('createInterner', () => {
  it('stops keeping new values past its limit and returns them as they are', () => {
    const intern = createInterner(1);
    const first = intern({ n: 1 });
    expect(intern({ n: 1 })).toBe(first);
    const other = { n: 2 };
    expect(intern(other)).toBe(other);
    expect(intern({ n: 2 })).not.toBe(other);
    expect(Object.isFrozen(other)).toBe(false);
  });
});
