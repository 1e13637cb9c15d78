import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { connectPacket, fixedHeader } from '../test/mqtt-raw.ts';
import { createFrameScanner } from './mqtt-front-frames.ts';

const connect = connectPacket('cam-1', 'secret');

function publish(payloadBytes: number): Buffer {
  return mqttPacket.generate({
    cmd: 'publish',
    topic: 'fleet/v1/devices/cam-1/telemetry',
    payload: Buffer.alloc(payloadBytes, 0x7b),
    qos: 1,
    messageId: 7,
    dup: false,
    retain: false,
  });
}

/** The fixed header of a packet of type `type` announcing `length` bytes (as generators encode it). */
const header = (type: number, length: number) => fixedHeader(type << 4, length);

describe('createFrameScanner', () => {
  it('passes a real session (CONNECT, publishes of every length-byte count, PINGREQ) however it is chunked', () => {
    const stream = Buffer.concat([
      connect,
      publish(10),
      publish(200),
      publish(20_000),
      publish(3_000_000),
      mqttPacket.generate({ cmd: 'pingreq' }),
    ]);
    for (const size of [1, 2, 3, 7, 64, 1500, 65_536, stream.length]) {
      const scanner = createFrameScanner();
      const violations = [];
      for (let at = 0; at < stream.length; at += size) {
        const violation = scanner.scan(stream.subarray(at, at + size), 4_000_000);
        if (violation) violations.push(violation);
      }
      expect(violations, `chunks of ${size}`).toEqual([]);
      expect(scanner.packets, `chunks of ${size}`).toBe(6);
    }
  });

  it('refuses a 256 MB CONNECT from its 4 header bytes, before any of the body', () => {
    const scanner = createFrameScanner();
    const announced = header(1, 256 * 1024 * 1024 - 1);
    expect(announced).toHaveLength(5);
    const violation = scanner.scan(announced, 16 * 1024);
    expect(violation).toMatchObject({ cause: 'packet_too_large' });
    expect(violation!.detail).toContain('over the limit of 16384');
  });

  it('refuses on a partial length that is already over the limit, one byte at a time', () => {
    const scanner = createFrameScanner();
    const bytes = header(1, 2_000_300); // length bytes 44, then 11 x 128: over 1024 at the second
    expect(scanner.scan(bytes.subarray(0, 1), 1024)).toBeNull();
    expect(scanner.scan(bytes.subarray(1, 2), 1024)).toBeNull();
    expect(scanner.scan(bytes.subarray(2, 3), 1024)).toMatchObject({ cause: 'packet_too_large' });
  });

  it('refuses a PUBLISH over the limit after a good CONNECT, and takes one exactly at it', () => {
    const limit = 300;
    const fits = publish(200);
    const exact = createFrameScanner();
    expect(exact.scan(connect, limit)).toBeNull();
    expect(exact.scan(header(3, limit), limit)).toBeNull();
    const over = createFrameScanner();
    expect(over.scan(Buffer.concat([connect, fits]), limit)).toBeNull();
    expect(over.scan(header(3, limit + 1), limit)).toMatchObject({ cause: 'packet_too_large', announced: limit + 1 });
  });

  it('refuses a remaining length of 5 bytes and a first packet that is not CONNECT', () => {
    const long = createFrameScanner();
    expect(long.scan(connect, 1e9)).toBeNull();
    expect(long.scan(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]), Number.MAX_SAFE_INTEGER)).toMatchObject({
      cause: 'malformed_length',
    });
    expect(createFrameScanner().scan(publish(10), 1e6)).toMatchObject({ cause: 'not_connect' });
  });
});
