import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encode, messageId, topicFor, unwrap } from '@edgeloop/protocol';
import fc from 'fast-check';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IngestRepository } from '../src/db/repositories.ts';
import { createSqliteStore } from '../src/db/sqlite/store.ts';
import { eventually, newBootId, SYSTEM, startTestControlPlane, type TestControlPlane } from './harness.ts';

/*
 * Ingest as commands, checked against a model (issue 12 §6). The real system is one control plane
 * (SQLite, aedes on port 0, real mqtt.js devices) on one data dir that lives through every run;
 * each run enrolls two fresh devices, so the model of a run starts empty. Commands:
 *
 *   Publish(device, channel, value)   telemetry or reported with the next seq, QoS 1, awaits PUBACK
 *   Duplicate(device, k)              the k-th message the device sent, again (same msgId, bytes)
 *   Reorder(device, channel, a, b)    two seqs s < s+1 taken at once, s+1 published before s
 *   Reconnect(device, reboot)         closes and reconnects; on a reboot a new bootId and its birth
 *   OldBootReplay(device)             after a reboot, a telemetry of the previous boot (outbox replay)
 *   BrokerRestart                     the control plane stops (flushing) and starts on the same data
 *   Crash(device, n, m)               n publishes in flight, at least m acked, then the store refuses
 *                                     every commit (nothing more is durable), sockets die, stop,
 *                                     start on the same data; then the device replays what was
 *                                     not acked, as an agent's outbox does
 *
 * The model per device: the set of accepted msgIds, the current boot (the boot of the latest
 * birth), and per channel the newest by the code's ordering rule (device-state.ts rules 1-4:
 * within the current boot, the greatest seq; other boots never replace it). After every command:
 * the device's stored messages (the messages API) are exactly the accepted set, each once, and
 * its latest telemetry and reported state (the device API) are the model's newest. After a crash
 * and before the replay: every acked msgId is stored, nothing is stored that was never sent.
 */

type Channel = 'telemetry' | 'reported';

type Sent = {
  readonly msgId: string;
  readonly channel: Channel | 'status';
  readonly payload: string;
};

type DeviceModel = {
  readonly id: string;
  bootId: string;
  previousBootId: string | null;
  seq: number;
  readonly sent: Sent[];
  readonly accepted: Set<string>;
  /** Newest per channel of the current boot: seq and the value carried. */
  newest: Record<Channel, { bootId: string; seq: number; value: number } | null>;
};

type Model = { readonly devices: DeviceModel[] };

type Real = {
  t: TestControlPlane;
  readonly clients: Map<string, MqttClient>;
  readonly passwords: Map<string, string>;
};

const DEVICES_PER_RUN = 2;
let dataDir: string;
let real: Real;
let run = 0;
/** Set by a Crash: the store refuses every commit, as a process that died would store nothing more. */
let crashed = false;

async function startOnData(): Promise<TestControlPlane> {
  crashed = false;
  const sqlite = createSqliteStore({ dataDir });
  const ingest: IngestRepository = {
    ...sqlite.ingest,
    commit: (batch) => (crashed ? Promise.reject(new Error('crashed')) : sqlite.ingest.commit(batch)),
  };
  return startTestControlPlane(
    { dataDir, logLevel: 'silent', ingest: { batchSize: 4 } },
    { store: { ...sqlite, ingest } },
  );
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-ingest-props-'));
  real = { t: await startOnData(), clients: new Map(), passwords: new Map() };
});

afterAll(async () => {
  await real?.t.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

function telemetryBody(value: number) {
  return { intervalS: 10, system: { ...SYSTEM, temperatures: { cpuC: value, gpuC: null } } };
}

/** The next message of a channel for the device in the model (seq taken, not yet sent). */
function nextMessage(device: DeviceModel, channel: Channel | 'status', value: number, seq = ++device.seq): Sent {
  const envelope = { msgId: messageId(device.bootId, seq), bootId: device.bootId, seq, ts: Date.now() };
  let payload: string;
  if (channel === 'telemetry') payload = encode('telemetry', { ...envelope, ...telemetryBody(value) });
  else if (channel === 'reported') {
    payload = encode('reported', { ...envelope, agentVersion: '1.0.0', desiredVersion: value, telemetryIntervalS: 10 });
  } else payload = encode('status', { ...envelope, state: 'online', reason: 'birth' });
  return { msgId: envelope.msgId, channel, payload };
}

function publish(deviceId: string, message: Sent): Promise<unknown> {
  const client = real.clients.get(deviceId);
  if (!client) throw new Error(`${deviceId} has no client`);
  return client.publishAsync(topicFor(deviceId, message.channel), message.payload, { qos: 1 });
}

/** The model learns that a message was stored: the accepted set, the newest of its channel. */
function accept(device: DeviceModel, message: Sent) {
  device.accepted.add(message.msgId);
  if (message.channel === 'status') return;
  const parsed = JSON.parse(message.payload) as { bootId: string; seq: number; desiredVersion?: number } & {
    system?: { temperatures: { cpuC: number } };
  };
  // Rules 1-4 of device-state.ts: only the current boot, only a greater seq.
  if (parsed.bootId !== device.bootId) return;
  const current = device.newest[message.channel];
  if (current && current.bootId === parsed.bootId && parsed.seq <= current.seq) return;
  const value = message.channel === 'telemetry' ? parsed.system!.temperatures.cpuC : parsed.desiredVersion!;
  device.newest[message.channel] = { bootId: parsed.bootId, seq: parsed.seq, value };
}

async function connect(deviceId: string): Promise<void> {
  const client = await real.t.connect(deviceId, real.passwords.get(deviceId)!);
  real.clients.set(deviceId, client);
}

async function reconnectAll(model: Model) {
  for (const device of model.devices) await connect(device.id);
}

async function checkStored(model: Model) {
  for (const device of model.devices) {
    const page = await unwrap(real.t.client.devices.messages(device.id, { limit: 1000 }));
    const stored = page.items.map((item) => item.msgId).sort();
    expect(stored, `stored messages of ${device.id}`).toEqual([...device.accepted].sort());
    const detail = await unwrap(real.t.client.devices.get(device.id));
    const telemetry = detail.telemetry?.message ?? null;
    const reported = detail.reported?.message ?? null;
    expect(
      telemetry && { seq: telemetry.seq, bootId: telemetry.bootId, value: telemetry.system.temperatures.cpuC },
      `latest telemetry of ${device.id}`,
    ).toEqual(device.newest.telemetry);
    expect(
      reported && { seq: reported.seq, bootId: reported.bootId, value: reported.desiredVersion },
      `latest reported of ${device.id}`,
    ).toEqual(device.newest.reported);
  }
}

type Command = fc.AsyncCommand<Model, Real>;

const publishCommand = (index: number, channel: Channel, value: number): Command => ({
  check: () => true,
  async run(model: Model) {
    const device = model.devices[index]!;
    const message = nextMessage(device, channel, value);
    device.sent.push(message);
    await publish(device.id, message);
    accept(device, message);
    await checkStored(model);
  },
  toString: () => `Publish(d${index}, ${channel}, ${value})`,
});

const duplicateCommand = (index: number, pick: number): Command => ({
  check: (model: Readonly<Model>) => model.devices[index]!.sent.length > 0,
  async run(model: Model) {
    const device = model.devices[index]!;
    const message = device.sent[pick % device.sent.length]!;
    await publish(device.id, message);
    await checkStored(model);
  },
  toString: () => `Duplicate(d${index}, #${pick})`,
});

const reorderCommand = (index: number, channel: Channel, older: number, newer: number): Command => ({
  check: () => true,
  async run(model: Model) {
    const device = model.devices[index]!;
    const first = nextMessage(device, channel, older);
    const second = nextMessage(device, channel, newer);
    device.sent.push(second, first);
    await publish(device.id, second);
    accept(device, second);
    await publish(device.id, first);
    accept(device, first);
    await checkStored(model);
  },
  toString: () => `Reorder(d${index}, ${channel}, ${newer} then ${older})`,
});

const reconnectCommand = (index: number, reboot: boolean): Command => ({
  check: () => true,
  async run(model: Model) {
    const device = model.devices[index]!;
    await real.clients.get(device.id)?.endAsync(true);
    await connect(device.id);
    if (reboot) {
      device.previousBootId = device.bootId;
      device.bootId = newBootId();
      device.seq = 0;
      const birth = nextMessage(device, 'status', 0);
      device.sent.push(birth);
      await publish(device.id, birth);
      accept(device, birth);
    }
    await checkStored(model);
  },
  toString: () => `Reconnect(d${index}${reboot ? ', reboot' : ''})`,
});

const oldBootReplayCommand = (index: number, value: number): Command => ({
  check: (model: Readonly<Model>) => model.devices[index]!.previousBootId !== null,
  async run(model: Model) {
    const device = model.devices[index]!;
    const old = device.previousBootId!;
    // A seq far above the current boot's: it must still not replace the latest.
    const seq = 10_000 + device.sent.length;
    const envelope = { msgId: messageId(old, seq), bootId: old, seq, ts: Date.now() };
    const message: Sent = {
      msgId: envelope.msgId,
      channel: 'telemetry',
      payload: encode('telemetry', { ...envelope, ...telemetryBody(value) }),
    };
    device.sent.push(message);
    await publish(device.id, message);
    accept(device, message);
    await checkStored(model);
  },
  toString: () => `OldBootReplay(d${index}, ${value})`,
});

const brokerRestartCommand = (): Command => ({
  check: () => true,
  async run(model: Model) {
    await real.t.stop({ keepData: true });
    real.t = await startOnData();
    await reconnectAll(model);
    await checkStored(model);
  },
  toString: () => 'BrokerRestart',
});

const crashCommand = (index: number, inFlight: number, ackedAtLeast: number): Command => ({
  check: () => true,
  async run(model: Model) {
    const device = model.devices[index]!;
    const client = real.clients.get(device.id)!;
    const messages = Array.from({ length: inFlight }, (_, i) => nextMessage(device, 'telemetry', 30 + i));
    device.sent.push(...messages);
    const acked = new Set<string>();
    for (const message of messages) {
      client.publish(topicFor(device.id, 'telemetry'), message.payload, { qos: 1 }, (error) => {
        if (!error) acked.add(message.msgId);
      });
    }
    const atLeast = Math.min(ackedAtLeast, messages.length);
    await eventually(() => acked.size >= atLeast);
    // From here nothing is durable: the process is gone, its sockets with it.
    crashed = true;
    const ackedAtCrash = new Set(acked);
    for (const c of real.clients.values()) c.stream.destroy();
    await real.t.stop({ keepData: true });
    real.t = await startOnData();
    // Every acked message survived; nothing appeared that was never sent.
    const stored = new Set(
      (await unwrap(real.t.client.devices.messages(device.id, { limit: 1000 }))).items.map((item) => item.msgId),
    );
    for (const msgId of ackedAtCrash) expect(stored.has(msgId), `acked ${msgId} is stored after the crash`).toBe(true);
    const sent = new Set(device.sent.map((message) => message.msgId));
    for (const msgId of stored) expect(sent.has(msgId), `stored ${msgId} was sent`).toBe(true);
    await reconnectAll(model);
    // The outbox replays what it had no PUBACK for (and may resend some that were stored).
    for (const message of messages) {
      if (!ackedAtCrash.has(message.msgId)) await publish(device.id, message);
    }
    for (const message of messages) accept(device, message);
    await checkStored(model);
  },
  toString: () => `Crash(d${index}, ${inFlight} in flight, >= ${ackedAtLeast} acked)`,
});

const index = fc.integer({ min: 0, max: DEVICES_PER_RUN - 1 });
const channel = fc.constantFrom<Channel>('telemetry', 'reported');
const value = fc.integer({ min: 0, max: 100 });

const commands = [
  fc.tuple(index, channel, value).map(([i, c, v]) => publishCommand(i, c, v)),
  fc.tuple(index, channel, value).map(([i, c, v]) => publishCommand(i, c, v)),
  fc.tuple(index, fc.nat()).map(([i, k]) => duplicateCommand(i, k)),
  fc.tuple(index, channel, value, value).map(([i, c, a, b]) => reorderCommand(i, c, a, b)),
  fc.tuple(index, fc.boolean()).map(([i, reboot]) => reconnectCommand(i, reboot)),
  fc.tuple(index, value).map(([i, v]) => oldBootReplayCommand(i, v)),
  fc.constant(brokerRestartCommand()),
  fc
    .tuple(index, fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 6 }))
    .map(([i, n, m]) => crashCommand(i, n, m)),
];

async function setupRun(): Promise<{ model: Model; real: Real }> {
  run++;
  const devices: DeviceModel[] = [];
  for (let i = 0; i < DEVICES_PER_RUN; i++) {
    const id = `prop-${run}-${i}`;
    const enrolled = await real.t.enroll(id);
    real.passwords.set(id, enrolled.credentials.password);
    await connect(id);
    const device: DeviceModel = {
      id,
      bootId: newBootId(),
      previousBootId: null,
      seq: 0,
      sent: [],
      accepted: new Set(),
      newest: { telemetry: null, reported: null },
    };
    // As an agent does on every connect: its birth first.
    const birth = nextMessage(device, 'status', 0);
    device.sent.push(birth);
    await publish(id, birth);
    accept(device, birth);
    devices.push(device);
  }
  return { model: { devices }, real };
}

async function endRun(model: Model) {
  for (const device of model.devices) {
    await real.clients.get(device.id)?.endAsync(true);
    real.clients.delete(device.id);
  }
}

describe('ingest as commands against a model of accepted msgIds and the newest state per device', () => {
  it('stores every PUBACKed message once and keeps the newest state through duplicates, reorders, reconnects, restarts and crashes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 15 }), async (cmds) => {
        const setup = await setupRun();
        try {
          await fc.asyncModelRun(() => setup, cmds);
        } finally {
          await endRun(setup.model);
        }
      }),
      { numRuns: 40 },
    );
  }, 60_000);
});
