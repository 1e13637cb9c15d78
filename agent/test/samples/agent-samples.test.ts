import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type SystemMetrics, Telemetry } from '@edgeloop/protocol';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { type Agent, createAgent } from '../../src/agent.ts';
import { loadConfig } from '../../src/config.ts';
import { PPOCR_DET_MANIFEST_PATH, ppocrDetModelPath } from '../../src/vision/bundled-models.ts';
import { createVision } from '../../src/vision/vision.ts';
import { eventually, type Observer, publishAs, startBroker, startObserver } from '../support/broker.ts';
import { FIXTURES } from '../vision/test-media.ts';
import { startUploadServer, type UploadServer } from './upload-server.ts';

/*
 * The real agent (createAgent) running PP-OCRv4 det on the repository's photos, with a sample
 * policy from desired state over a real broker: samples reach an HTTP server speaking the upload
 * protocol with the predictions as pre-annotations, the bytes match their sha256, and the
 * black-out rectangle holds in the bytes stored. A malformed policy is refused with an event and
 * telemetry's policyError, and capture goes on under the old one. The two photos loop, so at most
 * two distinct samples (two sha256) exist: the same frame again is the same sample.
 */

const DEVICE = 'cam-samples-1';
const PASSWORD = 'device-secret';
const topic = (channel: string) => `fleet/v1/devices/${DEVICE}/${channel}`;
const system: SystemMetrics = {
  cpu: { loadPct: 20, cores: 2 },
  memory: { usedBytes: 1, totalBytes: 2 },
  disk: { usedBytes: 1, totalBytes: 2 },
  temperatures: { cpuC: 40, gpuC: null, zones: {} },
  uptimeS: 1,
};

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(): Promise<{ agent: Agent; watcher: Observer; server: UploadServer }> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-agent-samples-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const broker = await startBroker({ credentials: { [DEVICE]: PASSWORD } });
  cleanups.push(() => broker.close());
  const watcher = await startObserver(broker.url, [`fleet/v1/devices/${DEVICE}/+`]);
  cleanups.push(() => watcher.close());
  const server = await startUploadServer({ password: PASSWORD });
  cleanups.push(() => server.close());
  const loaded = loadConfig({
    fileText: JSON.stringify({
      deviceId: DEVICE,
      mqtt: { url: broker.url, password: PASSWORD, reconnect: { initialMs: 50, maxMs: 200 } },
      dataDir,
      controlPlaneUrl: server.url,
      telemetry: { intervalS: 3600 },
      outbox: { fsync: 'never' },
      vision: {
        source: { kind: 'images', dir: path.join(FIXTURES, 'images'), intervalMs: 50, loop: true },
        model: { path: ppocrDetModelPath(), manifestPath: PPOCR_DET_MANIFEST_PATH },
        providers: ['cpu'],
        threads: { intraOp: 1 },
        cameraHealth: { enabled: false },
      },
    }),
    env: {},
    cwd: dataDir,
  });
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.error.problems));
  const agent = createAgent({ config: loaded.value, readSystem: async () => system, createVision });
  cleanups.push(() => agent.stop({ graceful: false }));
  await agent.start();
  return { agent, watcher, server };
}

/** Ticks telemetry and returns the samples section of the message it published. */
async function sampleTelemetry(agent: Agent, watcher: Observer) {
  const seen = watcher.json(topic('telemetry')).length;
  await agent.telemetry.tick();
  await watcher.waitFor(() => watcher.json(topic('telemetry')).length > seen, 10_000, 'telemetry');
  const samples = Telemetry.parse(watcher.json(topic('telemetry')).at(-1)).samples;
  if (!samples) throw new Error('telemetry without samples');
  return samples;
}

const policy = {
  strategies: [{ kind: 'near-threshold', threshold: 0.6, epsilon: 0.4, tags: ['unsure-text'] }],
  limits: { perMinute: 4 },
  redaction: { blackout: [{ x: 0, y: 0, w: 0.2, h: 0.2 }] },
  jpegQuality: 90,
};

describe('hard samples on the real agent', () => {
  it('captures PP-OCRv4 det near-threshold samples of the photos and uploads them with their predictions', async () => {
    const { agent, watcher, server } = await setup();
    await publishAs(
      watcher,
      topic('desired'),
      { version: 1, issuedAt: Date.now(), samplePolicy: policy },
      { retain: true },
    );
    await eventually(() => server.stored.size >= 2, 60_000, 'two samples stored');

    for (const { metadata, bytes } of server.stored.values()) {
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(metadata.image.sha256);
      expect(metadata).toMatchObject({ deviceId: DEVICE, strategy: 'near-threshold', tags: ['unsure-text'] });
      expect(metadata.bootId).toBe(agent.bootId);
      expect(metadata.model?.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(metadata.predictions.length).toBeGreaterThan(0);
      for (const p of metadata.predictions) {
        expect(p.label).toBe('text');
        expect(p.box[2]).toBeLessThanOrEqual(metadata.image.width);
        expect(p.box[3]).toBeLessThanOrEqual(metadata.image.height);
      }
      // The black-out rectangle (top-left fifth) is black in the stored bytes.
      const { data, info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
      let sum = 0;
      let n = 0;
      for (let y = 4; y < Math.floor(info.height * 0.2) - 4; y++) {
        for (let x = 4; x < Math.floor(info.width * 0.2) - 4; x++) {
          sum += data[(y * info.width + x) * info.channels] as number;
          n++;
        }
      }
      expect(sum / n).toBeLessThan(4);
    }

    const samples = await sampleTelemetry(agent, watcher);
    expect(samples).toMatchObject({ policyError: null, spooled: expect.any(Number) });
    expect(samples.captured).toBeGreaterThanOrEqual(2);
    expect(samples.uploaded).toBeGreaterThanOrEqual(2);
  }, 90_000);

  it('refuses a malformed policy with an event and policyError, and keeps capturing under the old one', async () => {
    const { agent, watcher, server } = await setup();
    await publishAs(
      watcher,
      topic('desired'),
      { version: 1, issuedAt: Date.now(), samplePolicy: policy },
      { retain: true },
    );
    await eventually(() => server.stored.size >= 1, 60_000, 'a sample stored');
    await publishAs(
      watcher,
      topic('desired'),
      { version: 2, issuedAt: Date.now(), samplePolicy: { strategies: [{ kind: 'near-threshold' }] } },
      { retain: true },
    );
    await watcher.waitFor(
      () => watcher.json(topic('events')).some((e) => e.type === 'sample.policy-refused'),
      10_000,
      'sample.policy-refused event',
    );
    expect(agent.samples?.policy?.strategies[0]).toMatchObject({ kind: 'near-threshold', threshold: 0.6 });
    // The photos repeat, so new captures are the same bytes again: count captures, not stored samples.
    const captured = () => agent.samples?.telemetry()?.captured ?? 0;
    const before = captured();
    await eventually(() => captured() > before, 60_000, 'another capture under the old policy');
    expect((await sampleTelemetry(agent, watcher)).policyError).toMatch(/threshold/);
  }, 120_000);

  it('captures the next N frames on a capture command, answering on the reply topic', async () => {
    const { agent, watcher } = await setup();
    const rare = { strategies: [{ kind: 'class-rare', classes: ['unicorn'] }] };
    await publishAs(
      watcher,
      topic('desired'),
      { version: 1, issuedAt: Date.now(), samplePolicy: rare },
      { retain: true },
    );
    await eventually(() => agent.samples?.policy !== null, 10_000, 'policy applied');
    await publishAs(watcher, topic('cmd'), { requestId: 'req-capture-1', name: 'capture', args: { frames: 2 } });
    await watcher.waitFor(
      () => watcher.json(topic('reply')).some((r) => r.requestId === 'req-capture-1'),
      10_000,
      'capture reply',
    );
    expect(watcher.json(topic('reply')).find((r) => r.requestId === 'req-capture-1')).toMatchObject({
      ok: true,
      data: { frames: 2 },
    });
    await eventually(() => (agent.samples?.telemetry()?.captured ?? 0) >= 2, 30_000, 'two on-demand captures');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(agent.samples?.telemetry()?.captured).toBe(2);
  }, 60_000);
});
