import { describe, expect, it } from 'vitest';
import { decode, encode, MAX_PAYLOAD_BYTES } from './codec.ts';
import { messageId } from './messages.ts';

const envelope = { msgId: messageId('boot0001', 1), bootId: 'boot0001', seq: 1, ts: 1_700_000_000_000 };
const system = {
  cpu: { loadPct: 12.5, cores: 6 },
  memory: { usedBytes: 1e9, totalBytes: 8e9 },
  disk: { usedBytes: 5e9, totalBytes: 64e9 },
  temperatures: { cpuC: 48.2, gpuC: null },
  uptimeS: 120,
};

describe('decode', () => {
  it('decodes a valid telemetry message and fills defaults', () => {
    const result = decode('telemetry', JSON.stringify({ ...envelope, intervalS: 10, system }));
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.value.system.temperatures.zones).toEqual({});
  });

  it('round-trips through encode', () => {
    const text = encode('status', { ...envelope, state: 'online', reason: 'birth', keepaliveS: 30 });
    const result = decode('status', new TextEncoder().encode(text));
    expect(result).toEqual({ ok: true, value: { ...envelope, state: 'online', reason: 'birth', keepaliveS: 30 } });
  });

  it.each([
    ['invalid_json', '{"msgId":'],
    ['invalid_json', ''],
    ['invalid_schema', '{}'],
    ['invalid_schema', 'null'],
    ['invalid_schema', '[1,2]'],
    ['invalid_schema', JSON.stringify({ ...envelope, seq: -1, intervalS: 10, system })],
    ['invalid_schema', JSON.stringify({ ...envelope, msgId: 'bad id with spaces', intervalS: 10, system })],
  ])('rejects with %s: %j', (code, text) => {
    const result = decode('telemetry', text);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.code).toBe(code);
      expect(result.error.message.length).toBeGreaterThan(0);
    }
  });

  it('rejects a payload over the size limit before parsing it', () => {
    const big = new Uint8Array(1024 * 1024).fill(0x20);
    const result = decode('events', big);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.code).toBe('payload_too_large');
    expect(MAX_PAYLOAD_BYTES).toBeLessThan(big.byteLength);
  });

  it('rejects bytes that are not UTF-8', () => {
    const result = decode('events', new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.code).toBe('invalid_utf8');
  });

  it('never throws on random bytes', () => {
    let seed = 42;
    const next = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 2000; i++) {
      const bytes = new Uint8Array(next() % 64);
      for (let j = 0; j < bytes.length; j++) bytes[j] = next() & 0xff;
      for (const channel of ['status', 'telemetry', 'events', 'reported', 'reply', 'desired', 'cmd'] as const) {
        expect(() => decode(channel, bytes)).not.toThrow();
      }
    }
  });

  it('distinguishes ok and error replies', () => {
    const okReply = decode('reply', JSON.stringify({ ...envelope, requestId: 'r1', ok: true, data: { pong: 1 } }));
    const errReply = decode(
      'reply',
      JSON.stringify({ ...envelope, requestId: 'r1', ok: false, error: { code: 'unknown_command', message: 'no' } }),
    );
    const badReply = decode('reply', JSON.stringify({ ...envelope, requestId: 'r1', ok: false }));
    expect(okReply.ok && errReply.ok).toBe(true);
    expect(badReply.ok).toBe(false);
  });
});
