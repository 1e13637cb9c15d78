/*
 * A streaming scanner of MQTT fixed headers (MQTT 3.1.1 section 2.2): one type byte, then the
 * "remaining length" in 1-4 bytes of 7 bits each (low byte first, high bit = more follows), then
 * that many bytes of variable header and payload, which it skips without reading.
 *
 * Why our own and not mqtt-packet's parser: mqtt-packet (what aedes parses with) appends every
 * chunk to a BufferList and decodes a packet only once all of its bytes are there, so a header
 * announcing 256 MB is only ever judged after 256 MB were buffered. This scanner sees the
 * announced length as soon as its bytes arrive and says stop before the body is read. It keeps
 * a few numbers of state, copies nothing and looks at 2-5 bytes per packet, so it can stand in
 * front of every byte the broker reads.
 */

export type FrameViolation = {
  readonly cause: 'packet_too_large' | 'malformed_length' | 'not_connect';
  /** The remaining length announced (at least this much when it was cut short), or 0. */
  readonly announced: number;
  readonly detail: string;
};

export type FrameScanner = {
  /**
   * Scans the next chunk of the stream with `limit` as the largest remaining length allowed.
   * Returns the first violation found (the stream is then to be closed), or null.
   */
  scan(chunk: Uint8Array, limit: number): FrameViolation | null;
  /** Packets whose fixed header was read in full. */
  readonly packets: number;
};

const CONNECT = 1;
const MAX_LENGTH_BYTES = 4;

export function createFrameScanner(): FrameScanner {
  // Bytes of the current packet's body still to skip; while 0 the next byte is a header byte.
  let bodyLeft = 0;
  // Inside the remaining length: how many of its bytes were read (0: the next byte is a type byte).
  let lengthBytes = -1;
  let length = 0;
  let multiplier = 1;
  let packets = 0;

  return {
    get packets() {
      return packets;
    },
    scan(chunk, limit) {
      const end = chunk.length;
      let i = 0;
      while (i < end) {
        if (bodyLeft > 0) {
          const skip = Math.min(bodyLeft, end - i);
          bodyLeft -= skip;
          i += skip;
          continue;
        }
        const byte = chunk[i++]!;
        if (lengthBytes === -1) {
          // [MQTT-3.1.0-1]: the first packet a client sends is CONNECT.
          if (packets === 0 && byte >> 4 !== CONNECT) {
            return { cause: 'not_connect', announced: 0, detail: `the first packet is type ${byte >> 4}, not CONNECT` };
          }
          lengthBytes = 0;
          length = 0;
          multiplier = 1;
          continue;
        }
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        lengthBytes++;
        // The length only grows with more bytes, so a partial one over the limit is over it.
        if (length > limit) {
          return {
            cause: 'packet_too_large',
            announced: length,
            detail: `a packet announces ${length}${byte & 0x80 ? '+' : ''} bytes, over the limit of ${limit}`,
          };
        }
        if (byte & 0x80) {
          if (lengthBytes === MAX_LENGTH_BYTES) {
            return { cause: 'malformed_length', announced: length, detail: 'the remaining length runs past 4 bytes' };
          }
          continue;
        }
        packets++;
        bodyLeft = length;
        lengthBytes = -1;
      }
      return null;
    },
  };
}
