import { connect as connectSocket } from 'node:net';
import { encode, messageId, topicFor } from '@edgeloop/protocol';
import fc from 'fast-check';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, newBootId, SYSTEM } from './harness.ts';
import { type ServeChild, startServeChild } from './mqtt-raw.ts';

/*
 * A mutation fuzzer for the MQTT front (issue 12 §6), against `edgeloop serve` in a child process
 * (its RSS is its own, a crash is an exit we see). A corpus of valid packets of an enrolled device
 * (CONNECT, PUBLISH QoS 0 and 1, SUBSCRIBE, PINGREQ, DISCONNECT, built with mqtt-packet) is mutated
 * by fast-check from one seed (printed with every failure): fixed-header flag and type bits,
 * remaining lengths made huge, short, long, non-minimal or 5 bytes long, truncation, splices of
 * two packets, a second CONNECT, a bad protocol name or level, bad CONNECT flags, bad UTF-8 and
 * wildcards in topics, QoS 3, packet id 0, random bytes. SESSIONS sessions (a CONNECT and up to
 * four packets, any of them mutated) go over many sockets, a few at a time, from many loopback
 * addresses (the per-address connect budget is not what is under test). After the storm: the
 * process is up and answers /healthz, its RSS grew by less than 64 MiB, every socket it accepted
 * is closed again, the refusals were counted, and a well-behaved device connects and gets a
 * QoS 1 message stored.
 */

const SESSIONS = 3_000;
const CONCURRENCY = 24;
/** How long a session waits for the server to answer or close before it hangs up itself. */
const LINGER_MS = 25;
const MiB = 1024 * 1024;
const SEED = Date.now() % 2_147_483_647;
const FUZZ_DEVICES = Array.from({ length: 16 }, (_, i) => `fuzz-${i}`);

let serve: ServeChild;
const passwords = new Map<string, string>();

beforeAll(async () => {
  serve = await startServeChild();
  for (const id of [...FUZZ_DEVICES, 'fuzz-good']) passwords.set(id, await serve.enroll(id));
}, 60_000);

afterAll(async () => {
  await serve?.stop();
});

/* ------------------------------------------ corpus ------------------------------------------ */

type Seed = { readonly name: string; readonly bytes: Buffer };

function corpusFor(id: string): { connect: Buffer; packets: Seed[] } {
  const bootId = newBootId();
  const telemetry = (seq: number) =>
    encode('telemetry', { msgId: messageId(bootId, seq), bootId, seq, ts: Date.now(), intervalS: 10, system: SYSTEM });
  const connect = mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: id,
    keepalive: 30,
    username: id,
    password: Buffer.from(passwords.get(id)!),
  });
  const packets: Seed[] = [
    {
      name: 'publish-qos0',
      bytes: mqttPacket.generate({
        cmd: 'publish',
        topic: topicFor(id, 'telemetry'),
        payload: telemetry(1),
        qos: 0,
        dup: false,
        retain: false,
      }),
    },
    {
      name: 'publish-qos1',
      bytes: mqttPacket.generate({
        cmd: 'publish',
        topic: topicFor(id, 'telemetry'),
        payload: telemetry(2),
        qos: 1,
        messageId: 7,
        dup: false,
        retain: false,
      }),
    },
    {
      name: 'publish-events',
      bytes: mqttPacket.generate({
        cmd: 'publish',
        topic: topicFor(id, 'events'),
        payload: 'not json',
        qos: 1,
        messageId: 8,
        dup: false,
        retain: false,
      }),
    },
    {
      name: 'subscribe',
      bytes: mqttPacket.generate({
        cmd: 'subscribe',
        messageId: 9,
        subscriptions: [{ topic: topicFor(id, 'cmd'), qos: 1 }],
      }),
    },
    { name: 'pingreq', bytes: mqttPacket.generate({ cmd: 'pingreq' }) },
    { name: 'disconnect', bytes: mqttPacket.generate({ cmd: 'disconnect' }) },
  ];
  return { connect, packets };
}

/* ----------------------------------------- mutations ---------------------------------------- */

/** Where the remaining length of a packet ends (the fixed header's length). */
function headerLength(bytes: Buffer): number {
  let i = 1;
  while (i < bytes.length && i < 5 && (bytes[i]! & 0x80) !== 0) i++;
  return Math.min(i + 1, bytes.length);
}

function withLength(bytes: Buffer, length: Buffer): Buffer {
  return Buffer.concat([bytes.subarray(0, 1), length, bytes.subarray(headerLength(bytes))]);
}

function varint(value: number): Buffer {
  const out: number[] = [];
  let rest = value;
  do {
    let byte = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest > 0) byte |= 0x80;
    out.push(byte);
  } while (rest > 0);
  return Buffer.from(out);
}

/** Replaces one byte of the topic (after the 2-byte length in a PUBLISH or SUBSCRIBE) with `byte`. */
function topicByte(bytes: Buffer, at: number, byte: number): Buffer {
  const copy = Buffer.from(bytes);
  const type = copy[0]! >> 4;
  const start = headerLength(copy) + (type === 8 ? 2 : 0) + 2;
  if (start >= copy.length) return copy;
  copy[start + (at % Math.max(1, Math.min(40, copy.length - start)))] = byte;
  return copy;
}

type Mutation = (bytes: Buffer, other: Buffer) => Buffer;

const mutation: fc.Arbitrary<{ name: string; apply: Mutation }> = fc.oneof(
  fc.constant({ name: 'none', apply: (b: Buffer) => b }),
  fc.integer({ min: 0, max: 15 }).map((flags) => ({
    name: `flags=${flags}`,
    apply: (b: Buffer) => Buffer.concat([Buffer.from([(b[0]! & 0xf0) | flags]), b.subarray(1)]),
  })),
  fc.integer({ min: 0, max: 15 }).map((type) => ({
    name: `type=${type}`,
    apply: (b: Buffer) => Buffer.concat([Buffer.from([(type << 4) | (b[0]! & 0x0f)]), b.subarray(1)]),
  })),
  fc
    .constantFrom(
      { name: 'length-huge', bytes: Buffer.from([0xff, 0xff, 0xff, 0x7f]) },
      { name: 'length-5-bytes', bytes: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x01]) },
      { name: 'length-unterminated', bytes: Buffer.from([0x80, 0x80, 0x80, 0x80]) },
      { name: 'length-non-minimal', bytes: Buffer.from([0x85, 0x80, 0x80, 0x00]) },
      { name: 'length-zero', bytes: Buffer.from([0x00]) },
    )
    .map(({ name, bytes }) => ({ name, apply: (b: Buffer) => withLength(b, bytes) })),
  fc.integer({ min: -40, max: 40 }).map((delta) => ({
    name: `length${delta >= 0 ? '+' : ''}${delta}`,
    apply: (b: Buffer) => withLength(b, varint(Math.max(0, b.length - headerLength(b) + delta))),
  })),
  fc.double({ min: 0, max: 1, noNaN: true }).map((share) => ({
    name: `truncate@${share.toFixed(2)}`,
    apply: (b: Buffer) => b.subarray(0, Math.floor(b.length * share)),
  })),
  fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true })).map(([a, c]) => ({
    name: 'splice',
    apply: (b: Buffer, other: Buffer) =>
      Buffer.concat([b.subarray(0, Math.floor(b.length * a)), other.subarray(Math.floor(other.length * c))]),
  })),
  fc.tuple(fc.nat(), fc.constantFrom(0x00, 0xc0, 0xc3, 0xed, 0xff, 0x23, 0x2b)).map(([at, byte]) => ({
    name: `topic-byte=${byte}`,
    apply: (b: Buffer) => topicByte(b, at, byte),
  })),
  fc.constant({
    name: 'qos3',
    apply: (b: Buffer) => Buffer.concat([Buffer.from([(b[0]! & 0xf9) | 0x06]), b.subarray(1)]),
  }),
  fc.constant({
    name: 'packet-id-0',
    apply: (b: Buffer) => {
      // SUBSCRIBE: right after the header; PUBLISH QoS 1: after the topic.
      const copy = Buffer.from(b);
      const start = headerLength(copy);
      const type = copy[0]! >> 4;
      const at = type === 8 ? start : start + 2 + copy.readUInt16BE(Math.min(start, copy.length - 2));
      if (at + 1 < copy.length) copy.writeUInt16BE(0, at);
      return copy;
    },
  }),
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([at, byte]) => ({
    name: `byte=${byte}`,
    apply: (b: Buffer) => {
      const copy = Buffer.from(b);
      if (copy.length > 0) copy[at % copy.length] = byte;
      return copy;
    },
  })),
);

/** Mutations that only make sense on a CONNECT (offsets of MQTT 3.1.1's variable header). */
const connectMutation: fc.Arbitrary<{ name: string; apply: Mutation }> = fc.oneof(
  mutation,
  fc.integer({ min: 0, max: 255 }).map((level) => ({
    name: `protocol-level=${level}`,
    apply: (b: Buffer) => {
      const copy = Buffer.from(b);
      copy[headerLength(copy) + 6] = level;
      return copy;
    },
  })),
  fc.constantFrom('MQTX', 'MQIs', '\u0000QTT').map((name) => ({
    name: `protocol-name=${JSON.stringify(name)}`,
    apply: (b: Buffer) => {
      const copy = Buffer.from(b);
      copy.write(name, headerLength(copy) + 2, 'latin1');
      return copy;
    },
  })),
  fc.integer({ min: 0, max: 255 }).map((flags) => ({
    name: `connect-flags=${flags}`,
    apply: (b: Buffer) => {
      const copy = Buffer.from(b);
      copy[headerLength(copy) + 7] = flags;
      return copy;
    },
  })),
  fc.constant({ name: 'connect-twice', apply: (b: Buffer) => Buffer.concat([b, b]) }),
);

type Session = {
  readonly device: number;
  readonly connect: { name: string; apply: Mutation };
  readonly packets: readonly { readonly pick: number; readonly mutation: { name: string; apply: Mutation } }[];
};

const session: fc.Arbitrary<Session> = fc.record({
  device: fc.nat({ max: FUZZ_DEVICES.length - 1 }),
  connect: fc.oneof(
    { weight: 1, arbitrary: fc.constant({ name: 'none', apply: (b: Buffer) => b }) },
    {
      weight: 2,
      arbitrary: connectMutation,
    },
  ),
  packets: fc.array(fc.record({ pick: fc.nat(), mutation }), { maxLength: 4 }),
});

/* ------------------------------------------- runs ------------------------------------------- */

/** Sends one session from `localAddress`; resolves once the socket closed (by the server or by us). */
function sendSession(bytes: Buffer, localAddress: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = connectSocket({ port: serve.mqttPort, host: '127.0.0.1', localAddress });
    let timer: ReturnType<typeof setTimeout> | null = null;
    socket.once('connect', () => {
      socket.write(bytes);
      timer = setTimeout(() => socket.destroy(), LINGER_MS);
    });
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      if (timer) clearTimeout(timer);
      resolve();
    });
  });
}

async function metricsText(): Promise<string> {
  return (await serve.api('GET', '/metrics')).text();
}

/** The sum of every sample of a metric family (all label sets). */
function total(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('the MQTT front under a mutation fuzzer', () => {
  it(`stays up with bounded RSS through ${SESSIONS} mutated sessions, counts them, and still serves a well-behaved device`, async () => {
    const why = `fuzz seed ${SEED}`;
    const corpora = FUZZ_DEVICES.map((id) => corpusFor(id));
    const sessions = fc.sample(session, { numRuns: SESSIONS, seed: SEED });
    const build = (s: Session): Buffer => {
      const corpus = corpora[s.device]!;
      const parts = [s.connect.apply(corpus.connect, corpus.packets[0]!.bytes)];
      for (const packet of s.packets) {
        const seed = corpus.packets[packet.pick % corpus.packets.length]!;
        const other = corpus.packets[(packet.pick + 1) % corpus.packets.length]!;
        parts.push(packet.mutation.apply(seed.bytes, other.bytes));
      }
      return Buffer.concat(parts);
    };

    // Warm: one login and publish, so the code paths and pools are allocated before the baseline.
    const warm = await mqtt.connectAsync(`mqtt://127.0.0.1:${serve.mqttPort}`, {
      clientId: 'fuzz-good',
      username: 'fuzz-good',
      password: passwords.get('fuzz-good')!,
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    await warm.publishAsync(topicFor('fuzz-good', 'events'), 'warm', { qos: 1 });
    await warm.endAsync();
    const before = await metricsText();
    const baseline = total(before, 'process_resident_memory_bytes');
    expect(baseline, why).toBeGreaterThan(0);

    let next = 0;
    const worker = async (lane: number) => {
      for (let i = next++; i < sessions.length; i = next++) {
        // 240 loopback addresses, about 13 sessions each: well inside the per-address burst.
        const address = `127.0.${1 + (lane % 8)}.${1 + (i % 30)}`;
        await sendSession(build(sessions[i]!), address);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, lane) => worker(lane)));

    expect(serve.child.exitCode, `${why}: the control plane exited`).toBeNull();
    expect(serve.child.signalCode, `${why}: the control plane was killed`).toBeNull();
    expect((await fetch(`${serve.httpUrl}/healthz`)).status, why).toBe(200);
    const after = await metricsText();
    const rss = total(after, 'process_resident_memory_bytes');
    expect(rss - baseline, `${why}: RSS ${baseline} -> ${rss}`).toBeLessThan(64 * MiB);
    // Every socket the storm opened is closed again on the server's side too.
    await eventually(async () => {
      const text = await metricsText();
      return (
        total(text, 'edgeloop_mqtt_open_connections') === 0 && total(text, 'edgeloop_mqtt_pending_connections') === 0
      );
    }, 10_000);
    // The bad input was seen and counted: the front's refusals, the broker's errors and denials.
    const counted = (text: string) =>
      total(text, 'edgeloop_mqtt_rejected_total') +
      total(text, 'edgeloop_mqtt_client_errors_total') +
      total(text, 'edgeloop_mqtt_auth_failures_total') +
      total(text, 'edgeloop_mqtt_acl_denials_total');
    expect(counted(after) - counted(before), why).toBeGreaterThan(SESSIONS / 4);
    expect(
      total(after, 'edgeloop_mqtt_rejected_total') - total(before, 'edgeloop_mqtt_rejected_total'),
      why,
    ).toBeGreaterThan(0);
    expect(total(after, 'edgeloop_mqtt_rejected_total{cause="rate_limited"}'), why).toBe(0);

    // A well-behaved device connects and gets a message stored.
    const good = await mqtt.connectAsync(`mqtt://127.0.0.1:${serve.mqttPort}`, {
      clientId: 'fuzz-good',
      username: 'fuzz-good',
      password: passwords.get('fuzz-good')!,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    const bootId = newBootId();
    const msgId = messageId(bootId, 1);
    await good.publishAsync(
      topicFor('fuzz-good', 'telemetry'),
      encode('telemetry', { msgId, bootId, seq: 1, ts: Date.now(), intervalS: 10, system: SYSTEM }),
      { qos: 1 },
    );
    await good.endAsync();
    const stored = (await (await serve.api('GET', '/api/v1/devices/fuzz-good/messages?channel=telemetry')).json()) as {
      items: { msgId: string }[];
    };
    expect(
      stored.items.map((item) => item.msgId),
      why,
    ).toContain(msgId);
  }, 60_000);
});
