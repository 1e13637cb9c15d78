// npm run bench:mqtt-front — what the MQTT front (control-plane/src/mqtt-front.ts) costs and holds.
//
//   (a) the fixed-header scanner against mqtt-packet's parser (what aedes runs on every byte anyway)
//       over the same stream of 1 KiB QoS 1 publishes in 64 KiB chunks: the scanner's share of
//       the parse cost (ratio, median of rounds; target <= 0.05)
//   (b) `edgeloop serve` in a child: a device's login time (CONNECT to CONNACK) alone, and during
//       a storm of 2,000 connects in 10 s from another address with a wrong password
//       (target: under 2 s during the storm); how many of the storm got an answer
//   (c) the same child: RSS before and after four sockets that announce a 256 MB CONNECT and send
//       120 MB each (target: +32 MiB at most), and what the server read of each before closing it
//
// Environment: BENCH_ROUNDS (5), BENCH_STORM (2000), BENCH_STORM_S (10).
import { connect as connectSocket, type Socket } from 'node:net';
import { cpus } from 'node:os';
import { createFrameScanner } from '@edgeloop/control-plane';
import mqttPacket from 'mqtt-packet';
import {
  attemptConnect,
  closedByServer,
  connectPacket,
  fixedHeader,
  openSocket,
  startServeChild,
  writeZeros,
} from '../control-plane/test/mqtt-raw.ts';
import { reportResult } from './report.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const STORM = Number(process.env.BENCH_STORM ?? 2000);
const STORM_S = Number(process.env.BENCH_STORM_S ?? 10);
const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;
const fmt = (value: number, digits = 0) =>
  value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const verdict = (ok: boolean) => (ok ? 'meets target' : 'MISSES target');

console.log(`bench:mqtt-front on ${process.version}, ${cpus().length} cores\n`);

/* ----------------------------------------- (a) ----------------------------------------- */
{
  const connect = mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: 'bench',
    keepalive: 30,
  });
  const publishes = Array.from({ length: 32_768 }, (_, i) =>
    mqttPacket.generate({
      cmd: 'publish',
      topic: 'fleet/v1/devices/bench-00001/telemetry',
      payload: Buffer.alloc(1024, 0x7b),
      qos: 1,
      messageId: (i % 65_535) + 1,
      dup: false,
      retain: false,
    }),
  );
  const stream = Buffer.concat([connect, ...publishes]);
  const chunks: Buffer[] = [];
  for (let at = 0; at < stream.length; at += 64 * 1024) chunks.push(stream.subarray(at, at + 64 * 1024));

  const scan = () => {
    const scanner = createFrameScanner();
    const started = performance.now();
    for (const chunk of chunks) if (scanner.scan(chunk, 300 * 1024)) throw new Error('refused a good stream');
    const ms = performance.now() - started;
    if (scanner.packets !== publishes.length + 1) throw new Error(`scanned ${scanner.packets} packets`);
    return ms;
  };
  const parse = () => {
    const parser = mqttPacket.parser();
    let packets = 0;
    parser.on('packet', () => packets++);
    const started = performance.now();
    for (const chunk of chunks) parser.parse(chunk);
    const ms = performance.now() - started;
    if (packets !== publishes.length + 1) throw new Error(`parsed ${packets} packets`);
    return ms;
  };
  scan();
  parse();
  const ratios: number[] = [];
  const scans: number[] = [];
  const parses: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const s = scan();
    const p = parse();
    scans.push(s);
    parses.push(p);
    ratios.push(s / p);
  }
  const mb = stream.length / MiB;
  console.log(`(a) ${fmt(publishes.length)} publishes of 1 KiB (${fmt(mb, 1)} MiB) in 64 KiB chunks, ${ROUNDS} rounds`);
  console.log(`  scanner:      ${fmt(mb / (median(scans) / 1000))} MiB/s (median ${fmt(median(scans), 2)} ms)`);
  console.log(`  mqtt-packet:  ${fmt(mb / (median(parses) / 1000))} MiB/s (median ${fmt(median(parses), 2)} ms)`);
  const ratio = median(ratios);
  console.log(
    `  scanner / parser = ${fmt(ratio, 3)} (rounds ${ratios.map((r) => fmt(r, 3)).join(', ')})  (target <= 0.05: ${verdict(ratio <= 0.05)})\n`,
  );
  reportResult({
    bench: 'bench:mqtt-front',
    metric: "(a) the front's header scanner vs mqtt-packet's parser, same bytes",
    value: `${fmt(median(scans), 2)} vs ${fmt(median(parses), 2)} ms: ${fmt(ratio, 3)}`,
    target: '<= 0.05',
    met: ratio <= 0.05,
  });
}

/* --------------------------------------- (b), (c) --------------------------------------- */
const serve = await startServeChild({ stderr: 'inherit' });
const { mqttPort, enroll, metric } = serve;

/** CONNECT to CONNACK in ms for one login from 127.0.0.1 (the socket is then closed). */
const login = (packet: Buffer) =>
  new Promise<number>((done, fail) => {
    const started = performance.now();
    const socket = connectSocket({ port: mqttPort, host: '127.0.0.1' }, () => socket.write(packet));
    socket.once('data', (answer: Buffer) => {
      const ms = performance.now() - started;
      socket.destroy();
      if (answer[3] === 0) done(ms);
      else fail(new Error(`CONNACK ${answer[3]}`));
    });
    socket.once('error', fail);
    setTimeout(() => fail(new Error('no CONNACK within 10 s')), 10_000).unref();
  });

try {
  const legit = connectPacket('bench-legit', await enroll('bench-legit'));
  const target = 'bench-target';
  await enroll(target);
  const bad = connectPacket(target, 'x'.repeat(43));
  for (let i = 0; i < 5; i++) await login(legit);
  const quiet: number[] = [];
  for (let i = 0; i < 10; i++) quiet.push(await login(legit));

  const outcomes = { answered: 0, refused: 0 };
  const closes: Promise<void>[] = [];
  const attempt = () =>
    closes.push(
      attemptConnect(mqttPort, '127.0.0.2', bad).then((answered) => {
        if (answered) outcomes.answered++;
        else outcomes.refused++;
      }),
    );
  const tickMs = 50;
  const perTick = Math.ceil((STORM / STORM_S) * (tickMs / 1000));
  let sent = 0;
  const stormStarted = performance.now();
  const timer = setInterval(() => {
    for (let i = 0; i < perTick && sent < STORM; i++, sent++) attempt();
    if (sent >= STORM) clearInterval(timer);
  }, tickMs);
  const during: number[] = [];
  await sleep(500);
  while (sent < STORM) {
    during.push(await login(legit));
    await sleep((STORM_S * 1000) / 12);
  }
  await Promise.all(closes);
  const stormS = (performance.now() - stormStarted) / 1000;
  console.log(
    `(b) a device's login (CONNECT -> CONNACK) from 127.0.0.1, with and without a storm of ${fmt(STORM)} connects in ${fmt(STORM_S)} s from 127.0.0.2`,
  );
  console.log(`  alone:        median ${fmt(median(quiet), 1)} ms, max ${fmt(Math.max(...quiet), 1)} ms (10 logins)`);
  console.log(
    `  storm:        median ${fmt(median(during), 1)} ms, max ${fmt(Math.max(...during), 1)} ms (${during.length} logins)  (target < 2,000 ms: ${verdict(Math.max(...during) < 2000)})`,
  );
  reportResult({
    bench: 'bench:mqtt-front',
    metric: `(b) a device's login during a storm of ${fmt(STORM)} connects in ${fmt(STORM_S)} s from another address`,
    value: `max ${fmt(Math.max(...during), 1)} ms (alone: median ${fmt(median(quiet), 1)} ms)`,
    target: '< 2,000 ms',
    met: Math.max(...during) < 2000,
  });
  console.log(
    `  the storm took ${fmt(stormS, 1)} s: ${fmt(outcomes.answered)} answered (CONNACK 4), ${fmt(outcomes.refused)} closed at accept; rejected_total{cause="rate_limited"} ${fmt(await metric('edgeloop_mqtt_rejected_total{cause="rate_limited"}'))}\n`,
  );

  await sleep(500);
  const before = await metric('process_resident_memory_bytes');
  const header = fixedHeader(0x10, 256 * MiB - 1); // CONNECT, remaining length 256 MB - 1
  /** Resolves once the server closed the socket, with what the sender got into its buffers. */
  const flood = async (socket: Socket) => {
    const closed = closedByServer(socket);
    socket.write(header);
    const written = await writeZeros(socket, 120 * MiB);
    await closed;
    return written;
  };
  const sockets = await Promise.all([0, 1, 2, 3].map(() => openSocket(mqttPort)));
  const written = await Promise.all(sockets.map(flood));
  await sleep(300);
  const after = await metric('process_resident_memory_bytes');
  const read = serve.refusals.filter((r) => r.cause === 'connect_too_large').map((r) => r.bytesRead);
  console.log('(c) four sockets announcing a 256 MB CONNECT, each sending up to 120 MB');
  console.log(
    `  RSS ${fmt(before / MiB, 1)} MiB -> ${fmt(after / MiB, 1)} MiB (${fmt((after - before) / MiB, 2)} MiB)  (target <= 32 MiB: ${verdict(after - before <= 32 * MiB)})`,
  );
  reportResult({
    bench: 'bench:mqtt-front',
    metric: '(c) RSS growth under four 256 MB CONNECT floods',
    value: `${fmt((after - before) / MiB, 2)} MiB`,
    target: '<= 32 MiB',
    met: after - before <= 32 * MiB,
  });
  console.log(
    `  the server read ${read.map((bytes) => `${fmt(bytes)} bytes`).join(', ')}; the senders got ${written.map((bytes) => `${fmt(bytes / MiB, 1)} MiB`).join(', ')} into socket buffers before the close`,
  );
} finally {
  await serve.stop();
}
