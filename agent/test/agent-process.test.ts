import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PipelineMetrics, Reported, Telemetry, topicFor } from '@edgeloop/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readOutboxDir } from '../src/outbox-file.ts';
import { PPOCR_DET_MANIFEST_PATH, ppocrDetModelPath } from '../src/vision/bundled-models.ts';
import { type Observer, startBroker, startObserver, type TestBroker } from './support/broker.ts';
import { FIXTURES, SCENETEXT01 } from './vision/test-media.ts';

const bin = fileURLToPath(new URL('../bin/edgeloop-agent.js', import.meta.url));
const DEVICE = 'cam-process-01';
const PASSWORD = 'process-secret';

let dir: string;
const cleanups: Array<() => Promise<void> | void> = [];
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-process-'));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  rmSync(dir, { recursive: true, force: true });
});

type Run = {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: string | null }>;
};

function run(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, output: () => output, exited };
}

describe('edgeloop-agent process', () => {
  it('connects, sends birth and telemetry, and on SIGTERM sends the shutdown status and exits 0', async () => {
    const broker: TestBroker = await startBroker({ credentials: { [DEVICE]: PASSWORD } });
    cleanups.push(() => broker.close());
    const watcher: Observer = await startObserver(broker.url, [`fleet/v1/devices/${DEVICE}/+`]);
    cleanups.push(() => watcher.close());
    writeFileSync(path.join(dir, 'mqtt.secret'), `${PASSWORD}\n`);
    writeFileSync(
      path.join(dir, 'agent.json'),
      JSON.stringify({
        deviceId: DEVICE,
        mqtt: { url: 'mqtt://placeholder:1', passwordFile: 'mqtt.secret' },
        dataDir: 'state',
        telemetry: { intervalS: 1 },
        hardware: { profile: 'x86-gpu' },
      }),
    );
    // The broker URL comes from the environment, overriding the file.
    const agent = run(['--config', 'agent.json'], { EDGELOOP_MQTT_URL: broker.url, EDGELOOP_LOG_LEVEL: 'warn' });
    const status = topicFor(DEVICE, 'status');
    const telemetry = topicFor(DEVICE, 'telemetry');
    await watcher
      .waitFor(() => watcher.json(status).length > 0, 20_000, 'birth')
      .catch((error: Error) => {
        throw new Error(`${error.message}; agent output:\n${agent.output()}`);
      });
    await watcher.waitFor(() => watcher.json(telemetry).length >= 2, 10_000, 'telemetry');
    expect(watcher.json(status)[0]).toMatchObject({ state: 'online', reason: 'birth', telemetryIntervalS: 1 });
    const first = watcher.json(telemetry)[0]!;
    expect(first).toMatchObject({ intervalS: 1, system: { cpu: { cores: expect.any(Number) } } });
    const reported = watcher.json(topicFor(DEVICE, 'reported'))[0];
    expect(reported).toMatchObject({ hardware: { profile: 'x86-gpu', platform: process.platform } });

    agent.child.kill('SIGTERM');
    const exit = await agent.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    await watcher.waitFor(() => watcher.json(status).length >= 2, 5000, 'shutdown status');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(watcher.json(status).map((message) => `${message.state}/${message.reason}`)).toEqual([
      'online/birth',
      'offline/shutdown',
    ]);
    expect(readOutboxDir(path.join(dir, 'state', 'outbox')).entries).toEqual([]);
  });

  it('runs the configured vision pipeline: PP-OCR det on real images, valid pipeline metrics in telemetry', async () => {
    const broker: TestBroker = await startBroker({ credentials: { [DEVICE]: PASSWORD } });
    cleanups.push(() => broker.close());
    const watcher: Observer = await startObserver(broker.url, [`fleet/v1/devices/${DEVICE}/+`]);
    cleanups.push(() => watcher.close());
    writeFileSync(path.join(dir, 'mqtt.secret'), `${PASSWORD}\n`);
    writeFileSync(
      path.join(dir, 'agent.json'),
      JSON.stringify({
        deviceId: DEVICE,
        mqtt: { url: broker.url, passwordFile: 'mqtt.secret' },
        dataDir: 'state',
        telemetry: { intervalS: 1 },
        vision: {
          source: { kind: 'images', dir: path.join(FIXTURES, 'images'), loop: true, intervalMs: 100 },
          model: { path: ppocrDetModelPath(), manifestPath: PPOCR_DET_MANIFEST_PATH },
          providers: ['cpu'],
          threads: { intraOp: 1 },
        },
      }),
    );
    const agent = run(['--config', 'agent.json'], { EDGELOOP_LOG_LEVEL: 'warn' });
    const telemetry = topicFor(DEVICE, 'telemetry');
    const withFrames = () =>
      watcher
        .json(telemetry)
        .map((message) => Telemetry.parse(message))
        .find((message) => (message.pipeline?.framesProcessed ?? 0) > 0);
    await watcher
      .waitFor(() => withFrames() !== undefined, 30_000, 'pipeline telemetry')
      .catch((error: Error) => {
        throw new Error(`${error.message}; agent output:\n${agent.output()}`);
      });
    const pipeline = PipelineMetrics.parse(withFrames()?.pipeline);
    expect(pipeline.model).toMatchObject({ name: 'ppocr-det', version: '4.0.0' });
    expect(pipeline.provider.active).toBe('cpu');
    expect(pipeline.detectionsPer1000.text).toBeGreaterThan(0);
    expect(pipeline.latencyMs.inference?.count).toBeGreaterThan(0);
    const reported = watcher.json(topicFor(DEVICE, 'reported')).map((message) => Reported.parse(message));
    expect(reported.some((message) => message.providers?.includes('cpu'))).toBe(true);
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toEqual({ code: 0, signal: null });
  });

  it('runs the detect subcommand through the real bin, one JSON line per frame and a summary', async () => {
    const agent = run(['detect', '--model', ppocrDetModelPath(), '--manifest', PPOCR_DET_MANIFEST_PATH, SCENETEXT01]);
    expect(await agent.exited).toEqual({ code: 0, signal: null });
    const lines = agent
      .output()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ file: SCENETEXT01, frame: 0 });
    // The five text lines of the photo, plus the small print on the newspaper box (see ppocr.test.ts).
    const boxes = lines[0]?.boxes as Array<Record<string, unknown>>;
    expect(boxes.length).toBeGreaterThanOrEqual(5);
    for (const box of boxes)
      expect(box).toMatchObject({ label: 'text', score: expect.any(Number), x1: expect.any(Number) });
    expect(lines[1]).toMatchObject({ summary: true, frames: 1, failedFiles: 0, model: { name: 'ppocr-det' } });
  });

  it('exits 2 and prints every config problem', async () => {
    writeFileSync(path.join(dir, 'bad.json'), JSON.stringify({ deviceId: 'A/B', mqtt: { url: 'ftp://x' } }));
    const agent = run(['--config', 'bad.json'], { EDGELOOP_TELEMETRY_INTERVAL_S: 'soon' });
    const exit = await agent.exited;
    expect(exit.code).toBe(2);
    const output = agent.output();
    for (const expected of ['deviceId:', 'mqtt.url:', 'mqtt.password:', 'dataDir:', 'EDGELOOP_TELEMETRY_INTERVAL_S']) {
      expect(output).toContain(expected);
    }
  });

  it('prints usage for --help and exits 0', async () => {
    const agent = run(['--help']);
    expect((await agent.exited).code).toBe(0);
    expect(agent.output()).toContain('edgeloop-agent --config <agent.json>');
  });
});
