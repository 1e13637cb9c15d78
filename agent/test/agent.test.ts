import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type SystemMetrics, topicFor } from '@edgeloop/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Agent, type AgentDeps, createAgent } from '../src/agent.ts';
import { type AgentConfig, loadConfig } from '../src/config.ts';
import { createMemoryOutbox } from '../src/outbox.ts';
import { readOutboxDir } from '../src/outbox-file.ts';
import { eventually, type Observer, publishAs, startBroker, startObserver, type TestBroker } from './support/broker.ts';

const DEVICE = 'cam-agent-01';
const PASSWORD = 'agent-secret';
const topic = (channel: Parameters<typeof topicFor>[1]) => topicFor(DEVICE, channel);

const system: SystemMetrics = {
  cpu: { loadPct: 20, cores: 2 },
  memory: { usedBytes: 1, totalBytes: 2 },
  disk: { usedBytes: 1, totalBytes: 2 },
  temperatures: { cpuC: 40, gpuC: null, zones: {} },
  uptimeS: 1,
};

let dataDir: string;
const cleanups: Array<() => Promise<void> | void> = [];
beforeEach(() => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-agent-'));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  rmSync(dataDir, { recursive: true, force: true });
});

function configFor(url: string, extra: Record<string, unknown> = {}): AgentConfig {
  const loaded = loadConfig({
    fileText: JSON.stringify({
      deviceId: DEVICE,
      mqtt: { url, password: PASSWORD, reconnect: { initialMs: 50, maxMs: 300 } },
      dataDir,
      telemetry: { intervalS: 60 },
      outbox: { fsync: 'never' },
      ...extra,
    }),
    env: {},
  });
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.error.problems));
  return loaded.value;
}

async function broker(options: Omit<Parameters<typeof startBroker>[0], 'credentials'> = {}): Promise<TestBroker> {
  const started = await startBroker({ credentials: { [DEVICE]: PASSWORD }, ...options });
  cleanups.push(() => started.close());
  return started;
}

async function observer(url: string): Promise<Observer> {
  const started = await startObserver(url, [`fleet/v1/devices/${DEVICE}/+`]);
  cleanups.push(() => started.close());
  return started;
}

async function agentOn(url: string, deps: Partial<AgentDeps> = {}): Promise<Agent> {
  const agent = createAgent({ config: configFor(url), readSystem: async () => system, ...deps });
  cleanups.push(() => agent.stop({ graceful: false }));
  await agent.start();
  return agent;
}

describe('agent against a real aedes broker', () => {
  it('announces itself: agent.started event, birth, reported and telemetry', async () => {
    const server = await broker();
    const watcher = await observer(server.url);
    const agent = await agentOn(server.url);
    await watcher.waitFor(
      () =>
        ['status', 'events', 'reported', 'telemetry'].every(
          (channel) => watcher.json(topic(channel as never)).length > 0,
        ),
      10_000,
      'one message per channel',
    );
    expect(watcher.json(topic('events'))[0]).toMatchObject({
      type: 'agent.started',
      data: { bootId: agent.bootId, desiredVersion: 0, outboxRecovery: { corruptRecords: 0 } },
    });
    expect(watcher.json(topic('status'))[0]).toMatchObject({
      state: 'online',
      reason: 'birth',
      telemetryIntervalS: 60,
    });
    expect(watcher.json(topic('reported'))[0]).toMatchObject({ desiredVersion: 0, telemetryIntervalS: 60 });
    const telemetry = watcher.json(topic('telemetry'))[0];
    expect(telemetry).toMatchObject({ intervalS: 60, system: { cpu: { loadPct: 20 } } });
    // The outbox as it stood when the telemetry was built: birth, started and reported were
    // appended before it, under the configured bound, nothing dropped.
    expect(telemetry?.outbox).toEqual({
      pending: expect.any(Number),
      pendingBytes: expect.any(Number),
      maxBytes: configFor(server.url).outbox.maxBytes,
      droppedTotal: 0,
    });
    const seqs = watcher.messages.map((m) => JSON.parse(m.payload).seq as number).sort((a, b) => a - b);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  });

  it('answers commands on the reply topic, with errors for unknown commands and bad arguments', async () => {
    const server = await broker();
    const watcher = await observer(server.url);
    const agent = await agentOn(server.url);
    await eventually(() => agent.link.state === 'connected', 10_000);
    await publishAs(watcher, topic('cmd'), { requestId: 'ping-1', name: 'ping', args: {} });
    await publishAs(watcher, topic('cmd'), { requestId: 'bogus-1', name: 'self-destruct', args: {} });
    await publishAs(watcher, topic('cmd'), {
      requestId: 'bad-1',
      name: 'set-telemetry-interval',
      args: { seconds: -5 },
    });
    await publishAs(watcher, topic('cmd'), {
      requestId: 'set-1',
      name: 'set-telemetry-interval',
      args: { seconds: 5 },
    });
    await publishAs(watcher, topic('cmd'), { requestId: 'broken-1', name: 42 });
    await watcher.waitFor(() => watcher.json(topic('reply')).length === 5, 10_000, 'five replies');
    const replies = new Map(watcher.json(topic('reply')).map((reply) => [reply.requestId, reply]));
    expect(replies.get('ping-1')).toMatchObject({ ok: true, data: { bootId: agent.bootId, pong: expect.any(Number) } });
    expect(replies.get('bogus-1')).toMatchObject({ ok: false, error: { code: 'unknown_command' } });
    expect(replies.get('bad-1')).toMatchObject({ ok: false, error: { code: 'invalid_args' } });
    expect(replies.get('set-1')).toMatchObject({ ok: true, data: { previousS: 60, intervalS: 5 } });
    expect(replies.get('broken-1')).toMatchObject({ ok: false, error: { code: 'invalid_args' } });
    expect(agent.telemetry.intervalS).toBe(5);
  });

  it('reloads its config on command and reports what changed', async () => {
    const server = await broker();
    const watcher = await observer(server.url);
    const agent = await agentOn(server.url, {
      reloadConfig: () =>
        loadConfig({ fileText: JSON.stringify({ ...rawConfig(server.url), telemetry: { intervalS: 7 } }), env: {} }),
    });
    await eventually(() => agent.link.state === 'connected', 10_000);
    await publishAs(watcher, topic('cmd'), { requestId: 'reload-1', name: 'reload-config', args: {} });
    await watcher.waitFor(() => watcher.json(topic('reply')).length === 1, 10_000, 'reply');
    expect(watcher.json(topic('reply'))[0]).toMatchObject({
      ok: true,
      data: { changed: ['telemetry.intervalS'], applied: ['telemetry.intervalS'], restartRequired: [] },
    });
    expect(agent.telemetry.intervalS).toBe(7);
    await watcher.waitFor(
      () => watcher.json(topic('events')).some((event) => event.type === 'agent.config-reloaded'),
      5000,
      'config-reloaded event',
    );
  });

  it('applies a desired version once, reports it, and re-applies it after a restart before the broker re-delivers', async () => {
    const server = await broker();
    const watcher = await observer(server.url);
    const first = await agentOn(server.url);
    await eventually(() => first.link.state === 'connected', 10_000);
    await publishAs(
      watcher,
      topic('desired'),
      { version: 3, issuedAt: Date.now(), telemetryIntervalS: 2, config: { roi: 'gate' } },
      { retain: true },
    );
    const reportedV3 = () => watcher.json(topic('reported')).filter((report) => report.desiredVersion === 3);
    await watcher.waitFor(() => reportedV3().length === 1, 10_000, 'reported v3');
    expect(reportedV3()[0]).toMatchObject({ telemetryIntervalS: 2, config: { roi: 'gate' } });
    // The same version again and an older one: ignored, nothing new reported.
    await publishAs(
      watcher,
      topic('desired'),
      { version: 3, issuedAt: Date.now(), telemetryIntervalS: 9 },
      { retain: true },
    );
    await publishAs(watcher, topic('desired'), { version: 2, issuedAt: Date.now(), telemetryIntervalS: 9 });
    await eventually(() => first.desired.stats().ignored === 2, 5000, 'two ignored');
    expect(first.telemetry.intervalS).toBe(2);
    await first.stop({ graceful: true });

    // Restart while the broker keeps the device out: the persisted desired is applied anyway.
    let admit: () => void = () => {};
    const second = await broker({
      admitDevices: new Promise<void>((resolve) => {
        admit = resolve;
      }),
    });
    const secondWatcher = await observer(second.url);
    const restarted = await agentOn(second.url);
    expect(restarted.desired.appliedVersion).toBe(3);
    expect(restarted.telemetry.intervalS).toBe(2);
    admit();
    await secondWatcher.waitFor(() => secondWatcher.json(topic('reported')).length > 0, 10_000, 'reported');
    expect(secondWatcher.json(topic('reported'))[0]).toMatchObject({ desiredVersion: 3, telemetryIntervalS: 2 });
  });

  it('stops gracefully: shutdown status, drained outbox, no will', async () => {
    const server = await broker();
    const watcher = await observer(server.url);
    const agent = await agentOn(server.url);
    await eventually(() => agent.link.state === 'connected' && agent.outbox.stats().pending === 0, 10_000);
    await agent.stop({ graceful: true });
    await watcher.waitFor(() => watcher.json(topic('status')).length >= 2, 5000, 'shutdown status');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const statuses = watcher.json(topic('status'));
    expect(statuses.map((status) => `${status.state}/${status.reason}`)).toEqual(['online/birth', 'offline/shutdown']);
    expect(readOutboxDir(path.join(dataDir, 'outbox')).entries).toEqual([]);
  });

  it('reports outbox drops as an outbox.dropped event once it can send again', async () => {
    let admit: () => void = () => {};
    const server = await broker({
      admitDevices: new Promise<void>((resolve) => {
        admit = resolve;
      }),
    });
    const watcher = await observer(server.url);
    const outbox = createMemoryOutbox({ maxBytes: 4096 });
    const agent = await agentOn(server.url, { outbox });
    for (let i = 0; i < 40; i += 1) await agent.telemetry.tick();
    expect(outbox.stats().dropped.telemetry).toBeGreaterThan(0);
    admit();
    await watcher.waitFor(
      () => watcher.json(topic('events')).some((event) => event.type === 'outbox.dropped'),
      10_000,
      'outbox.dropped',
    );
    const dropped = watcher.json(topic('events')).find((event) => event.type === 'outbox.dropped')!;
    expect((dropped.data as { telemetry: number }).telemetry).toBeGreaterThan(0);
  });
});

function rawConfig(url: string) {
  return {
    deviceId: DEVICE,
    mqtt: { url, password: PASSWORD, reconnect: { initialMs: 50, maxMs: 300 } },
    dataDir,
    telemetry: { intervalS: 60 },
    outbox: { fsync: 'never' },
  };
}
