// Child process of bench/ingest.ts: N MQTT publishers sending valid telemetry as fast as the
// broker takes it (QoS 1, a window of messages in flight per client) or at a fixed offered rate.
// Reads its job as JSON from argv[2]; prints one JSON result line on stdout.
import { encode, messageId, topicFor } from '@edgeloop/protocol';
import mqtt, { type MqttClient } from 'mqtt';

type Job = {
  url: string;
  devices: { id: string; password: string }[];
  messagesPerDevice: number;
  window: number;
  qos: 0 | 1;
  /** Offered messages per second over all publishers; 0 = as fast as acks allow. */
  rate: number;
  /** For rate mode: seconds to keep offering. */
  seconds: number;
};

const job = JSON.parse(process.argv[2] ?? '{}') as Job;
const SYSTEM = {
  cpu: { loadPct: 21.5, cores: 6 },
  memory: { usedBytes: 2_100_000_000, totalBytes: 8_000_000_000 },
  disk: { usedBytes: 21_000_000_000, totalBytes: 128_000_000_000, path: '/' },
  temperatures: { cpuC: 51.2, gpuC: 49.8, zones: { 'CPU-therm': 51.2, 'GPU-therm': 49.8 } },
  gpu: { loadPct: 64 },
  uptimeS: 3600,
};

function payload(bootId: string, seq: number): Buffer {
  return Buffer.from(
    encode('telemetry', { msgId: messageId(bootId, seq), bootId, seq, ts: Date.now(), intervalS: 10, system: SYSTEM }),
  );
}

async function connect(device: { id: string; password: string }): Promise<MqttClient> {
  const client = await mqtt.connectAsync(job.url, {
    clientId: device.id,
    username: device.id,
    password: device.password,
    protocolVersion: 4,
    reconnectPeriod: 0,
    keepalive: 60,
    clean: true,
  });
  client.on('error', () => {});
  return client;
}

const clients = await Promise.all(job.devices.map(connect));
let published = 0;
let acked = 0;
let errors = 0;
const started = performance.now();

if (job.rate === 0) {
  // Closed loop: each client keeps `window` QoS 1 messages in flight until it has sent its share.
  await Promise.all(
    clients.map(
      (client, index) =>
        new Promise<void>((resolve) => {
          const bootId = `bench${String(index).padStart(6, '0')}${process.pid}`;
          let seq = 0;
          let inflight = 0;
          let done = 0;
          const pump = () => {
            while (inflight < job.window && seq < job.messagesPerDevice) {
              seq += 1;
              inflight += 1;
              published += 1;
              client.publish(
                topicFor(job.devices[index]!.id, 'telemetry'),
                payload(bootId, seq),
                { qos: job.qos },
                (error) => {
                  inflight -= 1;
                  done += 1;
                  if (error) errors += 1;
                  else acked += 1;
                  if (done === job.messagesPerDevice) resolve();
                  else pump();
                },
              );
            }
          };
          pump();
        }),
    ),
  );
} else {
  // Open loop: offer `rate` messages per second in 10 ms slices, whatever the broker does.
  const perSlice = job.rate / 100;
  let carry = 0;
  const seqs = clients.map(() => 0);
  const bootIds = clients.map((_, index) => `flood${String(index).padStart(6, '0')}${process.pid}`);
  const end = performance.now() + job.seconds * 1000;
  let next = 0;
  while (performance.now() < end) {
    carry += perSlice;
    while (carry >= 1) {
      carry -= 1;
      const index = next++ % clients.length;
      const client = clients[index]!;
      seqs[index]! += 1;
      published += 1;
      client.publish(
        topicFor(job.devices[index]!.id, 'telemetry'),
        payload(bootIds[index]!, seqs[index]!),
        { qos: job.qos },
        (error) => {
          if (error) errors += 1;
          else acked += 1;
        },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  // Give outstanding QoS 1 acks a moment.
  if (job.qos === 1) await new Promise((resolve) => setTimeout(resolve, 2000));
}

const seconds = (performance.now() - started) / 1000;
await Promise.all(clients.map((client) => client.endAsync().catch(() => undefined)));
process.stdout.write(`${JSON.stringify({ published, acked, errors, seconds })}\n`);
process.exit(0);
