import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:net';
import { CHANNEL_SCHEMAS, type PipelineMetrics, topicFor } from '@edgeloop/protocol';
import { Aedes } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBehaviourTable } from '../src/model-behaviour.ts';
import { hardwareProfile } from '../src/profiles.ts';
import { VirtualDevice } from '../src/virtual-device.ts';
import { eventually } from './support.ts';

/*
 * A simulated device whose scene changes (scenario `scene-change`), over a real aedes broker on
 * port 0: the telemetry window the change happens in raises camera.sceneChange, the next ones do
 * not, and the model plays its snow profile (less sure: lower confidence, more near-threshold)
 * until the scene is restored.
 */

const ref = { id: 'det@1.0.0', name: 'det', version: '1.0.0', sha256: 'd'.repeat(64) };

describe('a simulated device on a changed scene', () => {
  let broker: Aedes;
  let server: Server;
  let port = 0;
  let watcher: MqttClient;
  let device: VirtualDevice;
  const windows: PipelineMetrics[] = [];

  beforeAll(async () => {
    broker = await Aedes.createBroker({});
    server = createServer(broker.handle);
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    port = (server.address() as AddressInfo).port;
    watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'watcher' });
    await watcher.subscribeAsync(topicFor('scene-0001', 'telemetry'), { qos: 1 });
    watcher.on('message', (_topic, payload) => {
      const parsed = CHANNEL_SCHEMAS.telemetry.safeParse(JSON.parse(payload.toString()));
      if (parsed.success && parsed.data.pipeline) windows.push(parsed.data.pipeline);
    });
    const played = createBehaviourTable({ '*': { scenes: { snow: { confidenceShift: -0.3 } } } }).of(ref);
    device = new VirtualDevice({
      id: 'scene-0001',
      password: 'unused',
      mqttHost: '127.0.0.1',
      mqttPort: port,
      hardware: hardwareProfile('x86-gpu'),
      site: 'b',
      keepaliveS: 30,
      telemetryIntervalS: 0.3,
      cameraFps: 30,
      outboxMaxBytes: 1024 * 1024,
      model: { ref, profile: played.profile, scenes: played.scenes },
    });
    await device.start();
  });

  afterAll(async () => {
    await device?.stop();
    await watcher?.endAsync();
    await new Promise<void>((done) => server.close(() => done()));
    await new Promise<void>((done) => broker.close(() => done()));
  });

  const next = async (count: number) => {
    const from = windows.length;
    await eventually(() => windows.length >= from + count, 10_000, `${count} telemetry windows`);
    return windows.slice(from, from + count);
  };
  const meanConfidence = (window: PipelineMetrics) => {
    const total = window.confidenceHistogram.reduce((a, b) => a + b, 0);
    const bins = window.confidenceHistogram.length;
    return window.confidenceHistogram.reduce((sum, count, bin) => sum + count * ((bin + 0.5) / bins), 0) / total;
  };

  it('raises sceneChange once, then plays the snow profile until the scene is restored', async () => {
    const before = await next(2);
    expect(before.every((window) => !window.camera?.sceneChange)).toBe(true);
    expect(before.every((window) => window.model?.sha256 === ref.sha256)).toBe(true);

    device.setScene('snow');
    expect(device.scene).toBe('snow');
    // The window in flight when the scene changed reports the change; the ones after do not.
    const snow = await next(3);
    expect(snow.map((window) => window.camera?.sceneChange)).toEqual([true, false, false]);
    const snowy = snow.slice(1);
    for (const window of snowy) {
      for (const normal of before) {
        expect(meanConfidence(window)).toBeLessThan(meanConfidence(normal) - 0.15);
        expect(window.nearThresholdShare).toBeGreaterThan(normal.nearThresholdShare + 0.1);
      }
    }

    device.setScene(null);
    const restored = await next(3);
    expect(restored.map((window) => window.camera?.sceneChange)).toEqual([true, false, false]);
    for (const window of restored.slice(1)) {
      expect(meanConfidence(window)).toBeGreaterThan(meanConfidence(snowy[0]!) + 0.15);
    }
  });
});
