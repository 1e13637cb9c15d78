import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Agent, createAgent, createMemoryDesiredStore, loadConfig } from '@edgeloop/agent';
import { type SampleView, type SystemMetrics, unwrap } from '@edgeloop/protocol';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PPOCR_DET_MANIFEST_PATH, ppocrDetModelPath } from '../../../agent/src/vision/bundled-models.ts';
import { createVision } from '../../../agent/src/vision/vision.ts';
import { eventually, type RunningControlPlane, runControlPlane } from '../support.ts';

/*
 * The real agent runs PP-OCRv4 det on the repository's photos under a near-threshold policy from
 * desired state, against the real control plane: samples appear in GET /api/v1/samples with the
 * predictions as pre-annotations, the served image's sha256 is the sample's, and both redactions
 * hold in the stored bytes: the black-out corner is black, and the text boxes (the blurred class)
 * lost most of their detail compared with the same boxes of the photo.
 */

const DEVICE = 'cam-samples-e2e';
const REPO = join(import.meta.dirname, '../../..');
const IMAGES = join(REPO, 'test-media/images');
const system: SystemMetrics = {
  cpu: { loadPct: 20, cores: 2 },
  memory: { usedBytes: 1, totalBytes: 2 },
  disk: { usedBytes: 1, totalBytes: 2 },
  temperatures: { cpuC: 40, gpuC: null, zones: {} },
  uptimeS: 1,
};

let cp: RunningControlPlane;
let agent: Agent;
let dataDir: string;

const policy = {
  strategies: [{ kind: 'near-threshold', threshold: 0.6, epsilon: 0.4, tags: ['e2e'] }],
  limits: { perMinute: 10, bytesPerDay: 2_000_000 },
  redaction: { blackout: [{ x: 0.8, y: 0.8, w: 0.2, h: 0.2 }], blurClasses: ['text'] },
  jpegQuality: 92,
};

beforeAll(async () => {
  cp = await runControlPlane();
  dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-e2e-agent-samples-'));
  const { credentials } = await unwrap(cp.client.devices.enroll({ id: DEVICE, labels: { site: 'lab' } }));
  const loaded = loadConfig({
    fileText: JSON.stringify({
      deviceId: DEVICE,
      mqtt: { url: cp.started.mqttUrl, password: credentials.password, reconnect: { initialMs: 50, maxMs: 500 } },
      controlPlaneUrl: cp.started.httpUrl,
      dataDir,
      telemetry: { intervalS: 3600 },
      outbox: { fsync: 'never' },
      vision: {
        source: { kind: 'images', dir: IMAGES, intervalMs: 100, loop: true },
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
  // The policy as the device last persisted it from desired state (the control plane has no
  // endpoint that sets samplePolicy yet).
  const desiredStore = createMemoryDesiredStore({ version: 1, issuedAt: Date.now(), samplePolicy: policy });
  agent = createAgent({ config: loaded.value, readSystem: async () => system, createVision, desiredStore });
  await agent.start();
}, 60_000);

afterAll(async () => {
  await agent?.stop({ graceful: false });
  await cp?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function image(sample: SampleView): Promise<Buffer> {
  const { body } = await unwrap(cp.client.samples.image(sample.id));
  return Buffer.from(await new Response(body).arrayBuffer());
}

/** Mean and variance of the grey level inside a box of an RGB(A) raw image. */
function region(raw: { data: Buffer; width: number; channels: number }, box: readonly number[]) {
  const [x1, y1, x2, y2] = box.map(Math.round) as [number, number, number, number];
  let sum = 0;
  let sq = 0;
  let n = 0;
  for (let y = y1 + 2; y < y2 - 2; y++) {
    for (let x = x1 + 2; x < x2 - 2; x++) {
      const i = (y * raw.width + x) * raw.channels;
      const v = ((raw.data[i] as number) + (raw.data[i + 1] as number) + (raw.data[i + 2] as number)) / 3;
      sum += v;
      sq += v * v;
      n++;
    }
  }
  const mean = sum / Math.max(1, n);
  return { mean, variance: sq / Math.max(1, n) - mean * mean, n };
}

describe('hard samples from the real agent in the real control plane', () => {
  it('stores near-threshold samples of the photos with pre-annotations, matching sha256 and redactions held', async () => {
    const list = await eventually(
      async () => {
        const page = await unwrap(cp.client.samples.list({ deviceId: DEVICE }));
        return page.items.length >= 2 ? page : null;
      },
      60_000,
      'two samples listed',
      250,
    );
    for (const sample of list!.items) {
      expect(sample).toMatchObject({ deviceId: DEVICE, strategy: 'near-threshold', tags: ['e2e'] });
      expect(sample.model?.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(sample.predictions.length).toBeGreaterThan(0);
      const bytes = await image(sample);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(sample.image.sha256);

      const stored = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
      const raw = { data: stored.data, width: stored.info.width, channels: stored.info.channels };
      const { width, height } = sample.image;
      expect(region(raw, [width * 0.8, height * 0.8, width, height]).mean).toBeLessThan(4);

      // The photo this sample was taken from: the one whose size matches, read the same way.
      const photos = ['scenetext01.jpg', 'scenetext02.jpg'];
      let original: { data: Buffer; width: number; channels: number } | null = null;
      for (const name of photos) {
        const decoded = await sharp(join(IMAGES, name)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
        if (decoded.info.width === width && decoded.info.height === height) {
          original = { data: decoded.data, width, channels: decoded.info.channels };
        }
      }
      expect(original).not.toBeNull();
      let before = 0;
      let after = 0;
      for (const p of sample.predictions) {
        before += region(original!, p.box).variance;
        after += region(raw, p.box).variance;
      }
      console.log(`samples e2e: text-box variance ${before.toFixed(0)} in the photo, ${after.toFixed(0)} stored`);
      expect(after).toBeLessThan(before * 0.2);
    }
  }, 90_000);
});
