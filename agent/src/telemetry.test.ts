import { decode, type SystemMetrics, type Telemetry as TelemetryMessage } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { createManualTime } from '../test/support/manual-timers.ts';
import { createMemoryOutbox, type Outbox } from './outbox.ts';
import { createPublisher } from './publisher.ts';
import { createSequencer } from './sequencer.ts';
import { createTelemetry } from './telemetry.ts';

const system: SystemMetrics = {
  cpu: { loadPct: 12.5, cores: 4 },
  memory: { usedBytes: 1e9, totalBytes: 4e9 },
  disk: { usedBytes: 5e9, totalBytes: 3e10 },
  temperatures: { cpuC: 50, gpuC: null, zones: {} },
  uptimeS: 100,
};

function drain(outbox: Outbox): TelemetryMessage[] {
  return outbox.nextBatch(1000).map((entry) => {
    outbox.ack(entry.msgId);
    const decoded = decode('telemetry', entry.payload);
    if (!decoded.ok) throw new Error(decoded.error.message);
    return decoded.value;
  });
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

function setup(options: { readSystem?: () => Promise<SystemMetrics>; pipeline?: () => unknown } = {}) {
  const time = createManualTime();
  const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
  const publisher = createPublisher({ sequencer: createSequencer({ clock: time.clock }), outbox });
  const telemetry = createTelemetry({
    publisher,
    intervalS: 10,
    readSystem: options.readSystem ?? (async () => system),
    ...(options.pipeline ? { pipelineMetrics: options.pipeline as never } : {}),
    clock: time.clock,
    timers: time.timers,
  });
  return { time, outbox, telemetry };
}

describe('telemetry', () => {
  it('publishes one message at start and then one per interval', async () => {
    const { time, outbox, telemetry } = setup();
    telemetry.start();
    await settle();
    expect(drain(outbox)).toHaveLength(1);
    time.advance(9_999);
    await settle();
    expect(drain(outbox)).toHaveLength(0);
    time.advance(1);
    await settle();
    const [message] = drain(outbox);
    expect(message).toMatchObject({ intervalS: 10, system: { cpu: { loadPct: 12.5 } } });
    for (let i = 0; i < 3; i += 1) {
      time.advance(10_000);
      await settle();
    }
    expect(drain(outbox)).toHaveLength(3);
    telemetry.stop();
    time.advance(60_000);
    await settle();
    expect(drain(outbox)).toHaveLength(0);
    expect(time.pendingTimers).toBe(0);
  });

  it('switches to a new interval at once and reports it in each message', async () => {
    const { time, outbox, telemetry } = setup();
    telemetry.start();
    await settle();
    drain(outbox);
    time.advance(1_000);
    telemetry.setIntervalS(2);
    time.advance(1_000);
    await settle();
    const messages = drain(outbox);
    expect(messages).toHaveLength(1);
    expect(messages[0]!.intervalS).toBe(2);
    time.advance(2_000);
    await settle();
    expect(drain(outbox)).toHaveLength(1);
    expect(telemetry.intervalS).toBe(2);
  });

  it('keeps sending the last system metrics when the reader fails', async () => {
    let fail = false;
    const { time, outbox, telemetry } = setup({
      readSystem: async () => {
        if (fail) throw new Error('si broke');
        return system;
      },
    });
    telemetry.start();
    await settle();
    fail = true;
    time.advance(10_000);
    await settle();
    const messages = drain(outbox);
    expect(messages).toHaveLength(2);
    expect(messages[1]!.system).toEqual(messages[0]!.system);
    expect(telemetry.stats()).toMatchObject({ systemErrors: 1, published: 2 });
  });

  it('skips a tick while the previous one is still collecting', async () => {
    let release: (value: SystemMetrics) => void = () => {};
    const { outbox, telemetry } = setup({
      readSystem: () =>
        new Promise<SystemMetrics>((resolve) => {
          release = resolve;
        }),
    });
    const first = telemetry.tick();
    await telemetry.tick();
    release(system);
    await first;
    expect(drain(outbox)).toHaveLength(1);
    expect(telemetry.stats()).toMatchObject({ ticks: 1, skipped: 1 });
  });

  it('drops an invalid pipeline part but still sends the system metrics', async () => {
    const { outbox, telemetry } = setup({ pipeline: () => ({ fps: -1 }) });
    await telemetry.tick();
    const messages = drain(outbox);
    expect(messages).toHaveLength(1);
    expect(messages[0]!.pipeline).toBeUndefined();
    expect(telemetry.stats().invalid).toBe(1);
  });
});
